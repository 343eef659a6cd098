"""Chinchilla Approach 1 (Hoffmann et al. 2022, §3.1): the envelope of loss over compute.

Each model size trained to several token counts (warmup-stable-decay branches, or finished
runs of several lengths) traces a curve of loss against compute C = 6·N·D. At every C the
envelope is the lowest loss any size reaches there; the size that reaches it is N_opt(C), and
N_opt ∝ C^a, D_opt = C / (6·N_opt) ∝ C^(1−a) are fitted to those argmins.

Two choices, both because the sizes are few (a ladder of 5-10 rungs, not Chinchilla's
hundreds of models):

- each size's curve is ln L linear in ln C between its own points, never extrapolated past
  them (a size is a candidate only where it was trained);
- the argmin at each C is refined by the vertex of the parabola in ln N through the best size
  and up to two neighbours a side (``flops_fit.fitting.budget.vertex``, as Approach 2's
  budgets): the raw argmin over a discrete ladder is a staircase whose steps would set the
  exponent. A C whose best size is the smallest or the largest
  covering it has no interior minimum and is left out, as an IsoFLOP budget whose best run
  sits at an edge is.

The interval is a parametric bootstrap: every run's ln L redrawn with the seed noise σ (the
replicates' measured σ, or the residual σ of the sizes' curves when no replicates ran) and
the whole estimator repeated. numpy only.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from flops_fit.fitting.bootstrap import Bootstrap, one_blas_thread, positive, resample
from flops_fit.fitting.budget import vertex

#: Log-spaced compute values the envelope is read at.
GRID_POINTS = 64
#: The parabola at each C runs through the best size and up to this many neighbours a side.
#: Two, not one: on Besiroglu et al.'s law, 5 budgets 2x apart, 7 rungs each, 1% noise, the
#: three-point vertex gave a = 0.526 ± 0.117 over 100 seeds, five points 0.511 ± 0.080
#: (docs/fitting.md, "Approach 1").
VERTEX_REACH = 2
#: What a table with one token count per size gets instead of a fit.
NOT_AVAILABLE = ("Approach 1 not available: it needs several token counts per model size (warmup-stable-decay "
                 "branches, --schedule wsd, or finished runs of several lengths); every size here has one")


@dataclass
class EnvelopeFit:
    """N_opt(C) = k·C^a read off the loss envelope; D_opt = C / (6·N_opt)."""

    a: float
    log_k: float
    points: list[tuple[float, float, float]]
    """(C, N at the envelope's vertex, loss there) at every C that fed the power law."""
    sizes: int
    """Sizes with at least two token counts (the curves the envelope is made of)."""
    sigma: float
    """The noise of ln L the bootstrap redraws with."""
    sigma_source: str
    bootstrap: Bootstrap | None = None

    @property
    def b(self) -> float:
        return 1.0 - self.a

    @property
    def usable(self) -> bool:
        return math.isfinite(self.a)

    def n_opt(self, flops: float | np.ndarray) -> float | np.ndarray:
        return np.exp(self.log_k + self.a * np.log(flops))

    def d_opt(self, flops: float | np.ndarray) -> float | np.ndarray:
        return np.asarray(flops) / (6.0 * self.n_opt(flops))

    def interval(self, fn: Callable[[EnvelopeFit], float]) -> tuple[float, float] | None:
        return None if self.bootstrap is None else self.bootstrap.interval(fn)

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "a_interval": self.interval(lambda f: f.a),
                "log_k": self.log_k, "sizes": self.sizes, "points": [list(p) for p in self.points],
                "sigma": self.sigma, "sigma_source": self.sigma_source,
                "bootstrap": None if self.bootstrap is None else self.bootstrap.summary()}


def curves(n: np.ndarray, flops: np.ndarray, loss: np.ndarray) -> dict[float, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Size -> (distinct ln C, mean ln L at each, runs at each) for sizes trained to two or
    more compute values."""
    out = {}
    for size in np.unique(n):
        rows = np.flatnonzero(n == size)
        ln_c = np.log(flops[rows])
        keys, group = np.unique(np.round(ln_c, 9), return_inverse=True)
        if keys.size < 2:
            continue
        runs = np.bincount(group)
        out[float(size)] = (keys, np.bincount(group, weights=np.log(loss[rows])) / runs, runs)
    return out


def _estimate(sizes: np.ndarray, ln_c: list[np.ndarray], ln_l: list[np.ndarray],
              grid: np.ndarray) -> tuple[float, float, list[tuple[float, float, float]]]:
    """(a, ln k, points) of one draw: the envelope's vertex at each grid C, then the line."""
    x = np.log(sizes)
    ys = np.full((sizes.size, grid.size), np.nan)
    for i, (c, y) in enumerate(zip(ln_c, ln_l)):
        inside = (grid >= c[0] - 1e-9) & (grid <= c[-1] + 1e-9)
        ys[i, inside] = np.interp(grid[inside], c, y)
    points = []
    for j, g in enumerate(grid):
        cover = np.flatnonzero(np.isfinite(ys[:, j]))
        if cover.size < 3:
            continue
        best = int(np.argmin(ys[cover, j]))
        if best == 0 or best == cover.size - 1:  # the envelope's size at an edge: no interior minimum
            continue
        k = cover[max(0, best - VERTEX_REACH): best + VERTEX_REACH + 1]
        x0 = float(x[cover[best]])
        coef = np.polyfit(x[k] - x0, ys[k, j], 2)
        xv, yv = vertex(coef, x0)
        if np.isfinite(xv) and x[k[0]] <= xv <= x[k[-1]]:
            points.append((float(math.exp(g)), float(math.exp(xv)), float(math.exp(yv))))
    if len(points) < 2 or len({round(p[0], 6) for p in points}) < 2:
        return math.nan, math.nan, points
    lc = np.log([p[0] for p in points])
    ln = np.log([p[1] for p in points])
    if np.ptp(lc) <= 0:
        return math.nan, math.nan, points
    a, log_k = np.polyfit(lc, ln, 1)
    return float(a), float(log_k), points


def _curve_sigma(ln_c: list[np.ndarray], ln_l: list[np.ndarray]) -> float:
    """Residual σ of ln L about a quadratic in ln C per size, pooled over sizes with 4+ points."""
    ss, dof = 0.0, 0
    for c, y in zip(ln_c, ln_l):
        if c.size >= 4:
            coef = np.polyfit(c, y, 2)
            ss += float(np.sum((y - np.polyval(coef, c)) ** 2))
            dof += c.size - 3
    return math.sqrt(ss / dof) if dof else math.nan


def available(n: Sequence[float], tokens: Sequence[float]) -> bool:
    """Whether at least three sizes were trained to two or more token counts."""
    counts = Counter(size for size, _ in {(float(a), float(b)) for a, b in zip(n, tokens)})
    return sum(k >= 2 for k in counts.values()) >= 3


def fit_envelope(n: Sequence[float], tokens: Sequence[float], loss: Sequence[float], *,
                 flops: Sequence[float] | None = None, n_boot: int = 200, level: float = 0.9,
                 seed: int | None = 0, sigma: float | None = None, grid_points: int = GRID_POINTS) -> EnvelopeFit:
    """Approach 1 on runs (N, D, loss). C is ``flops`` (the runs' own FLOPs under the budgets'
    convention, so the exponent is in Approach 2's units) or 6·N·D. ``sigma``: the measured seed
    noise of ln L (None: the residual σ of the sizes' curves). Raises ValueError(NOT_AVAILABLE)
    when fewer than three sizes have two or more token counts."""
    n_arr, d_arr, l_arr = positive(n, "n"), positive(tokens, "tokens"), positive(loss, "loss")
    c_arr = 6.0 * n_arr * d_arr if flops is None else positive(flops, "flops")
    by_size = curves(n_arr, c_arr, l_arr)
    if len(by_size) < 3:
        raise ValueError(NOT_AVAILABLE)
    sizes = np.array(sorted(by_size))
    ln_c = [by_size[s][0] for s in sizes]
    ln_l = [by_size[s][1] for s in sizes]
    grid = np.linspace(min(c[0] for c in ln_c), max(c[-1] for c in ln_c), grid_points)
    with one_blas_thread():
        a, log_k, points = _estimate(sizes, ln_c, ln_l, grid)
        if sigma is not None and math.isfinite(sigma) and sigma > 0:
            noise, source = float(sigma), "measured seed noise"
        else:
            noise, source = _curve_sigma(ln_c, ln_l), "residuals of the sizes' curves"
        fit = EnvelopeFit(a, log_k, points, len(sizes), noise, source)
        if n_boot and math.isfinite(a) and math.isfinite(noise) and noise > 0:
            counts = [by_size[s][2] for s in sizes]

            def refit(rng: np.random.Generator) -> EnvelopeFit:
                # a mean of m runs' ln L carries σ/√m
                drawn = [y + noise / np.sqrt(m) * rng.standard_normal(y.size) for y, m in zip(ln_l, counts)]
                a_b, k_b, _ = _estimate(sizes, ln_c, drawn, grid)
                return EnvelopeFit(a_b, k_b, [], len(sizes), noise, source)

            fit.bootstrap = resample(refit, lambda f: f.usable, n_boot, level, 0 if seed is None else seed)
            fit.bootstrap.method = "seed" if sigma else "normal"
    return fit
