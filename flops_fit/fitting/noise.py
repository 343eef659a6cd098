"""Run-to-run (seed) noise of the final loss, measured from replicate runs.

Replicates are runs of one model on one token budget that differ only in their seed
(``--replicates K`` plans them at the smallest budget). Their spread in ln L estimates σ,
the noise the fits' residual checks and the seed bootstrap use: with it a residual can be
called beyond noise, and two losses can be said to differ. numpy and pandas only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class SeedNoise:
    sigma: float  # pooled standard deviation of ln L between seeds (NaN without replicates)
    dof: int  # degrees of freedom behind it: runs minus replicate groups
    groups: int  # (budget, size) pairs run with more than one seed
    budgets: tuple[float, ...] = ()  # the budgets those pairs belong to, ascending
    """Where σ was measured. One σ serves every budget, yet seed noise falls as runs get longer
    (docs/fitting.md measures it on the offline sample), so the budget is said wherever σ is."""

    @property
    def measured(self) -> bool:
        return self.dof > 0 and math.isfinite(self.sigma)

    @property
    def where(self) -> str:
        """``at C=1e+11`` (``at C=1e+11, 1e+12``), or nothing when unknown."""
        return "at C=" + ", ".join(f"{c:.3g}" for c in self.budgets) if self.budgets else ""

    def to_dict(self) -> dict:
        return {"sigma": self.sigma, "dof": self.dof, "groups": self.groups, "budgets": list(self.budgets)}

    def describe(self) -> str:
        if not self.measured:
            return "seed noise: not measured (no replicate runs; sweep with --replicates K)"
        return (f"seed noise: σ = {self.sigma:.4f} in ln L (about {100 * math.expm1(self.sigma):.2f}% of the loss), "
                f"from {self.groups} replicated size(s){' ' + self.where if self.where else ''}, "
                f"{self.dof} degrees of freedom")


def seed_noise(table: pd.DataFrame, size_column: str = "n") -> SeedNoise:
    """Pooled within-group σ of ln(loss) over rows sharing budget, size and tokens."""
    if table.empty or not {"budget", "tokens", "loss", size_column} <= set(table):
        return SeedNoise(math.nan, 0, 0)
    ln_l = np.log(table["loss"].astype(float))
    grouped = ln_l.groupby([table["budget"], table[size_column], table["tokens"]])
    counts = grouped.transform("size")
    dev = (ln_l - grouped.transform("mean"))[counts > 1]
    sizes = grouped.size()
    groups = int((sizes > 1).sum())
    dof = int((counts > 1).sum()) - groups
    if dof <= 0:
        return SeedNoise(math.nan, 0, 0)
    budgets = tuple(sorted({float(key[0]) for key in sizes[sizes > 1].index}))
    return SeedNoise(float(np.sqrt((dev**2).sum() / dof)), dof, groups, budgets)
