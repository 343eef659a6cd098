"""One budget of Approach 2 (Hoffmann et al. 2022, §3.2): the runs near its best one, their
quadratic in x = ln N, and the minimum located on it. ``flops_fit.fitting.isoflop`` pools the
curvatures across budgets and fits the frontier; this module is the per-budget part.
numpy and scipy only."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Runs within this many nats of ln L (about 22% in L) above the budget's best run feed its
#: parabola. Chosen on synthetic asymmetric laws (docs/fitting.md): a narrower window leaves
#: too few points at realistic noise; a wider one (or the whole grid) biases a on off-centre grids.
LOSS_WINDOW = 0.2
#: A run this many noise-σ off its budget's curve is excluded as an outlier (with a note).
OUTLIER_SIGMAS = 4.0
#: A budget's largest residual beyond this many σ is a note (the curve misses its points).
RESIDUAL_NOTE_SIGMAS = 3.0
#: A vertex up to this many grid steps past the last run still feeds the frontier (noted).
#: Chosen on off-centre grids (docs/fitting.md): fewer steps bias a, more lower the intervals'
#: coverage (far extrapolations are noisy).
EDGE_STEPS = 1.0


@dataclass
class BudgetOptimum:
    """One budget's located minimum. ``flag`` is None when it feeds the exponent fit."""

    budget: float
    n_opt: float
    d_opt: float
    loss_opt: float
    n_points: int  # runs in the local fit
    flag: str | None = None
    coeffs: tuple[float, ...] = ()  # ln L = c2·x² + c1·x + c0 with x = ln N
    n_range: tuple[float, float] = (math.nan, math.nan)  # sizes the parabola was fitted over
    best_loss: float = math.nan  # the budget's best observed run
    n_interp: float = math.nan  # Akima cross-check of N_opt
    excluded: list[str] = field(default_factory=list)  # runs left out, with the reason
    max_residual: float = math.nan  # largest |ln L − curve| among the fitted runs
    n_opt_interval: tuple[float, float] | None = None
    note: str = ""  # something to know about a budget that still feeds the fit

    @property
    def used(self) -> bool:
        return self.flag is None

    def to_dict(self) -> dict[str, Any]:
        keys = ("budget", "n_opt", "d_opt", "loss_opt", "n_points", "flag", "n_range", "best_loss",
                "n_interp", "excluded", "max_residual", "n_opt_interval", "note")
        return {k: getattr(self, k) for k in keys}


@dataclass
class Local:
    """The design of one budget's local fit: which runs, and the linear map to coefficients."""

    idx: np.ndarray  # indices (into the budget's runs) in the fit
    x0: float  # centring of x (the mean over the fitted runs) for a well-conditioned quadratic
    solve: np.ndarray  # (3, k): centred coefficients (c2, c1, c0) = solve @ ln L[idx]
    hat: np.ndarray  # leverages h_ii of the fitted runs
    k3: float  # Σx³/Σx² and Σx²/k of the centred x: refitting c1, c0 under another c2
    m2: float

    def with_curvature(self, coef: np.ndarray, c2: np.ndarray | float) -> np.ndarray:
        """Least-squares (c1, c0) when the curvature is held at ``c2`` instead of coef[..., 0]
        (from the normal equations with Σx = 0): the pooled-curvature parabola."""
        d = coef[..., 0] - c2
        return np.stack([np.broadcast_to(c2, d.shape), coef[..., 1] + d * self.k3, coef[..., 2] + d * self.m2], -1)


def window(x: np.ndarray, y: np.ndarray, width: float) -> np.ndarray:
    """Contiguous run of sizes around the best one whose ln L is within ``width`` of it,
    widened to the neighbouring sizes until three distinct sizes are in."""
    xs = np.unique(x)
    best_per_size = np.array([y[x == v].min() for v in xs])
    i = int(np.argmin(best_per_size))
    lo = hi = i
    while lo > 0 and best_per_size[lo - 1] <= best_per_size[i] + width:
        lo -= 1
    while hi < xs.size - 1 and best_per_size[hi + 1] <= best_per_size[i] + width:
        hi += 1
    while hi - lo < 2 and (lo > 0 or hi < xs.size - 1):  # at least three sizes
        left = best_per_size[lo - 1] if lo > 0 else math.inf
        right = best_per_size[hi + 1] if hi < xs.size - 1 else math.inf
        if left <= right:
            lo -= 1
        else:
            hi += 1
    return np.flatnonzero((x >= xs[lo]) & (x <= xs[hi]))


def design(x: np.ndarray, idx: np.ndarray) -> Local:
    x0 = float(np.mean(x[idx]))
    xc = x[idx] - x0
    v = np.vander(xc, 3)
    solve = np.linalg.pinv(v)
    s2 = float(np.sum(xc**2))
    return Local(idx, x0, solve, np.einsum("ij,ji->i", v, solve), float(np.sum(xc**3)) / s2, s2 / xc.size)


def vertex(coef: np.ndarray, x0: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertex (x, ln L) of centred quadratics ``coef`` (..., 3); NaN where one opens downward."""
    c2, c1, c0 = coef[..., 0], coef[..., 1], coef[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        xv = np.where(c2 > 0, x0 - c1 / (2 * c2), np.nan)
        yv = np.where(c2 > 0, c0 - c1**2 / (4 * c2), np.nan)
    return xv, yv


def _uncentre(coef: np.ndarray, x0: float) -> tuple[float, float, float]:
    c2, c1, c0 = (float(c) for c in coef)
    return (c2, c1 - 2 * c2 * x0, c0 - c1 * x0 + c2 * x0**2)


def _akima_minimum(x: np.ndarray, y: np.ndarray) -> float:
    """x of the minimum of an Akima interpolant of ln L (mean per size) over the sizes."""
    from scipy.interpolate import Akima1DInterpolator

    xs = np.unique(x)
    if xs.size < 3:
        return math.nan
    ys = np.array([y[x == v].mean() for v in xs])
    grid = np.linspace(xs[0], xs[-1], 400)
    return float(grid[int(np.argmin(Akima1DInterpolator(xs, ys)(grid)))])


def local_fit(budget: float, x: np.ndarray, y: np.ndarray, names: list[str], width: float,
              sigma: float | None) -> tuple[BudgetOptimum, Local | None]:
    """Stage one: the budget's window, outliers and own quadratic (``local.coef``). The
    minimum is located later (``locate``), on the curvature pooled across budgets."""
    nan = math.nan
    best = float(np.exp(y.min()))
    if np.unique(x).size < 3:
        return BudgetOptimum(budget, nan, nan, nan, len(x), "fewer than 3 distinct model sizes",
                             best_loss=best), None
    idx = window(x, y, width)
    excluded = [f"{names[j]} (ln L {y[j] - y.min():+.2f} above the best run: outside the fit window)"
                for j in np.setdiff1d(np.arange(x.size), idx)]
    local = design(x, idx)
    coef = local.solve @ y[idx]
    if sigma is not None and math.isfinite(sigma) and sigma > 0 and idx.size > 3:
        resid = (y[idx] - np.vander(x[idx] - local.x0, 3) @ coef) / np.sqrt(np.clip(1 - local.hat, 1e-9, None))
        worst = int(np.argmax(np.abs(resid)))
        keep = np.delete(idx, worst)
        if abs(resid[worst]) > OUTLIER_SIGMAS * sigma and np.unique(x[keep]).size >= 3:
            excluded.append(f"{names[idx[worst]]} ({abs(resid[worst]) / sigma:.1f}σ off its curve: outlier)")
            local = design(x, keep)
    opt = BudgetOptimum(budget, nan, nan, nan, int(local.idx.size), None,
                        n_range=(float(np.exp(x[local.idx].min())), float(np.exp(x[local.idx].max()))),
                        best_loss=best, n_interp=float(np.exp(_akima_minimum(x, y))), excluded=excluded)
    return opt, local


def locate(opt: BudgetOptimum, local: Local, pooled: float | None, x: np.ndarray, y: np.ndarray,
           log_d: np.ndarray | None) -> None:
    """Stage two: the minimum of the budget's parabola with the curvature pooled across
    budgets (its own when there is none, or when the pooled one is not positive here), its D,
    and the edge flag or note. Fills ``opt`` in place (again on a relocation)."""
    opt.flag, opt.note = None, ""
    own = local.solve @ y[local.idx]
    coef = local.with_curvature(own, effective_curvature(pooled, own[0]))
    opt.coeffs = _uncentre(coef, local.x0)
    opt.max_residual = float(np.max(np.abs(y[local.idx] - np.vander(x[local.idx] - local.x0, 3) @ coef)))
    if pooled is not None and own[0] <= 0 < pooled:
        opt.note = "its own parabola opens downward; located with the curvature pooled across budgets"
    elif pooled is not None and pooled <= 0 < own[0]:
        opt.note = "the curvature pooled across budgets is not positive here; located on its own parabola"
    xv, yv = (float(v) for v in vertex(coef, local.x0))
    if not math.isfinite(xv):
        opt.flag = "the local parabola opens downward (no minimum near the best run)"
        return
    opt.n_opt, opt.loss_opt = safe_exp(xv), safe_exp(yv)
    opt.d_opt = d_at(xv, x, log_d, opt.budget)
    if not inside_edge(xv, x):
        opt.flag = (f"edge: minimum N={opt.n_opt:.3g} outside the grid "
                    f"[{math.exp(x.min()):.3g}, {math.exp(x.max()):.3g}]")
    elif not x.min() <= xv <= x.max() or y.argmin() in (x.argmin(), x.argmax()):
        opt.note = "; ".join(filter(None, (opt.note, "minimum at the edge of the grid (not bracketed by runs); "
                                           "a wider grid would pin it better")))


def effective_curvature(pooled: Any, own: Any) -> Any:
    """The pooled curvature where it is positive, else the budget's own (elementwise)."""
    return own if pooled is None else np.where(pooled > 0, pooled, own)


def inside_edge(xv: float | np.ndarray, x: np.ndarray) -> Any:
    """Whether vertices ``xv`` lie within ``EDGE_STEPS`` grid steps of the budget's sizes."""
    step = float(np.median(np.diff(np.unique(x))))
    with np.errstate(invalid="ignore"):
        return (xv >= x.min() - EDGE_STEPS * step) & (xv <= x.max() + EDGE_STEPS * step)


def safe_exp(v: float) -> float:
    """exp(v) as a float, inf past its range (no overflow warning)."""
    with np.errstate(over="ignore"):
        return float(np.exp(v))


def interp_extended(xv: float | np.ndarray, x: np.ndarray, y: np.ndarray) -> Any:
    """y at xv, piecewise linear through the points (x, y) (first y per distinct x), and past
    the ends along the end segments' slopes."""
    xs, first = np.unique(x, return_index=True)
    ys = y[first]
    out = np.interp(xv, xs, ys)
    lo_slope = (ys[1] - ys[0]) / (xs[1] - xs[0])
    hi_slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
    out = np.where(xv < xs[0], ys[0] + lo_slope * (xv - xs[0]), out)
    return np.where(xv > xs[-1], ys[-1] + hi_slope * (xv - xs[-1]), out)


def d_at(xv: float | np.ndarray, x: np.ndarray, log_d: np.ndarray | None, budget: float) -> Any:
    """D at ln N = xv from the budget's own (N, D) pairs: piecewise linear in log-log, exact at
    every run under any FLOPs convention (a straight line through all of them is not, under
    the attention and non-embedding conventions: docs/fitting.md)."""
    if log_d is None:
        return budget / (6.0 * np.exp(xv))
    with np.errstate(over="ignore"):
        res = np.exp(interp_extended(xv, x, log_d))
    return float(res) if np.ndim(res) == 0 else res
