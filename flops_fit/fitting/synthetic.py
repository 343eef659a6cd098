"""A known scaling law and IsoFLOP sweeps simulated from it.

Used by the fit tests (recovery and interval calibration need a ground truth) and by the
sweep engine's "simulate" mode, where a trial returns the loss of a known law plus noise
instead of training a model. numpy and pandas only.

The law is Chinchilla's parametric form (Hoffmann et al. 2022, eq. 2)::

    L(N, D) = E + A / N^alpha + B / D^beta

and its compute-optimal frontier under C = 6·N·D (Hoffmann et al. 2022, eq. 4; the G
notation as in Besiroglu et al. 2024, "Chinchilla Scaling: A replication attempt")::

    G = (alpha·A / (beta·B))^(1/(alpha+beta))
    N_opt(C) = G · (C/6)^(beta/(alpha+beta)),   D_opt(C) = G^-1 · (C/6)^(alpha/(alpha+beta))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from flops_fit.fitting.parametric import LawFrontier
from flops_fit.models.gpt_spec import ASPECT_RATIO


@dataclass(frozen=True)
class ScalingLaw(LawFrontier):
    """L(N, D) = E + A/N^alpha + B/D^beta (N parameters, D training tokens)."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def __post_init__(self) -> None:
        for name in ("E", "A", "B", "alpha", "beta"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"ScalingLaw.{name} must be a positive finite number, got {value!r}")

    def loss(
        self,
        n: float | np.ndarray,
        d: float | np.ndarray,
        rng: np.random.Generator | int | None = None,
        noise: float = 0.0,
    ) -> float | np.ndarray:
        """The law's loss, times exp(noise·z), z ~ N(0, 1), when ``noise`` > 0.

        Multiplicative log-normal noise: seed-to-seed spread of a final loss is roughly
        proportional to the loss, and the Approach 3 fit works on log L, where this noise is
        additive and Gaussian. ``noise=0.01`` is ~1% scatter.
        """
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        out = self.law_loss(n, d)
        if noise > 0:
            gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
            out = out * np.exp(noise * gen.standard_normal(np.shape(out)))
        return float(out) if np.ndim(out) == 0 else out


#: Hoffmann et al. 2022 (Chinchilla), Approach 3 as published.
CHINCHILLA = ScalingLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
#: Besiroglu et al. 2024's refit of the Chinchilla data (their Table 1).
BESIROGLU = ScalingLaw(E=1.82, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)
#: The law a plain ``--simulate`` (and ``find_optimal(mode="mock")``) uses: Besiroglu et al.'s
#: refit, each run's loss off it by a seeded 1% log-normal noise.
DEFAULT_SIMULATED_LAW = {"E": BESIROGLU.E, "A": BESIROGLU.A, "B": BESIROGLU.B, "alpha": BESIROGLU.alpha,
                         "beta": BESIROGLU.beta, "noise": 0.01}


def simulate_isoflop(
    budgets: Sequence[float],
    points_per_budget: int = 9,
    noise: float = 0.005,
    seed: int | None = 0,
    law: ScalingLaw = CHINCHILLA,
    span: float = 0.5,
    centre_offset: float = 0.0,
) -> pd.DataFrame:
    """An IsoFLOP sweep drawn from ``law``: a DataFrame shaped like the results table.

    Per budget C, ``points_per_budget`` model sizes spaced log-evenly over
    ``N_opt(C) · 10^[-span, +span]`` (``span`` in decades), shifted by ``centre_offset``
    decades (to put the true optimum off-centre or past the edge of the grid); tokens
    D = C / (6N). Every row has status "ok". Architecture columns are filled with a
    plausible shape (d_model ≈ 64·layers, ~12·d² parameters per layer) so the table passes
    ``results.write_results``; only ``n``, ``tokens``, ``budget`` and ``loss`` carry meaning.
    """
    if points_per_budget < 1:
        raise ValueError("points_per_budget must be >= 1")
    rng = np.random.default_rng(seed)
    rows = []
    for i, budget in enumerate(float(c) for c in budgets):
        centre = math.log10(law.n_opt(budget)) + centre_offset
        for j, log_n in enumerate(np.linspace(centre - span, centre + span, points_per_budget)):
            rows.append(_row(f"sim_{i:02d}_{j:02d}", budget, int(round(10**log_n)), law, rng, noise, seed))
    return pd.DataFrame(rows)


def _row(trial_id: str, budget: float, n: int, law: ScalingLaw, rng: np.random.Generator, noise: float,
         seed: int | None) -> dict:
    """One simulated run of ``n`` parameters at ``budget`` (D = C / 6N) as a results row."""
    tokens = int(round(budget / (6.0 * n)))
    layers = max(1, round((n / (12.0 * ASPECT_RATIO**2)) ** (1.0 / 3.0)))
    return {"trial_id": trial_id, "budget": budget, "n": n, "n_non_embedding": n, "n_matmul": n,
            "d_model": ASPECT_RATIO * layers, "num_layers": layers, "tokens": tokens, "flops": 6.0 * n * tokens,
            "flops_convention": "6n", "loss": float(law.loss(n, tokens, rng=rng, noise=noise)), "status": "ok",
            "seed": seed}


def simulate_branches(
    budgets: Sequence[float],
    points_per_budget: int = 7,
    noise: float = 0.01,
    seed: int | None = 0,
    law: ScalingLaw = BESIROGLU,
    span: float = 16.0,
    centre_offset: float = 0.0,
    cooldown_fraction: float = 0.2,
) -> pd.DataFrame:
    """Warmup-stable-decay branch rows drawn from ``law``: one geometric ladder of sizes shared
    by every budget (ratio ``span^(1/(points_per_budget-1))``), each budget taking the
    ``points_per_budget`` rungs nearest its optimum (shifted by ``centre_offset`` decades), and
    each size one stem whose branches are its (N, C/6N) points. Shaped like the results table
    (``schedule``, ``stem``, ``cooldown_tokens`` included)."""
    if points_per_budget < 3:
        raise ValueError("points_per_budget must be >= 3")
    rng = np.random.default_rng(seed)
    step = math.log(span) / (points_per_budget - 1)
    rows = []
    for i, budget in enumerate(float(c) for c in budgets):
        centre = math.log(law.n_opt(budget)) + centre_offset * math.log(10)
        first = round(centre / step - (points_per_budget - 1) / 2)
        for rung in range(first, first + points_per_budget):
            row = _row(f"sim_{i:02d}_r{rung}", budget, int(round(math.exp(rung * step))), law, rng, noise, seed)
            rows.append({**row, "schedule": "wsd", "stem": f"stem_r{rung}",
                         "cooldown_tokens": int(round(cooldown_fraction * row["tokens"]))})
    return pd.DataFrame(rows)


#: A second law for calibration, more asymmetric than Chinchilla's (α = 0.45 vs β = 0.25:
#: the IsoFLOP valley rises much faster on the small-N side).
ASYMMETRIC = ScalingLaw(E=1.5, A=800.0, B=1200.0, alpha=0.45, beta=0.25)
#: A 16x span (max/min size ratio), in decades either side of the centre.
SPAN_16X = math.log10(16) / 2


@dataclass(frozen=True)
class Calibration:
    """How an estimator of a behaves across seeds of one synthetic design."""

    truth: float
    estimates: np.ndarray
    intervals: np.ndarray  # (seeds, 2); NaN rows where a fit gave none

    @property
    def bias(self) -> float:
        return float(np.nanmean(self.estimates) - self.truth)

    @property
    def coverage(self) -> float:
        lo, hi = self.intervals[:, 0], self.intervals[:, 1]
        return float(np.mean((lo <= self.truth) & (self.truth <= hi)))

    @property
    def ideal_width(self) -> float:
        """The 90% spread of the point estimates across seeds: what a 90% interval should span."""
        lo, hi = np.nanpercentile(self.estimates, [5, 95])
        return float(hi - lo)

    @property
    def width_ratio(self) -> float:
        return float(np.nanmean(self.intervals[:, 1] - self.intervals[:, 0]) / self.ideal_width)

    def summary(self) -> str:
        return (f"bias {self.bias:+.4f}, coverage {self.coverage:.0%}, width {self.width_ratio:.2f}x ideal "
                f"({np.isnan(self.estimates).sum()} NaN)")


def interval_coverage(estimate, law: ScalingLaw, budgets: Sequence[float], seeds: int, points_per_budget: int = 7,
              noise: float = 0.01, centre_offset: float = 0.0, span: float = SPAN_16X) -> Calibration:
    """Run ``estimate(table) -> (a, (lo, hi))`` on ``seeds`` simulated sweeps of ``law``."""
    est, ivs = [], []
    for s in range(seeds):
        table = simulate_isoflop(budgets, points_per_budget, noise, seed=s, law=law, span=span,
                                 centre_offset=centre_offset)
        a, iv = estimate(table)
        est.append(a)
        ivs.append(iv if iv is not None else (math.nan, math.nan))
    return Calibration(law.a, np.array(est, dtype=float), np.array(ivs, dtype=float))
