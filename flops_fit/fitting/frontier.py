"""The Approach 2 loss frontier: the budgets' IsoFLOP minimum losses as a power law in C above
the irreducible loss E, read past the swept budgets (the ``--verify`` prediction, the backtest,
``loss_frontier.png``), and how far seed noise alone moves a run from it. numpy and scipy only.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from flops_fit.fitting.isoflop import IsoFLOPFit
    from flops_fit.fitting.noise import SeedNoise


#: Where a predicted loss comes from: Approach 3's law at (N, D), or the frontier below.
LAW, FRONTIER = "approach 3 law", "approach 2 frontier"


def frontier_label(floor: tuple[float, float, float] | None) -> str:
    """What a frontier prediction stands on, as the verification line, the backtest and the plot
    say it: E is named either way, so an undetermined E taken as 0 never reads as a known one."""
    if floor is None:
        return f"{FRONTIER}, E undetermined, taken as 0"
    return f"{FRONTIER} above Approach 3's E = {floor[0]:.3g}"


def frontier_loss(isoflop: IsoFLOPFit | None, flops: float | np.ndarray, level: float = 0.9, noise: SeedNoise | None = None,
                  floor: tuple[float, float, float] | None = None) -> tuple[float | np.ndarray, list | None] | None:
    """The Approach 2 loss frontier at ``flops``: ln(L* - E) = u + v ln C through the used
    budgets' parabola minima L*, with a t prediction interval from the line's residuals (the
    measured seed noise, ``noise``, a ``SeedNoise``, as their least; none with two budgets: no
    residual degree of freedom). None with fewer than two budgets. ``flops`` may be an array
    (a plotted curve): the lines are fitted once and the mean and interval ends are arrays.

    E is the irreducible loss: ``floor`` = (E, lo, hi), Approach 3's when the data determine it
    (``ParametricFit.floor``), else 0. Chinchilla's law puts the compute-optimal loss at
    E + K·C^(-αβ/(α+β)) (Hoffmann et al. 2022, eq. 2 at eq. 4's N_opt and D_opt): a power law in
    C above E, as Henighan et al. 2020 fit L(C) = L_inf + (C_0/C)^γ. With E = 0 it is Kaplan et
    al. 2020's pure power law (their Fig. 1), which holds while L* is far above its floor and
    predicts too low a loss as L* nears it (docs/fitting.md measures the difference against a
    known law and on real runs). The interval spans the line's intervals at E, lo and hi."""
    points = _frontier_points(isoflop)
    if len({c for c, _ in points}) < 2:
        return None
    scalar, x0 = np.ndim(flops) == 0, np.log(np.asarray(flops, dtype=float))
    e, *e_ends = floor if floor is not None else (0.0,)
    lines = [_frontier_line(points, x0, level, noise, floor_e) for floor_e in (e, *e_ends)]
    if lines[0] is None:  # a minimum at or below E: this E is no floor of these budgets
        return None
    mean, interval = lines[0]
    if interval is not None and not any(line is None or line[1] is None for line in lines):
        interval = [np.min([line[1][0] for line in lines], axis=0), np.max([line[1][1] for line in lines], axis=0)]
    else:
        interval = None
    if scalar:
        return float(mean), None if interval is None else [float(end) for end in interval]
    return mean, interval


def frontier_noise(isoflop: IsoFLOPFit | None, flops: float, noise: SeedNoise | None, floor: tuple[float, float, float] | None = None
                   ) -> float | None:
    """How far one run's loss at ``flops`` may lie from the frontier's prediction by seed noise
    alone: the standard deviation, as a fraction of the predicted loss, of (run − prediction)
    when the budgets' minima and the run each carry the measured seed noise σ (``noise``, a
    ``SeedNoise``) and nothing else is wrong. The prediction's part is σ carried through the
    line ln(L* − E) = u + v ln C (the standard error of its mean at ln C, Draper & Smith 1998
    §1.4); the run adds its own σ. A parabola's minimum pools several runs, so σ per minimum
    bounds its noise from above and the band is, if anything, lenient: a miss beyond twice
    this is not seed noise. None without a measured σ, two budgets or a frontier at ``flops``."""
    points = _frontier_points(isoflop)
    e = floor[0] if floor is not None else 0.0
    if noise is None or not noise.measured or len({c for c, _ in points}) < 2:
        return None
    x0 = math.log(flops)
    line = _frontier_line(points, np.asarray(x0), 0.9, None, e)
    if line is None:  # a minimum at or below E
        return None
    x = np.log([c for c, _ in points])
    above = float(line[0]) - e  # the predicted L* − E
    se_mean = _ln_sigma(points, noise, e) * math.sqrt(1 / len(x) + _spread(x, x0))  # of ln(L* − E)
    predicted_part = se_mean * above / (e + above)  # back to a fraction of L
    return math.sqrt(predicted_part**2 + noise.sigma**2)


def _ln_sigma(points: list[tuple[float, float]], noise: SeedNoise | None, e: float) -> float:
    """The seed noise of ln(L* − E) at its largest over the minima: σ is a fraction of L, so
    of L − E it is L/(L − E) times that."""
    return noise.sigma * max(loss / (loss - e) for _, loss in points)


def _spread(x: np.ndarray, x0: float | np.ndarray) -> float | np.ndarray:
    """(x0 − mean x)² / Σ(x − mean x)²: how far past its budgets the line is read."""
    return (x0 - x.mean()) ** 2 / float(np.sum((x - x.mean()) ** 2))


def _frontier_points(isoflop: IsoFLOPFit | None) -> list[tuple[float, float]]:
    """(budget, minimum loss) of the budgets that feed the frontier."""
    return [(o.budget, o.loss_opt) for o in (isoflop.optima if isoflop is not None else [])
            if o.used and math.isfinite(o.loss_opt) and o.loss_opt > 0]


def _frontier_line(points: list[tuple[float, float]], x0: np.ndarray, level: float, noise: SeedNoise | None,
                   e: float) -> tuple[np.ndarray, list[np.ndarray] | None] | None:
    """``frontier_loss`` at one irreducible loss ``e`` and ln C = ``x0``: (mean, t interval or
    None), or None when a minimum is not above ``e``."""
    if any(loss <= e for _, loss in points):
        return None
    x = np.log([c for c, _ in points])
    y = np.log([loss - e for _, loss in points])
    slope, intercept = np.polyfit(x, y, 1)
    mean = intercept + slope * x0
    k = len(x)
    if k < 3:
        return e + np.exp(mean), None
    from scipy.stats import t

    sigma_floor = _ln_sigma(points, noise, e) if noise is not None and noise.measured else 0.0
    s = max(math.sqrt(float(np.sum((y - (intercept + slope * x)) ** 2)) / (k - 2)), sigma_floor)
    se = s * np.sqrt(1 + 1 / k + _spread(x, x0))
    half = float(t.ppf((1 + level) / 2, k - 2)) * se
    return e + np.exp(mean), [e + np.exp(mean - half), e + np.exp(mean + half)]
