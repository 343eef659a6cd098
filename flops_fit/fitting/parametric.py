"""Scaling-law fits: Chinchilla Approaches 2 and 3, with bootstrap intervals.

numpy and scipy only (never torch or Ray): a laptop refits a cluster's sweep in a second.

- ``fit_isoflop``: Approach 2 (Hoffmann et al. 2022, §3.2; ``flops_fit.fitting.isoflop``). Per FLOPs
  budget a local parabola of ln L in ln N gives N_opt(C); then N_opt ∝ C^a and D_opt ∝ C^b.
- ``fit_parametric``: Approach 3 (Hoffmann et al. 2022, §3.3 and App. D.2), as re-done by
  Besiroglu et al. 2024 ("Chinchilla Scaling: A replication attempt"): L = E + A/N^α + B/D^β
  fitted as LSE(a − α log N, b − β log D, e) against log L with a Huber loss (δ = 1e-3)
  summed over points, by L-BFGS from a grid of 4500 starting points.
- ``compare``: both frontier exponents side by side, and when they agree (``flops_fit.fitting.compare``).

Intervals are percentile bootstrap intervals over refits of redrawn data (by default the
same design with new noise: docs/fitting.md); refits that fail are counted in
``Bootstrap.n_failed`` rather than silently dropped.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from scipy.optimize import minimize

from flops_fit.fitting.bootstrap import Bootstrap, interval, one_blas_thread, positive, resample

HUBER_DELTA = 1e-3
#: Why every parameter of a fit with no optimum is undetermined.
NO_OPTIMUM = "no fit: L-BFGS converged from none of its starts"
#: A parameter whose bootstrap interval spans more than this ratio (a decade) is undetermined.
DECADE = 10.0
#: E within this fraction of 0 (or of the least observed loss) sits on its bound.
E_FLOOR_FRACTION = 0.01
#: Hoffmann et al. 2022, App. D.2: α, β ∈ {0, 0.5, …, 2}, e ∈ {−1, −.5, …, 1}, a, b ∈ {0, 5, …, 25}.
INIT_GRID = np.array(
    [
        (a, b, e, al, be)
        for al, be, e, a, b in itertools.product(
            np.arange(0, 2.01, 0.5), np.arange(0, 2.01, 0.5), np.arange(-1, 1.01, 0.5),
            np.arange(0, 26, 5.0), np.arange(0, 26, 5.0),
        )
    ]
)  # columns: a, b, e, alpha, beta (4500 rows)
PARAM_NAMES = ("E", "A", "B", "alpha", "beta")


# --- Approach 3: parametric law -----------------------------------------------------------
class LawFrontier:
    """L(N, D) = E + A/N^α + B/D^β (Hoffmann et al. 2022, eq. 2) and its compute-optimal
    frontier under C = 6·N·D (eq. 4): G = (αA/(βB))^(1/(α+β)), N_opt = G·(C/6)^a,
    D_opt = G⁻¹·(C/6)^b with a = β/(α+β), b = α/(α+β). Shared by a fitted law
    (``ParametricFit``) and a known one (``synthetic.ScalingLaw``); needs E, A, B, alpha, beta."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    @property
    def a(self) -> float:
        """Exponent of N_opt ∝ C^a."""
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        """Exponent of D_opt ∝ C^b."""
        return self.alpha / (self.alpha + self.beta)

    @property
    def G(self) -> float:
        """NaN unless α, β > 0: otherwise the law has no compute-optimal frontier (and a
        negative base to a fractional power would be complex), and NaN when A or B underflowed
        to 0 (a refit's ln B far below -700): no frontier, rather than a ZeroDivisionError."""
        num, den = self.alpha * self.A, self.beta * self.B
        if not (self.alpha > 0 and self.beta > 0 and num > 0 and den > 0):
            return math.nan
        with np.errstate(over="ignore"):
            return float(np.float64(num / den) ** (1.0 / (self.alpha + self.beta)))

    def n_opt(self, flops: float | np.ndarray) -> float | np.ndarray:
        return self.G * (np.asarray(flops, dtype=float) / 6.0) ** self.a

    def d_opt(self, flops: float | np.ndarray) -> float | np.ndarray:
        return (np.asarray(flops, dtype=float) / 6.0) ** self.b / self.G

    def law_loss(self, n: float | np.ndarray, d: float | np.ndarray) -> float | np.ndarray:
        n, d = np.asarray(n, dtype=float), np.asarray(d, dtype=float)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # an unconverged law gives inf/NaN
            return self.E + self.A * n ** (-self.alpha) + self.B * d ** (-self.beta)

    def loss_opt(self, flops: float | np.ndarray) -> float | np.ndarray:
        return self.law_loss(self.n_opt(flops), self.d_opt(flops))


@dataclass
class ParametricFit(LawFrontier):
    """A fitted L(N, D) = E + A/N^α + B/D^β and its frontier under C = 6·N·D."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    objective: float = math.nan  # the Huber loss at the optimum (summed unless reduction="mean")
    converged: bool = True
    n_points: int = 0
    bootstrap: Bootstrap | None = None
    raw: tuple[float, ...] = ()  # the optimizer's (a, b, e, α, β): ln A, ln B, ln E may be < -700
    e_bound: float = math.inf  # E was kept below this (the least observed loss)

    @property
    def theta(self) -> np.ndarray:
        if self.raw:
            return np.array(self.raw, dtype=float)
        with np.errstate(divide="ignore"):  # E = 0 (a law with no floor): ln E = -inf, clipped
            ln_a, ln_b, ln_e = np.maximum(np.log([self.A, self.B, self.E]), -700.0)
        return np.array([ln_a, ln_b, ln_e, self.alpha, self.beta])

    def undetermined(self) -> dict[str, str]:
        """Parameters the data do not pin down, with the reason: a bootstrap interval that spans
        more than a decade, or one that sits on a bound (E at 0 or at the least observed loss;
        α or β near 0); every parameter when there is no optimum (L-BFGS converged from no
        start) or the bootstrap ran and fewer than two of its refits converged (no interval to
        judge by). Empty when determined or untested (no bootstrap asked for); None-free, so
        ``not fit.undetermined()`` reads."""
        if not self.converged:
            return dict.fromkeys(PARAM_NAMES, NO_OPTIMUM)
        if self.bootstrap is None:
            return {}
        if len(self.bootstrap.draws) < 2:
            return dict.fromkeys(PARAM_NAMES, f"{len(self.bootstrap.draws)} of {self.bootstrap.n_boot} "
                                              "bootstrap refits converged: no interval")
        out = {}
        for name in PARAM_NAMES:
            lo, hi = self.interval(lambda f, k=name: getattr(f, k))
            if not (math.isfinite(lo) and math.isfinite(hi)):
                out[name] = "no finite interval"
            elif name == "E" and hi <= E_FLOOR_FRACTION * self.e_bound:
                out[name] = f"its {self.bootstrap.level:.0%} interval lies on the bound E = 0"
            elif name == "E" and lo <= E_FLOOR_FRACTION * self.e_bound:
                out[name] = f"its {self.bootstrap.level:.0%} interval [{lo:.3g}, {hi:.3g}] reaches the bound E = 0"
            elif name == "E" and hi >= (1 - E_FLOOR_FRACTION) * self.e_bound:
                out[name] = (f"its {self.bootstrap.level:.0%} interval [{lo:.3g}, {hi:.3g}] reaches the least "
                             f"observed loss {self.e_bound:.3g}")
            elif lo <= 0:
                out[name] = f"its {self.bootstrap.level:.0%} interval [{lo:.3g}, {hi:.3g}] reaches 0"
            elif hi / lo > DECADE:
                out[name] = (f"its {self.bootstrap.level:.0%} interval [{lo:.3g}, {hi:.3g}] spans "
                             f"{math.log10(hi / lo):.1f} decades")
        return out

    def floor(self) -> tuple[float, float, float] | None:
        """(E, lo, hi): the irreducible loss and its interval when the data determine E (a
        converged fit with a bootstrap, E off its bounds), else None, whatever A, B, α, β are:
        the loss frontier stands on it (``flops_fit.fitting.frontier.frontier_loss``)."""
        if not self.converged or self.bootstrap is None or len(self.bootstrap.draws) < 2 or "E" in self.undetermined():
            return None
        lo, hi = self.interval(lambda f: f.E)
        return self.E, lo, hi

    @property
    def determined(self) -> bool | None:
        """True when every parameter is pinned down, False when one is not (or the fit found
        no optimum), None untested (a converged fit with no bootstrap asked for)."""
        if self.converged and self.bootstrap is None:
            return None
        return not self.undetermined()

    def loss(self, n: float | np.ndarray, d: float | np.ndarray) -> float | np.ndarray:
        return self.law_loss(n, d)

    def interval(self, fn: Callable[[ParametricFit], float]) -> tuple[float, float] | None:
        return interval(self.bootstrap, fn)

    def to_dict(self) -> dict[str, Any]:
        names = (*PARAM_NAMES, "a", "b", "G")
        out: dict[str, Any] = {k: getattr(self, k) for k in names}
        out.update(objective=self.objective, converged=self.converged, n_points=self.n_points,
                   determined=self.determined, undetermined=self.undetermined())
        if self.bootstrap is not None:
            out["bootstrap"] = self.bootstrap.summary()
            out["intervals"] = {k: self.interval(lambda f, k=k: getattr(f, k)) for k in names}
        return out


def huber_objective(theta: np.ndarray, ln_n, ln_d, ln_l, delta: float = HUBER_DELTA,
                    reduction: str = "sum") -> tuple[np.ndarray, np.ndarray]:
    """Huber loss of LSE(a − α ln N, b − β ln D, e) − ln L, and its analytic gradient.

    ``theta`` is (a, b, e, α, β), or a (K, 5) stack evaluated at once (to rank the 4500
    starting points in one vectorised pass). Returns (f, grad) with shapes (K,) and (K, 5).
    The loss is summed over points, as Hoffmann et al. 2022 and Besiroglu et al. 2024 do:
    with δ = 1e-3 a mean makes f and its gradient ~1/n_points smaller, and L-BFGS's
    stopping tests (absolute ones, at these magnitudes) then stop it far from the optimum.
    """
    th = np.atleast_2d(theta)
    t1 = th[:, 0:1] - th[:, 3:4] * ln_n
    t2 = th[:, 1:2] - th[:, 4:5] * ln_d
    t3 = np.broadcast_to(th[:, 2:3], t1.shape)
    m = np.maximum(np.maximum(t1, t2), t3)
    w1, w2, w3 = np.exp(t1 - m), np.exp(t2 - m), np.exp(t3 - m)
    s = w1 + w2 + w3
    r = m + np.log(s) - ln_l
    ar = np.abs(r)
    h = np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta))
    psi = np.clip(r, -delta, delta) / s  # dHuber/dr times d LSE / d t_i = w_i / s
    scale = 1.0 if reduction == "sum" else 1.0 / ln_l.size
    g1, g2 = (psi * w1).sum(1), (psi * w2).sum(1)
    grad = np.stack([g1, g2, (psi * w3).sum(1), -(psi * w1 * ln_n).sum(1), -(psi * w2 * ln_d).sum(1)], 1)
    return h.sum(1) * scale, grad * scale


#: L-BFGS-B stopping rule. scipy stops when the *absolute* decrease of f falls below
#: ftol·max(|f|, 1); the summed Huber loss is ~1e-4 here, so scipy's default (2.2e-9) stops
#: where a warm start is still visibly off the optimum (which would shrink bootstrap
#: intervals towards the point estimate). 1e-15 converges to ~1e-11 relative in f.
LBFGS_OPTIONS = {"ftol": 1e-15, "gtol": 1e-12, "maxiter": 5000}
#: A run that stops with a failed line search counts as converged below this |gradient|.
GRAD_TOL = 1e-6


def _make_objective(ln_n: np.ndarray, ln_d: np.ndarray, ln_l: np.ndarray, delta: float,
                    reduction: str) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    """``huber_objective`` for one θ, with preallocated buffers: ~3x faster per call, which
    is what L-BFGS spends its time on (tests check both agree)."""
    t = np.empty((3, ln_l.size))
    scale = 1.0 if reduction == "sum" else 1.0 / ln_l.size

    def fun(th: np.ndarray) -> tuple[float, np.ndarray]:
        t[0] = th[0] - th[3] * ln_n
        t[1] = th[1] - th[4] * ln_d
        t[2] = th[2]
        m = t.max(0)
        w = np.exp(t - m)
        s = w.sum(0)
        r = m + np.log(s) - ln_l
        psi = np.minimum(np.maximum(r, -delta), delta)
        q = psi / s
        wq = w * q
        # Elementwise products and sums, no `@`: BLAS calls on arrays this small pay thread
        # start-up in OpenBLAS and were 4x slower on a busy 2-core machine.
        g = np.empty(5)
        g[:3] = wq.sum(1)
        g[3] = -(wq[0] * ln_n).sum()
        g[4] = -(wq[1] * ln_d).sum()
        return float((psi * (r - 0.5 * psi)).sum()) * scale, g * scale  # psi·(r − psi/2) is Huber

    return fun


def _lbfgs(starts: np.ndarray, data: tuple, delta: float, reduction: str,
           options: dict | None = None, e_max: float = math.inf) -> tuple[np.ndarray, float, bool]:
    fun = _make_objective(*data, delta, reduction)
    # E stays below the least observed loss (a floor above a measured loss is not a floor).
    bounds = [(None, None), (None, None), (None, e_max if math.isfinite(e_max) else None), (None, None), (None, None)]
    grad_scale = 1.0 if reduction == "sum" else 1.0 / data[2].size
    opts = LBFGS_OPTIONS if options is None else options
    best: tuple[np.ndarray, float, bool] = (starts[0], math.inf, False)
    for x0 in starts:
        with np.errstate(over="ignore", invalid="ignore"):
            res = minimize(fun, np.minimum(x0, [np.inf, np.inf, e_max, np.inf, np.inf]), jac=True,
                           method="L-BFGS-B", bounds=bounds, options=opts)
        if np.all(np.isfinite(res.x)) and res.fun < best[1]:
            # L-BFGS-B's "ABNORMAL" (line search failed) at a Huber kink is still an optimum
            # when the gradient there is ~0 (seen: |g| ~1e-8 vs ~1e-2 at the grid starts);
            # anything else is a failure.
            ok = bool(res.success) or float(np.max(np.abs(res.jac))) < GRAD_TOL * grad_scale
            best = (res.x, float(res.fun), ok and res.x[3] > 0 and res.x[4] > 0)
    return best


def _best_starts(data: tuple, k: int, delta: float, reduction: str) -> np.ndarray:
    if k <= 0:
        return INIT_GRID[:0]
    # In blocks of 256 starts: whole-grid temporaries (4500 x n_points) were mmap-ed and
    # page-faulted on every call, twice as slow as blocks that stay in cache.
    with np.errstate(over="ignore", invalid="ignore"):
        f = np.concatenate([huber_objective(INIT_GRID[i:i + 256], *data, delta, reduction)[0]
                            for i in range(0, len(INIT_GRID), 256)])
    f = np.where(np.isfinite(f), f, np.inf)
    return INIT_GRID[np.argsort(f, kind="stable")[:k]]


@one_blas_thread()
def fit_parametric(
    n: Sequence[float],
    d: Sequence[float],
    loss: Sequence[float],
    n_boot: int = 0,
    level: float = 0.9,
    seed: int | None = 0,
    delta: float = HUBER_DELTA,
    top_k: int | None = 32,
    boot_top_k: int | None = None,
    reduction: str = "sum",
    lbfgs_options: dict | None = None,
    method: str = "normal",
    sigma: float | None = None,
) -> ParametricFit:
    """Chinchilla Approach 3 by L-BFGS from the published 4500-point grid, with E kept in
    [0, least observed loss).

    Speed: the objective is first evaluated at all 4500 grid points in one vectorised pass
    and L-BFGS runs only from the ``top_k`` best (``top_k=None`` runs all 4500, ~100x slower;
    tests check both reach the same optimum). Bootstrap refits start from the point estimate
    (a warm start: resampled data move the optimum little) plus the ``boot_top_k`` best grid
    points for that resample (default 0 for the fixed-design bootstraps, where extra starts
    changed no interval in tests and cost 4x; 2 for "resample", whose optimum can change basin).
    A refit counts as failed (``bootstrap.n_failed``) when no start converges to α, β > 0.

    ``method``: all but "resample" keep the design (every run's N and D) and add noise in
    ln L to the fitted ln L. "normal" (default) draws it Gaussian with the σ of the fit's
    residuals, inflated by √(n/(n−5)) for the five fitted parameters; "residual" resamples
    those residuals; "seed" uses the run-to-run σ measured from replicates; "resample" draws
    runs with replacement (the classic pairs bootstrap, whose intervals on a fixed IsoFLOP
    design are too wide). Why not "residual": with δ = 1e-3, far below 1% noise, the
    Huber fit is nearly least absolute deviations and passes close to several runs, so its
    residuals pile up near 0; resampled, they make an L1-type fit look steadier than it is
    (the unsmoothed residual bootstrap is a poor guide for L1 regression: De Angelis, Hall &
    Young 1993). On synthetic designs (docs/fitting.md) "residual" intervals come out too
    narrow and cover the truth too rarely; "normal" ones are about the right width.
    ``reduction="mean"`` and ``lbfgs_options`` exist to demonstrate (tests) why Chinchilla sums.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError("reduction must be 'sum' (Chinchilla) or 'mean'")
    if method not in ("normal", "residual", "seed", "resample"):
        raise ValueError("method must be 'normal', 'residual', 'seed' or 'resample'")
    if method == "seed" and not (sigma is not None and sigma > 0):
        raise ValueError("method='seed' needs sigma, the run-to-run noise measured from replicates")
    ln_n, ln_d = np.log(positive(n, "n")), np.log(positive(d, "d"))
    ln_l = np.log(positive(loss, "loss"))
    if not (ln_n.shape == ln_d.shape == ln_l.shape) or ln_n.size < 5:
        raise ValueError("n, d, loss must have the same length, at least 5 (five parameters)")
    if boot_top_k is None:  # a fixed design moves the optimum little: the warm start finds it
        boot_top_k = 2 if method == "resample" else 0
    e_max = float(ln_l.min()) - 1e-9
    e_bound = float(np.exp(ln_l.min()))

    def run(y: np.ndarray, idx: np.ndarray, starts: np.ndarray) -> ParametricFit:
        data = (ln_n[idx], ln_d[idx], y)
        th, f, ok = _lbfgs(starts, data, delta, reduction, lbfgs_options, e_max)
        # Unbounded L-BFGS can wander off on data the law does not describe (a few noisy
        # points): a, b past exp's range give inf, and such a fit is not converged.
        with np.errstate(over="ignore"):
            E, A, B = (float(np.exp(th[i])) for i in (2, 0, 1))
        ok = ok and all(math.isfinite(v) for v in (E, A, B)) and th[3] > 0 and th[4] > 0
        return ParametricFit(E, A, B, float(th[3]), float(th[4]), f, ok, idx.size,
                             raw=tuple(float(v) for v in th), e_bound=e_bound)

    everything = np.arange(ln_l.size)
    data = (ln_n, ln_d, ln_l)
    fit = run(ln_l, everything, INIT_GRID if top_k is None else _best_starts(data, top_k, delta, reduction))
    fitted = np.log(np.maximum(fit.law_loss(np.exp(ln_n), np.exp(ln_d)), 1e-300)) if fit.converged else ln_l
    resid = (ln_l - fitted) * math.sqrt(ln_l.size / max(ln_l.size - 5, 1))
    resid -= resid.mean()
    noise_sd = sigma if method == "seed" else float(np.sqrt(np.mean(resid**2)))

    def refit(rng: np.random.Generator) -> ParametricFit:
        if method == "resample":
            idx = rng.choice(everything, size=everything.size, replace=True)
            y = ln_l[idx]
        else:
            idx = everything
            noise = rng.choice(resid, size=resid.size) if method == "residual" else noise_sd * rng.standard_normal(resid.size)
            y = fitted + noise
        sub = (ln_n[idx], ln_d[idx], y)
        grid_starts = _best_starts(sub, boot_top_k if fit.converged else (top_k or 32), delta, reduction)
        # Warm start from the point estimate only when it is a real optimum.
        return run(y, idx, np.vstack([fit.theta, grid_starts]) if fit.converged else grid_starts)

    if n_boot > 0 and not fit.converged and method in ("normal", "residual") and top_k:
        # No optimum, so no residuals (noise_sd = 0): every fixed-design draw would be the
        # point fit's own data, refitted from the same top_k starts, the same failure bit for
        # bit. Count the n_boot failures without running them (on a failed smoke fit they were
        # 640 L-BFGS runs, ~15 s, that could only fail).
        fit.bootstrap = Bootstrap(n_boot, n_boot, level, seed, [])
    elif n_boot > 0:
        fit.bootstrap = resample(refit, lambda r: r.converged, n_boot, level, seed)
    if fit.bootstrap is not None:
        fit.bootstrap.method = method
    return fit
