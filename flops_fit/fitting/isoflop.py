"""Chinchilla Approach 2 (Hoffmann et al. 2022, §3.2): IsoFLOP minima, fitted locally.

Per FLOPs budget the minimum of loss over model size N is located by a parabola in
x = ln N fitted to ln L (the seed noise of a final loss is multiplicative, so it is additive
in ln L) through the runs *near the budget's best run* only: the contiguous runs whose
ln L lies within ``LOSS_WINDOW`` of the best (at least three sizes). Real IsoFLOP curves are
asymmetric (L = E + A/N^α + B/D^β with α ≠ β rises faster on one side), and an undertrained
or diverged run far from the minimum pulls a whole-grid parabola's vertex far below every
run (docs/fitting.md shows one on the ``tiny`` demo). The window keeps the quadratic where
a quadratic is a good local model; the window width was chosen by measurement
(docs/fitting.md). D_opt is interpolated from the runs' own (N, D) pairs, so it holds
under any FLOPs convention; then N_opt ∝ C^a and D_opt ∝ C^b.

The parabolas' curvature is pooled across budgets (a weighted straight line in ln C through
the budgets' own curvatures, from three budgets up): the curvature of ln L in ln N varies
slowly with C (nearly linearly in ln C for the law above), while a vertex with runs on one
side only is x0 − c1/(2·c2), whose error grows with the noise of its own c2 times its
distance from the runs. On off-centre grids that noise, acting on the shallow valleys of the
largest budgets, biases a; pooling removes most of that bias (measured in docs/fitting.md).

A shape-agnostic cross-check (Porian et al. 2024, "Resolving Discrepancies in
Compute-Optimal Scaling of Language Models", who located IsoFLOP minima by Akima
interpolation) is reported beside it as ``a_interp``.

Intervals: a fixed-design residual bootstrap (Davison & Hinkley 1997, Alg. 6.3: modified
residuals r/√(1−h), pooled over budgets, added back to the fitted curves), or, when the
run-to-run noise σ was measured from replicate seeds, a parametric one (ln L + σ·z). Both
keep the grid of sizes, which is what a rerun of the sweep would keep; resampling runs
within a budget instead drops end sizes and extrapolates the vertex, which makes the
intervals too wide. Each draw repeats the whole estimator, pooling and edge rule included
(a draw's vertex past the edge leaves that draw's frontier, as it would leave the point
estimate's): keeping such vertices also makes the intervals too wide (both measured in
docs/fitting.md). numpy and scipy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from flops_fit.fitting.bootstrap import Bootstrap, interval, one_blas_thread, positive
from flops_fit.fitting.budget import (
    LOSS_WINDOW,
    BudgetOptimum,
    Local,
    d_at,
    effective_curvature,
    inside_edge,
    local_fit,
    locate,
    safe_exp,
    vertex,
)

#: From this many budgets with a local fit the curvature is pooled (a line through two
#: budgets' curvatures is each budget's own).
POOL_MIN_BUDGETS = 3


@dataclass
class IsoFLOPFit:
    """N_opt = n_coef·C^a and D_opt = d_coef·C^b, fitted over the unflagged budgets."""

    a: float
    b: float
    n_coef: float
    d_coef: float
    optima: list[BudgetOptimum]
    d_source: str  # "tokens" (interpolated from the runs) or "6ND" (D = C/(6N))
    bootstrap: Bootstrap | None = None
    a_interp: float = math.nan  # the exponent from the Akima minima
    sigma: float = math.nan  # noise σ of ln L the intervals used
    sigma_source: str = ""  # "residuals" or "replicates"
    window: float = LOSS_WINDOW
    curvature: str = "own"  # "pooled" across budgets (a line in ln C) or each budget's "own"

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
            "d_source": self.d_source, "a_interp": self.a_interp, "window": self.window,
            "sigma": self.sigma, "sigma_source": self.sigma_source,
            "curvature": self.curvature, "optima": [o.to_dict() for o in self.optima],
        }
        if self.bootstrap is not None:
            out["bootstrap"] = self.bootstrap.summary()
            out["intervals"] = {k: self.interval(lambda f, k=k: getattr(f, k)) for k in ("a", "b")}
        return out


# --- pooled curvature and the frontier -------------------------------------------------------
def _pooling(budgets: np.ndarray, locals_: list[Local], members: np.ndarray) -> np.ndarray:
    """The linear map M with pooled curvatures = M @ own curvatures: weighted least squares of
    c2 on (1, ln C) over the ``members``, weights 1/var(c2) from each budget's design
    (var ∝ Σ solve[0]²). Fixed by the design, so the bootstrap applies it to every draw."""
    if members.sum() < POOL_MIN_BUDGETS:
        return np.eye(len(locals_))
    u = np.log(budgets)
    basis = np.column_stack([np.ones_like(u), u - u[members].mean()])
    w = np.array([1.0 / float(loc.solve[0] @ loc.solve[0]) for loc in locals_]) * members
    return basis @ np.linalg.solve(basis.T @ (basis * w[:, None]), (basis * w[:, None]).T)


def _locate_all(designs: list[_Design]) -> np.ndarray:
    """Every budget's minimum on the pooled curvature. A budget whose minimum lands past the
    edge is then left out of the pool (its window is on one wall of the valley, where the
    curvature is not the bottom's) and the rest are located again. Returns the map used."""
    budgets = np.array([d.opt.budget for d in designs])
    own = np.array([float(d.local.solve[0] @ d.y[d.local.idx]) for d in designs])
    members = np.ones(len(designs), dtype=bool)
    for _ in range(2):
        pool_map = _pooling(budgets, [d.local for d in designs], members)
        pooled = pool_map @ own if members.sum() >= POOL_MIN_BUDGETS else [None] * len(designs)
        for d, c2 in zip(designs, pooled):
            locate(d.opt, d.local, c2 if c2 is None else float(c2), d.x, d.y, d.log_d)
        inside = np.array([not (d.opt.flag or "").startswith("edge") for d in designs], dtype=bool)
        if np.array_equal(inside | ~members, np.ones_like(members)) or inside.sum() < POOL_MIN_BUDGETS:
            break
        members = inside
    return pool_map


def _frontier(c: np.ndarray, n: np.ndarray, d: np.ndarray) -> tuple[float, float, float, float]:
    """ln N_opt and ln D_opt against ln C by least squares (Hoffmann et al. 2022, §3.2).
    Alternatives measured no better on off-centre grids (docs/fitting.md): weights from each
    vertex's delta-method variance (more bias: a vertex pulled towards the grid's centre has
    the smaller variance, so the larger weight; with pooled curvature too), and one joint fit
    of all budgets' runs with the vertices tied to the line (more bias, and slower)."""
    ok = np.isfinite(n) & np.isfinite(d) & (n > 0) & (d > 0)
    if np.unique(c[ok]).size < 2:
        return (math.nan,) * 4
    lc = np.log(c[ok])
    a, ln_kn = np.polyfit(lc, np.log(n[ok]), 1)
    b, ln_kd = np.polyfit(lc, np.log(d[ok]), 1)
    return float(a), float(b), safe_exp(ln_kn), safe_exp(ln_kd)


@dataclass
class _Design:
    """A budget with a local fit: its runs and its design, for the bootstrap."""

    opt: BudgetOptimum
    x: np.ndarray  # all the budget's runs
    y: np.ndarray
    log_d: np.ndarray | None
    local: Local

    def fitted(self) -> np.ndarray:
        """ln L of the budget's own quadratic at its fitted runs."""
        xi = self.x[self.local.idx]
        return np.vander(xi - self.local.x0, 3) @ (self.local.solve @ self.y[self.local.idx])


# --- the whole sweep -------------------------------------------------------------------------
@one_blas_thread()
def fit_isoflop(
    budget: Sequence[float],
    n: Sequence[float],
    loss: Sequence[float],
    tokens: Sequence[float] | None = None,
    n_boot: int = 0,
    level: float = 0.9,
    seed: int | None = 0,
    window: float = LOSS_WINDOW,
    sigma: float | None = None,
    method: str = "residual",
    names: Sequence[str] | None = None,
) -> IsoFLOPFit:
    """Chinchilla Approach 2. Exponents a, b are NaN when fewer than 2 budgets are usable.

    ``sigma``: the run-to-run noise of ln L measured from replicate seeds (``flops_fit.fitting.noise``),
    used to flag outliers and, with ``method="seed"``, for a parametric bootstrap; the default
    ``method="residual"`` resamples the local fits' own residuals.
    """
    if method not in ("residual", "seed"):
        raise ValueError("method must be 'residual' (resample the fits' residuals) or 'seed' (σ·z)")
    if method == "seed" and not (sigma is not None and sigma > 0):
        raise ValueError("method='seed' needs sigma, the run-to-run noise measured from replicates")
    c = np.asarray(budget, dtype=float)
    x = np.log(positive(n, "n"))
    y = np.log(positive(loss, "loss"))
    log_d = None if tokens is None else np.log(positive(tokens, "tokens"))
    if not (c.shape == x.shape == y.shape) or (log_d is not None and log_d.shape != x.shape):
        raise ValueError("budget, n, loss (and tokens) must have the same length")
    labels = [f"N={v:.3g}" for v in np.exp(x)] if names is None else [str(s) for s in names]
    optima, designs = [], []
    for u in np.unique(c):
        g = np.flatnonzero(c == u)
        opt, local = local_fit(float(u), x[g], y[g], [labels[j] for j in g], window, sigma)
        optima.append(opt)
        if local is not None:
            designs.append(_Design(opt, x[g], y[g], None if log_d is None else log_d[g], local))
    pool_map = _locate_all(designs)
    used = [o for o in optima if o.used]
    cu = np.array([o.budget for o in used])
    a, b, kn, kd = _frontier(cu, np.array([o.n_opt for o in used]), np.array([o.d_opt for o in used]))
    a_interp = _frontier(cu, np.array([o.n_interp for o in used]), np.ones(len(used)))[0]
    fit = IsoFLOPFit(a, b, kn, kd, optima, "tokens" if log_d is not None else "6ND", a_interp=a_interp,
                     window=window, curvature="pooled" if len(designs) >= POOL_MIN_BUDGETS else "own")
    # Noise of ln L: the replicates' σ when measured, else the pooled modified residuals.
    pool = _modified_residuals(designs)
    fit.sigma, fit.sigma_source = ((float(sigma), "replicates") if sigma is not None and sigma > 0 else
                                   (float(np.sqrt(np.mean(pool**2))) if pool.size else math.nan, "residuals"))
    if n_boot > 0 and fit.usable and (method == "seed" or pool.size >= 3):
        fit.bootstrap = _bootstrap(fit, designs, pool_map, pool if method == "residual" else None,
                                   n_boot, level, seed)
        for o in used:
            o.n_opt_interval = fit.bootstrap.interval(
                lambda f, b=o.budget: next((p.n_opt for p in f.optima if p.budget == b), math.nan))
    return fit


def _modified_residuals(designs: list[_Design]) -> np.ndarray:
    """Every local fit's residuals r/√(1−h), centred (Davison & Hinkley 1997, eq. 6.9)."""
    parts = []
    for d in designs:
        r = d.y[d.local.idx] - d.fitted()
        free = d.local.hat < 1 - 1e-6  # a run the quadratic passes through exactly has no residual
        parts.append(r[free] / np.sqrt(1 - d.local.hat[free]))
    pool = np.concatenate(parts) if parts else np.empty(0)
    return pool - pool.mean() if pool.size else pool


def _bootstrap(fit: IsoFLOPFit, designs: list[_Design], pool_map: np.ndarray, pool: np.ndarray | None,
               n_boot: int, level: float, seed: int | None) -> Bootstrap:
    """Fixed-design refits: every local fit's ln L plus resampled noise, then the estimator
    itself: pooled curvature, vertices, the edge rule, the frontier. Each step is a fixed
    linear map or elementwise, so it is vectorised over draws. A budget whose vertex leaves
    the edge in a draw is left out of that draw's frontier (as the point estimate would);
    a draw with fewer than two budgets left is a failure."""
    rng = np.random.default_rng(seed)
    coefs = []
    for d in designs:
        yhat = d.fitted()
        noise = (rng.choice(pool, size=(n_boot, yhat.size)) if pool is not None
                 else fit.sigma * rng.standard_normal((n_boot, yhat.size)))
        coefs.append((yhat + noise) @ d.local.solve.T)
    pooled = np.stack([cf[:, 0] for cf in coefs], 1) @ pool_map.T
    n_draws, d_draws = [], []
    for j, (d, cf) in enumerate(zip(designs, coefs)):
        xv, _ = vertex(d.local.with_curvature(cf, effective_curvature(pooled[:, j], cf[:, 0])), d.local.x0)
        xv = np.where(d.opt.used & inside_edge(xv, d.x), xv, np.nan)
        n_draws.append(np.exp(xv))
        d_draws.append(d_at(xv, d.x, d.log_d, d.opt.budget))
    budgets = np.array([d.opt.budget for d in designs])
    nk, dk = np.stack(n_draws, 1), np.stack(d_draws, 1)
    ok = np.isfinite(nk) & np.isfinite(dk) & (nk > 0) & (dk > 0)
    a, ln_kn = _masked_line(np.log(budgets), np.log(np.where(ok, nk, 1.0)), ok)
    b, ln_kd = _masked_line(np.log(budgets), np.log(np.where(ok, dk, 1.0)), ok)
    used = [j for j, d in enumerate(designs) if d.opt.used]
    draws = [IsoFLOPFit(float(a[k]), float(b[k]), safe_exp(ln_kn[k]), safe_exp(ln_kd[k]),
                        [BudgetOptimum(float(budgets[j]), float(nk[k, j]), float(dk[k, j]), math.nan, 0) for j in used],
                        fit.d_source) for k in range(n_boot) if math.isfinite(a[k])]
    return Bootstrap(n_boot, n_boot - len(draws), level, seed, draws,
                     method="residual" if pool is not None else "seed")


def _masked_line(u: np.ndarray, v: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slope and intercept of v on u by least squares, one line per row of v over its ``ok``
    entries (the frontier of every bootstrap draw at once); NaN with fewer than two."""
    w = ok.astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        um = (w * u).sum(1) / w.sum(1)
        vm = (w * v).sum(1) / w.sum(1)
        du = u - um[:, None]
        slope = (w * du * (v - vm[:, None])).sum(1) / (w * du**2).sum(1)
    slope = np.where(ok.sum(1) >= 2, slope, np.nan)
    return slope, vm - slope * um
