"""Check a results table before any fit reads it.

The fits (Approach 2's per-budget parabolas, Approach 3's L-BFGS; Hoffmann et al. 2022,
sec. 3.2-3.3) assume numeric, finite, positive budgets, N, tokens and losses, and enough
spread in N and loss to locate a minimum. A table written by hand, by another tool or
by a sweep that went wrong may break those assumptions; here such rows are dropped with a
note, and a table with nothing left to fit is reported as undeterminable instead of
reaching the fitting code. Free of torch and Ray, like the fitting modules.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NUMERIC = ("budget", "tokens", "loss")


def check_table(results: pd.DataFrame, param_count: str = "n") -> tuple[pd.DataFrame, list[str], bool]:
    """Return (cleaned table, notes, fittable).

    Strings that parse as numbers are coerced (a budget stored as "1e15" is kept); rows whose
    budget is missing, non-numeric, zero or negative are dropped. Loss, N and tokens are made
    numeric here and their bad values left to the row selection that names each trial.
    ``fittable`` is False when the ok rows cannot determine a compute-optimal N: fewer than two
    distinct N, or every loss equal.
    """
    r = results.reset_index(drop=True).copy()
    notes: list[str] = []
    for col in (*NUMERIC, param_count):
        if col in r:
            raw = r[col]
            num = pd.to_numeric(raw, errors="coerce").astype(float)
            coerced = int((raw.map(lambda v: isinstance(v, str)) & num.notna()).sum())
            if coerced:
                notes.append(f"coerced {coerced} {col} values stored as text to numbers")
            r[col] = num
    budget = r["budget"]
    bad = ~(np.isfinite(budget) & (budget > 0))
    if bad.any():
        ids = r["trial_id"].astype(str) if "trial_id" in r else r.index.astype(str)
        listed = ", ".join(ids[bad].tolist()[:10])
        notes.append(f"dropped {int(bad.sum())} of {len(r)} rows with a missing, non-numeric, zero or "
                     f"negative budget: {listed}")
        r = r[~bad].reset_index(drop=True)
    ok = r[(r["status"].astype(str) == "ok") & np.isfinite(r["loss"]) & np.isfinite(r[param_count])
           & (r[param_count] > 0)]
    fittable = True
    if len(ok) and ok[param_count].nunique() < 2:
        notes.append(f"undetermined: every usable run has the same {param_count} "
                     f"({ok[param_count].iloc[0]:.4g}); a scaling fit needs at least two model sizes")
        fittable = False
    elif len(ok) > 1 and ok["loss"].nunique() < 2:
        notes.append(f"undetermined: every usable run has the same loss ({ok['loss'].iloc[0]:.4g}); "
                     "no minimum over N can be located")
        fittable = False
    return r, notes, fittable
