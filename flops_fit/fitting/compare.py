"""Both approaches' frontier exponents side by side, and when they may be said to agree.
Plain Python (the fits are passed in), so it stays importable from both fit modules."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from flops_fit.fitting.isoflop import IsoFLOPFit
    from flops_fit.fitting.parametric import ParametricFit


#: "The approaches agree" needs both exponents' intervals narrower than this (in a): wider
#: intervals overlap whatever the truth, which made the old overlap rule vacuous.
AGREE_MAX_WIDTH = 0.1


@dataclass
class Comparison:
    a_isoflop: float
    a_parametric: float
    interval_isoflop: tuple[float, float] | None
    interval_parametric: tuple[float, float] | None
    agree: bool | None  # None: the intervals cannot decide (missing, or too wide to mean anything)
    note: str
    units: str = "C = 6ND"  # the FLOPs convention both exponents are in


def compare(isoflop_fit: IsoFLOPFit, parametric_fit: ParametricFit,
            parametric_a: Callable[[ParametricFit], float] | None = None, units: str = "C = 6ND") -> Comparison:
    """Compare the frontier exponent a of N_opt ∝ C^a from both approaches, in the same units.

    ``parametric_a`` gives Approach 3's exponent under the budgets' own FLOPs convention
    (default: the closed form under C = 6ND). They "agree" only when both intervals are
    narrower than ``AGREE_MAX_WIDTH`` and each point estimate lies inside the other's
    interval; they "disagree" when the intervals do not overlap; otherwise the data cannot
    tell (agree is None) and the note says which number decided. Hoffmann et al. 2022 report
    a = 0.49 (Approach 2) and 0.46 (Approach 3) on the same runs; Besiroglu et al. 2024 traced
    a larger gap to the Approach 3 fit itself.
    """
    get = parametric_a or (lambda f: f.a)
    # a fit with no optimum has no exponent: where L-BFGS stopped is not one
    ai, ap = isoflop_fit.a, get(parametric_fit) if getattr(parametric_fit, "converged", True) else math.nan
    ii = isoflop_fit.interval(lambda f: f.a)
    ip = parametric_fit.interval(get)
    head = f"frontier exponent a (N_opt ∝ C^a, {units}): Approach 2 {_exponent(ai)}, Approach 3 {_exponent(ap)}"
    if not (math.isfinite(ai) and math.isfinite(ap)):
        return Comparison(ai, ap, ii, ip, None, head + "; cannot compare (a fit is unusable)", units)
    if ii is None or ip is None or not all(map(math.isfinite, (*ii, *ip))):
        return Comparison(ai, ap, ii, ip, None, head + "; no bootstrap intervals to judge agreement", units)
    level = isoflop_fit.bootstrap.level if isoflop_fit.bootstrap else 0.9
    span = f" ({level:.0%} intervals [{ii[0]:.3f}, {ii[1]:.3f}] and [{ip[0]:.3f}, {ip[1]:.3f}])"
    if ii[0] > ip[1] or ip[0] > ii[1]:
        return Comparison(ai, ap, ii, ip, False, head + span + (
            "; the approaches DISAGREE beyond their intervals: the parametric form (Approach 3) or "
            "the IsoFLOP grid (Approach 2) is likely misspecified; prefer Approach 2 for N_opt/D_opt"), units)
    wide = [(name, iv[1] - iv[0]) for name, iv in (("Approach 2", ii), ("Approach 3", ip))
            if iv[1] - iv[0] > AGREE_MAX_WIDTH]
    if wide:
        why = ", ".join(f"{name}'s is {w:.3f} wide" for name, w in wide)
        return Comparison(ai, ap, ii, ip, None, head + span + (
            f"; agreement undetermined: {why} (each must be at most {AGREE_MAX_WIDTH} wide to tell them apart)"), units)
    if not (ii[0] <= ap <= ii[1] and ip[0] <= ai <= ip[1]):
        return Comparison(ai, ap, ii, ip, None, head + span + (
            "; the intervals overlap but each estimate is not inside the other's interval: "
            "agreement undetermined"), units)
    return Comparison(ai, ap, ii, ip, True, head + span + "; the approaches agree", units)


def _exponent(a: float) -> str:
    return f"{a:.3f}" if math.isfinite(a) else "n/a"
