"""Public compatibility names of the fits (scripts written for v1.0 import them from here).

Re-export only: Approach 2 lives in ``flops_fit.fitting.isoflop``, Approach 3 in
``flops_fit.fitting.parametric``, the bootstrap in ``flops_fit.fitting.bootstrap`` and the
comparison in ``flops_fit.fitting.compare``.
"""

from flops_fit.fitting.bootstrap import Bootstrap, one_blas_thread
from flops_fit.fitting.compare import AGREE_MAX_WIDTH, Comparison, compare
from flops_fit.fitting.isoflop import BudgetOptimum, IsoFLOPFit, fit_isoflop
from flops_fit.fitting.parametric import LawFrontier, ParametricFit, fit_parametric, huber_objective

__all__ = ["fit_isoflop", "fit_parametric", "compare", "IsoFLOPFit", "BudgetOptimum", "ParametricFit",
           "Comparison", "AGREE_MAX_WIDTH", "LawFrontier", "Bootstrap", "one_blas_thread", "huber_objective"]
