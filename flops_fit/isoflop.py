"""Chinchilla Approach 2 (Hoffmann et al. 2022, §3.2): IsoFLOP minima, fitted locally.

Per FLOPs budget the minimum of loss over model size N is located by a parabola in
x = ln N fitted to ln L (the seed noise of a final loss is multiplicative, so it is additive
in ln L) through the runs *near the budget's best run* only: the contiguous runs whose
ln L lies within ``LOSS_WINDOW`` of the best (at least three sizes). Real IsoFLOP curves are
asymmetric (L = E + A/N^α + B/D^β with α ≠ β rises faster on one side), and an undertrained
or diverged run far from the minimum pulls a whole-grid parabola's vertex far below every
run (the ``tiny`` demo's 1e12 budget: vertex 0.70 nats against a best run of 1.03). The
window keeps the quadratic where a quadratic is a good local model; the window width was
chosen by measurement (docs/fitting.md). D_opt is interpolated from the runs' own
(N, D) pairs, so it holds under any FLOPs convention; then N_opt ∝ C^a and D_opt ∝ C^b.

A shape-agnostic cross-check (Porian et al. 2024, "Resolving Discrepancies in
Compute-Optimal Scaling of Language Models", who located IsoFLOP minima by Akima
interpolation) is reported beside it as ``a_interp``.

Intervals: a fixed-design residual bootstrap (Davison & Hinkley 1997, Alg. 6.3: modified
residuals r/√(1−h), pooled over budgets, added back to the fitted curves), or, when the
run-to-run noise σ was measured from replicate seeds, a parametric one (ln L + σ·z). Both
keep the grid of sizes, which is what a rerun of the sweep would keep; resampling runs
within a budget instead drops end sizes and extrapolates the vertex (the intervals were
1.3-2.2x too wide). numpy and scipy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from flops_fit.fitboot import Bootstrap, interval, one_blas_thread, positive

#: Runs within this many nats of ln L (about 22% in L) above the budget's best run feed its
#: parabola. Chosen on synthetic asymmetric laws (docs/fitting.md): 0.1 left too few points at
#: 1% noise; 0.5 or the whole grid biased a by up to 0.02 at a 3x off-centre grid.
LOSS_WINDOW = 0.2
#: A run this many noise-σ off its budget's curve is excluded as an outlier (with a note).
OUTLIER_SIGMAS = 4.0
#: A budget's largest residual beyond this many σ is a note (the curve misses its points).
RESIDUAL_NOTE_SIGMAS = 3.0
#: A vertex up to this many grid steps past the last run still feeds the frontier (noted);
#: dropping every budget whose noisy vertex crosses the edge biased a by 0.016 on a grid 3x
#: off-centre (the dropped draws are the ones on one side).
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
            "optima": [o.to_dict() for o in self.optima],
        }
        if self.bootstrap is not None:
            out["bootstrap"] = self.bootstrap.summary()
            out["intervals"] = {k: self.interval(lambda f, k=k: getattr(f, k)) for k in ("a", "b")}
        return out


# --- one budget ------------------------------------------------------------------------------
@dataclass
class _Local:
    """The design of one budget's local fit: which runs, and the linear map to coefficients."""

    idx: np.ndarray  # indices (into the budget's runs) in the fit
    x0: float  # centring of x for a well-conditioned quadratic
    solve: np.ndarray  # (3, k): coefficients = solve @ ln L[idx]
    hat: np.ndarray  # leverages h_ii of the fitted runs


def _window(x: np.ndarray, y: np.ndarray, width: float) -> np.ndarray:
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


def _design(x: np.ndarray, idx: np.ndarray) -> _Local:
    x0 = float(np.mean(x[idx]))
    v = np.vander(x[idx] - x0, 3)
    solve = np.linalg.pinv(v)
    return _Local(idx, x0, solve, np.einsum("ij,ji->i", v, solve))


def _vertex(coef: np.ndarray, x0: float) -> tuple[np.ndarray, np.ndarray]:
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


def _budget(budget: float, x: np.ndarray, y: np.ndarray, log_d: np.ndarray | None, names: list[str],
            width: float, sigma: float | None) -> tuple[BudgetOptimum, _Local | None]:
    nan = math.nan
    best = float(np.exp(y.min()))
    if np.unique(x).size < 3:
        return BudgetOptimum(budget, nan, nan, nan, len(x), "fewer than 3 distinct model sizes",
                             best_loss=best), None
    idx = _window(x, y, width)
    excluded = [f"{names[j]} (ln L {y[j] - y.min():+.2f} above the best run: outside the fit window)"
                for j in np.setdiff1d(np.arange(x.size), idx)]
    local = _design(x, idx)
    coef = local.solve @ y[idx]
    if sigma is not None and math.isfinite(sigma) and sigma > 0 and idx.size > 3:
        resid = (y[idx] - np.vander(x[idx] - local.x0, 3) @ coef) / np.sqrt(np.clip(1 - local.hat, 1e-9, None))
        worst = int(np.argmax(np.abs(resid)))
        keep = np.delete(idx, worst)
        if abs(resid[worst]) > OUTLIER_SIGMAS * sigma and np.unique(x[keep]).size >= 3:
            excluded.append(f"{names[idx[worst]]} ({abs(resid[worst]) / sigma:.1f}σ off its curve: outlier)")
            local = _design(x, keep)
            idx, coef = keep, local.solve @ y[keep]
    fitted = np.vander(x[idx] - local.x0, 3) @ coef
    xv, yv = (float(v) for v in _vertex(coef, local.x0))
    opt = BudgetOptimum(budget, nan, nan, nan, int(idx.size), None, _uncentre(coef, local.x0),
                        (float(np.exp(x[idx].min())), float(np.exp(x[idx].max()))), best,
                        float(np.exp(_akima_minimum(x, y))), excluded,
                        float(np.max(np.abs(y[idx] - fitted))))
    if not math.isfinite(xv):
        opt.flag = "the local parabola opens downward (no minimum near the best run)"
        return opt, None
    opt.n_opt, opt.loss_opt = _exp(xv), _exp(yv)
    opt.d_opt = _d_at(xv, x, log_d, budget)
    step = float(np.median(np.diff(np.unique(x))))
    if not x.min() - EDGE_STEPS * step <= xv <= x.max() + EDGE_STEPS * step:
        opt.flag = (f"edge: minimum N={opt.n_opt:.3g} outside the grid "
                    f"[{math.exp(x.min()):.3g}, {math.exp(x.max()):.3g}]")
    elif not x.min() <= xv <= x.max() or y.argmin() in (x.argmin(), x.argmax()):
        opt.note = "minimum at the edge of the grid (not bracketed by runs); a wider grid would pin it better"
    return opt, (local if opt.used else None)


def _exp(v: float) -> float:
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


def _d_at(xv: float | np.ndarray, x: np.ndarray, log_d: np.ndarray | None, budget: float) -> Any:
    """D at ln N = xv from the budget's own (N, D) pairs: piecewise linear in log-log, exact at
    every run under any FLOPs convention (a straight line through all of them is not:
    residuals 0.11-0.24 in ln D under the attention and non-embedding conventions)."""
    if log_d is None:
        return budget / (6.0 * np.exp(xv))
    with np.errstate(over="ignore"):
        res = np.exp(interp_extended(xv, x, log_d))
    return float(res) if np.ndim(res) == 0 else res


def _frontier(c: np.ndarray, n: np.ndarray, d: np.ndarray) -> tuple[float, float, float, float]:
    """ln N_opt and ln D_opt against ln C by least squares (Hoffmann et al. 2022, §3.2).
    Measured alternatives, no better on 3x off-centre grids (docs/fitting.md): weights from
    each vertex's delta-method variance (bias 0.013 -> 0.030: a vertex pulled towards the
    grid's centre has the smaller variance), and one joint fit of all budgets' runs with the
    vertices tied to the line (bias 0.016 -> 0.021, 6x slower)."""
    ok = np.isfinite(n) & np.isfinite(d) & (n > 0) & (d > 0)
    if np.unique(c[ok]).size < 2:
        return (math.nan,) * 4
    lc = np.log(c[ok])
    a, ln_kn = np.polyfit(lc, np.log(n[ok]), 1)
    b, ln_kd = np.polyfit(lc, np.log(d[ok]), 1)
    return float(a), float(b), _exp(ln_kn), _exp(ln_kd)


@dataclass
class _Design:
    """A used budget's runs and its local fit, for the bootstrap."""

    budget: float
    x: np.ndarray  # all the budget's runs
    log_d: np.ndarray | None
    local: _Local

    @property
    def xw(self) -> np.ndarray:
        return self.x[self.local.idx]


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

    ``sigma``: the run-to-run noise of ln L measured from replicate seeds (``flops_fit.noise``),
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
    groups = [np.flatnonzero(c == u) for u in np.unique(c)]
    optima, locals_ = [], []
    for g in groups:
        opt, local = _budget(float(c[g[0]]), x[g], y[g], None if log_d is None else log_d[g],
                             [labels[j] for j in g], window, sigma)
        optima.append(opt)
        locals_.append(local)
    used = [o for o in optima if o.used]
    cu = np.array([o.budget for o in used])
    a, b, kn, kd = _frontier(cu, np.array([o.n_opt for o in used]), np.array([o.d_opt for o in used]))
    a_interp = _frontier(cu, np.array([o.n_interp for o in used]), np.ones(len(used)))[0]
    fit = IsoFLOPFit(a, b, kn, kd, optima, "tokens" if log_d is not None else "6ND", a_interp=a_interp,
                     window=window)
    # Noise of ln L: the replicates' σ when measured, else the pooled modified residuals.
    pool = _modified_residuals(groups, locals_, x, y)
    fit.sigma, fit.sigma_source = ((float(sigma), "replicates") if sigma is not None and sigma > 0 else
                                   (float(np.sqrt(np.mean(pool**2))) if pool.size else math.nan, "residuals"))
    if n_boot > 0 and fit.usable and (method == "seed" or pool.size >= 3):
        fit.bootstrap = _bootstrap(fit, groups, locals_, x, y, log_d, pool if method == "residual" else None,
                                   n_boot, level, seed)
        for o, local in zip(optima, locals_):
            if local is not None:
                o.n_opt_interval = fit.bootstrap.interval(
                    lambda f, b=o.budget: next((p.n_opt for p in f.optima if p.budget == b), math.nan))
    return fit


def _modified_residuals(groups, locals_, x, y) -> np.ndarray:
    parts = []
    for g, local in zip(groups, locals_):
        if local is None:
            continue
        xi, yi = x[g][local.idx], y[g][local.idx]
        r = yi - np.vander(xi - local.x0, 3) @ (local.solve @ yi)
        free = local.hat < 1 - 1e-6  # a run the quadratic passes through exactly has no residual
        parts.append(r[free] / np.sqrt(1 - local.hat[free]))
    pool = np.concatenate(parts) if parts else np.empty(0)
    return pool - pool.mean() if pool.size else pool


def _bootstrap(fit: IsoFLOPFit, groups, locals_, x, y, log_d, pool: np.ndarray | None, n_boot: int,
               level: float, seed: int | None) -> Bootstrap:
    """Fixed-design refits: every used budget's fitted ln L plus resampled noise. Each local
    fit is a fixed linear map of its ln L, so per-budget vertices are vectorised over draws."""
    rng = np.random.default_rng(seed)
    designs, n_draws, d_draws = [], [], []
    for g, local, o in zip(groups, locals_, fit.optima):
        if local is None:
            continue
        design = _Design(o.budget, x[g], None if log_d is None else log_d[g], local)
        yi = y[g][local.idx]
        yhat = np.vander(design.xw - local.x0, 3) @ (local.solve @ yi)
        noise = (rng.choice(pool, size=(n_boot, yi.size)) if pool is not None
                 else fit.sigma * rng.standard_normal((n_boot, yi.size)))
        ys = yhat + noise
        coefs = ys @ local.solve.T
        xv, _ = _vertex(coefs, local.x0)
        # A draw whose vertex leaves the grid by more than the grid's own width has no minimum.
        span = design.x.max() - design.x.min()
        xv = np.where((xv > design.x.min() - span) & (xv < design.x.max() + span), xv, np.nan)
        designs.append(design)
        n_draws.append(np.exp(xv))
        d_draws.append(_d_at(xv, design.x, design.log_d, design.budget))
    budgets = np.array([d.budget for d in designs])
    draws, failed = [], 0
    for k in range(n_boot):
        nk = np.array([nd[k] for nd in n_draws])
        dk = np.array([dd[k] for dd in d_draws])
        a, b, kn, kd = _frontier(budgets, nk, dk)
        if not math.isfinite(a) or not np.all(np.isfinite(nk)):
            failed += 1
            continue
        optima = [BudgetOptimum(float(cb), float(nv), float(dv), math.nan, 0) for cb, nv, dv in zip(budgets, nk, dk)]
        draws.append(IsoFLOPFit(a, b, kn, kd, optima, fit.d_source))
    return Bootstrap(n_boot, failed, level, seed, draws, method="residual" if pool is not None else "seed")
