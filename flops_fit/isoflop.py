"""Chinchilla Approach 2 (Hoffmann et al. 2022, §3.2): IsoFLOP parabolas.

Per FLOPs budget a parabola of loss in log N around the minimum gives N_opt(C); D_opt is read
off the trials' own token counts (log D is linear in log N within one IsoFLOP budget), or
C/(6N) without them; then N_opt ∝ C^a and D_opt ∝ C^b in log space. An optimum at the edge
of its grid, or a parabola opening downward, is flagged and left out of the exponent fit.
numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from flops_fit.fitboot import Bootstrap, interval, one_blas_thread, positive, resample


@dataclass
class BudgetOptimum:
    """One budget's parabola minimum. ``flag`` is None when it feeds the exponent fit."""

    budget: float
    n_opt: float
    d_opt: float
    loss_opt: float
    n_points: int
    flag: str | None = None
    coeffs: tuple[float, ...] = ()  # loss = c2·x² + c1·x + c0 with x = ln N

    @property
    def used(self) -> bool:
        return self.flag is None


@dataclass
class IsoFLOPFit:
    """N_opt = n_coef·C^a and D_opt = d_coef·C^b, fitted over the unflagged budgets."""

    a: float
    b: float
    n_coef: float
    d_coef: float
    optima: list[BudgetOptimum]
    d_source: str  # "tokens" (interpolated from the data) or "6ND" (D = C/(6N))
    bootstrap: Bootstrap | None = None

    @property
    def usable(self) -> bool:
        return math.isfinite(self.a)

    def n_opt(self, flops: float | np.ndarray) -> float | np.ndarray:
        return self.n_coef * np.asarray(flops, dtype=float) ** self.a

    def d_opt(self, flops: float | np.ndarray) -> float | np.ndarray:
        return self.d_coef * np.asarray(flops, dtype=float) ** self.b

    def interval(self, fn: Callable[[IsoFLOPFit], float]) -> tuple[float, float] | None:
        return interval(self.bootstrap, fn)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "a": self.a, "b": self.b, "n_coef": self.n_coef, "d_coef": self.d_coef,
            "d_source": self.d_source,
            "optima": [
                {k: getattr(o, k) for k in ("budget", "n_opt", "d_opt", "loss_opt", "n_points", "flag")}
                for o in self.optima
            ],
        }
        if self.bootstrap is not None:
            out["bootstrap"] = self.bootstrap.summary()
            out["intervals"] = {k: self.interval(lambda f, k=k: getattr(f, k)) for k in ("a", "b")}
        return out


def _budget_optimum(
    budget: float, x: np.ndarray, loss: np.ndarray, log_d: np.ndarray | None,
    x_range: tuple[float, float] | None = None,
) -> BudgetOptimum:
    """Parabola in x = ln N through one budget's runs; flag what cannot be trusted.

    Flags (the budget is then left out of the exponent fit, Hoffmann et al. 2022 fit only
    minima bracketed by their IsoFLOP grid): fewer than 3 distinct sizes; a parabola opening
    downward; a vertex outside the sampled range; the lowest observed loss at the smallest or
    largest N (the minimum is not bracketed, so the vertex is an extrapolation).
    ``x_range`` (bootstrap refits) checks the vertex against the original grid instead of
    the resample's, and skips the bracketing rule, which a resample can break by chance.
    """
    nan = math.nan
    if np.unique(x).size < 3:
        return BudgetOptimum(budget, nan, nan, nan, len(x), "fewer than 3 distinct model sizes")
    x0 = float(np.mean(x))  # centre for a well-conditioned polyfit
    c2, c1, c0 = np.polyfit(x - x0, loss, 2)
    coeffs = (float(c2), float(c1 - 2 * c2 * x0), float(c0 - c1 * x0 + c2 * x0**2))
    if c2 <= 0:
        return BudgetOptimum(budget, nan, nan, nan, len(x), "parabola opens downward", coeffs)
    xv = x0 - c1 / (2 * c2)
    loss_v = float(c0 - c1**2 / (4 * c2))
    lo, hi = x_range if x_range is not None else (float(x.min()), float(x.max()))
    with np.errstate(over="ignore"):  # a nearly flat parabola can put its vertex anywhere
        n_v = float(np.exp(xv))
        if log_d is not None:
            # Within one IsoFLOP budget log D is linear in log N (D = C/(k·N) under any
            # per-parameter FLOPs rule), so interpolating the recorded tokens at N_opt is
            # exact for the data and needs no FLOPs convention.
            slope, icpt = np.polyfit(x, log_d, 1)
            d_v = float(np.exp(icpt + slope * xv))
        else:
            d_v = budget / (6.0 * n_v)
    opt = BudgetOptimum(budget, n_v, d_v, loss_v, len(x), None, coeffs)
    if not lo <= xv <= hi:
        opt.flag = f"edge: parabola minimum N={n_v:.3g} outside the grid [{math.exp(lo):.3g}, {math.exp(hi):.3g}]"
    elif x_range is None:
        i = int(np.argmin(loss))
        if x[i] in (x.min(), x.max()):
            side = "smallest" if x[i] == x.min() else "largest"
            opt.flag = f"edge: lowest loss at the {side} N of the grid (minimum not bracketed)"
    return opt


def _frontier(optima: list[BudgetOptimum]) -> tuple[float, float, float, float]:
    used = [o for o in optima if o.used]
    if len({o.budget for o in used}) < 2:
        return (math.nan,) * 4
    lc = np.log([o.budget for o in used])
    a, ln_kn = np.polyfit(lc, np.log([o.n_opt for o in used]), 1)
    b, ln_kd = np.polyfit(lc, np.log([o.d_opt for o in used]), 1)
    return float(a), float(b), math.exp(ln_kn), math.exp(ln_kd)


@one_blas_thread()
def fit_isoflop(
    budget: Sequence[float],
    n: Sequence[float],
    loss: Sequence[float],
    tokens: Sequence[float] | None = None,
    n_boot: int = 0,
    level: float = 0.9,
    seed: int | None = 0,
) -> IsoFLOPFit:
    """Chinchilla Approach 2. Returns exponents a, b (NaN when < 2 budgets are usable)."""
    c = np.asarray(budget, dtype=float)
    x = np.log(positive(n, "n"))
    y = np.asarray(loss, dtype=float)
    log_d = None if tokens is None else np.log(positive(tokens, "tokens"))
    if not (c.shape == x.shape == y.shape) or (log_d is not None and log_d.shape != x.shape):
        raise ValueError("budget, n, loss (and tokens) must have the same length")
    if not np.all(np.isfinite(y)):
        raise ValueError("loss has non-finite values; drop diverged/failed runs first")
    groups = [np.flatnonzero(c == u) for u in np.unique(c)]

    def fit_once(idx_per_budget: list[np.ndarray], ranges: list | None) -> IsoFLOPFit:
        optima = []
        for k, idx in enumerate(idx_per_budget):
            if ranges is not None and ranges[k] is None:
                continue  # excluded in the point estimate: stays excluded in every refit
            optima.append(_budget_optimum(
                float(c[idx[0]]), x[idx], y[idx], None if log_d is None else log_d[idx],
                None if ranges is None else ranges[k]))
        return IsoFLOPFit(*_frontier(optima), optima, "tokens" if log_d is not None else "6ND")

    fit = fit_once(groups, None)
    if n_boot > 0 and fit.usable:
        ranges = [(x[g].min(), x[g].max()) if o.used else None for g, o in zip(groups, fit.optima)]
        fit.bootstrap = resample(
            lambda rng: fit_once([rng.choice(g, size=g.size, replace=True) for g in groups], ranges),
            lambda refit: refit.usable, n_boot, level, seed)
    return fit
