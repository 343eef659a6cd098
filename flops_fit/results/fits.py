"""Both scaling-law fits of one results table: the runs that feed them, the seed noise, each
approach's fit and the notes on what they leave out or do not determine.

``Result`` (``flops_fit.results.result``) holds what this returns and answers questions from
it (predict, table, frontier); this module only decides and runs the fits.

Which approach is primary: Approach 2 (IsoFLOP parabolas) gives N_opt and D_opt; it assumes
no functional form for the loss, reads D from the recorded tokens (so it holds under any
FLOPs convention), and Besiroglu et al. 2024 found Approach 3's fit fragile enough to have
been misreported in Hoffmann et al. 2022. Approach 3 (the parametric law) gives the loss,
which Approach 2 cannot, and is the fallback for N and D when Approach 2 has < 2 usable
budgets. ``compare`` flags when the two disagree beyond their intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from flops_fit.fitting.bootstrap import Bootstrap
from flops_fit.fitting.budget import RESIDUAL_NOTE_SIGMAS
from flops_fit.fitting.checks import parametric_a_in_budget_units
from flops_fit.fitting.compare import Comparison, compare, judge
from flops_fit.fitting.envelope import NOT_AVAILABLE, EnvelopeFit, available, fit_envelope
from flops_fit.fitting.isoflop import IsoFLOPFit, fit_isoflop
from flops_fit.fitting.noise import SeedNoise, seed_noise
from flops_fit.fitting.parametric import ParametricFit, fit_parametric
from flops_fit.results.check import check_table


@dataclass
class TableFits:
    results: pd.DataFrame
    """The checked table (every row, coerced where the check could)."""
    notes: list[str]
    fit_data: pd.DataFrame
    """The rows that feed the fits: status ok, finite positive loss, N and tokens."""
    noise: SeedNoise
    isoflop: IsoFLOPFit | None
    parametric: ParametricFit | None
    comparison: Comparison | None
    law_known: bool
    """Approach 3 converged and the data determine its law."""
    primary: str | None
    """Which approach gives N and D: "isoflop", "parametric" or None (nothing determined)."""
    envelope: EnvelopeFit | None = None
    """Approach 1, where sizes were trained to several token counts."""
    envelope_agreement: dict[str, Any] | None = None
    """Approach 1's a beside Approach 2's: {"agree": True/False/None, "note": the line}."""


def fit_table(results: pd.DataFrame, param_count: str, n_boot: int, seed: int | None, level: float) -> TableFits:
    """Check the table, select the runs, measure the seed noise, fit both approaches, compare."""
    table, notes, fittable = check_table(results, param_count)
    d = select_runs(table, param_count, notes)
    if not fittable:  # a malformed or degenerate table never reaches the fits
        d = d.iloc[0:0]
    noise = seed_noise(d, param_count)
    sigma = noise.sigma if noise.measured else None
    isoflop: IsoFLOPFit | None = None
    parametric: ParametricFit | None = None
    if len(d):
        names = d["trial_id"].astype(str).tolist() if "trial_id" in d else None
        isoflop = quietly(notes, "Approach 2", lambda: fit_isoflop(
            d["budget"], d[param_count], d["loss"], tokens=d["tokens"], n_boot=n_boot, level=level,
            seed=seed, sigma=sigma, names=names))
        if isoflop is not None:
            notes += isoflop_notes(isoflop, noise, n_boot)
    if len(d) >= 5:
        parametric = quietly(notes, "Approach 3", lambda: fit_parametric(
            d[param_count], d["tokens"], d["loss"], n_boot=n_boot, level=level, seed=seed))
        if parametric is not None:
            notes += parametric_notes(parametric)
    elif fittable:
        notes.append(f"Approach 3 not fitted: {len(d)} usable runs (needs at least 5)")
    envelope, envelope_agreement = fit_approach_1(d, param_count, n_boot, seed, level, sigma, isoflop, notes)
    comparison = None
    if isoflop is not None and parametric is not None:
        in_units = parametric_a_in_budget_units(d, param_count)
        conventions = sorted(set(d.get("flops_convention", pd.Series(["6n"])).dropna()))
        units = "C = 6ND" if in_units is None else f"C under {'/'.join(conventions)}, N = {param_count}"
        comparison = compare(isoflop, parametric, in_units, units)
    law_known = parametric is not None and parametric.converged and parametric.determined is not False
    primary = ("isoflop" if isoflop is not None and isoflop.usable else "parametric" if law_known else None)
    return TableFits(table, notes, d, noise, isoflop, parametric, comparison, law_known, primary, envelope,
                     envelope_agreement)


def fit_approach_1(d: pd.DataFrame, param_count: str, n_boot: int, seed: int | None, level: float,
                   sigma: float | None, isoflop: IsoFLOPFit | None,
                   notes: list[str]) -> tuple[EnvelopeFit | None, dict[str, Any] | None]:
    """Approach 1 where at least three sizes have several token counts (else one note saying it
    is not available), in the budgets' FLOPs units, and its a judged beside Approach 2's."""
    if not len(d):
        return None, None
    if not available(d[param_count], d["tokens"]):
        notes.append(NOT_AVAILABLE)
        return None, None
    flops = d["flops"] if "flops" in d and (pd.to_numeric(d["flops"], errors="coerce") > 0).all() else None
    envelope = quietly(notes, "Approach 1", lambda: fit_envelope(
        d[param_count], d["tokens"], d["loss"], flops=flops, n_boot=n_boot, level=level, seed=seed, sigma=sigma))
    if envelope is None:
        return None, None
    if not envelope.usable:
        notes.append("Approach 1 unusable: the envelope's best size sat at an edge of the sizes at every compute "
                     "value (no interior minimum to read N_opt from)")
        return envelope, None
    if isoflop is None or not isoflop.usable:
        return envelope, None
    conventions = sorted(set(d.get("flops_convention", pd.Series(["6n"])).dropna()))
    units = "C = 6ND" if conventions == ["6n"] and param_count == "n" else f"C under {'/'.join(conventions)}"
    agree, note = judge(("Approach 1", envelope.a, envelope.interval(lambda f: f.a)),
                        ("Approach 2", isoflop.a, isoflop.interval(lambda f: f.a)), units, level,
                        "the sizes' loss curves (Approach 1) and the IsoFLOP parabolas (Approach 2) see different "
                        "optima; check the runs of the budgets' edges")
    return envelope, {"agree": agree, "note": note}


def select_runs(r: pd.DataFrame, param_count: str, notes: list[str]) -> pd.DataFrame:
    """The rows that feed the fits; every other row is named in ``notes`` with its reason."""
    reasons = pd.Series("", index=r.index)
    for col in ("loss", param_count, "tokens"):
        values = pd.to_numeric(r[col], errors="coerce").astype(float)
        reasons[~(np.isfinite(values) & (values > 0))] = f"no valid {col}"
    status = r["status"].astype(str)
    reasons[status != "ok"] = status
    if "error" in r:
        err = r["error"].where(r["error"].notna(), "").astype(str).str.slice(0, 60)
        reasons = reasons.where((status == "ok") | (err == ""), reasons + ": " + err)
    bad = reasons != ""
    if (status == "undertrained").any():
        notes.append("undertrained: a run whose validation loss ended above the plateau level (halfway "
                     "from the text's unigram to its bigram cross-entropy) never left the initial loss "
                     "plateau; its loss measures its step count, not its size, so it is not fitted")
    if bad.any():
        ids = r["trial_id"].astype(str) if "trial_id" in r else r.index.astype(str)
        listed = [f"{i} ({why})" for i, why in zip(ids[bad], reasons[bad])]
        more = f", and {len(listed) - 10} more" if len(listed) > 10 else ""
        notes.append(f"excluded {int(bad.sum())} of {len(r)} runs from the fits: "
                     + ", ".join(listed[:10]) + more)
    return r[~bad].reset_index(drop=True)



def isoflop_notes(fit: IsoFLOPFit, noise: SeedNoise, n_boot: int) -> list[str]:
    """What Approach 2 left out, flagged or could not measure."""
    notes: list[str] = []
    sigma = noise.sigma if noise.measured else fit.sigma
    for o in fit.optima:
        if not o.used:
            notes.append(f"Approach 2: budget {o.budget:.3g} left out of the exponent fit ({o.flag})")
        if o.excluded:
            notes.append(f"Approach 2: budget {o.budget:.3g} fitted without " + ", ".join(o.excluded))
        if o.note:
            notes.append(f"Approach 2: budget {o.budget:.3g}: {o.note}")
        if o.used and math.isfinite(sigma) and sigma > 0 and o.max_residual > RESIDUAL_NOTE_SIGMAS * sigma:
            notes.append(f"Approach 2: budget {o.budget:.3g}'s parabola misses a run by "
                         f"{o.max_residual / sigma:.1f}σ (σ = {sigma:.3g} in ln L, {fit.sigma_source})")
    iv = fit.interval(lambda f: f.a)
    if fit.usable and iv is not None and math.isfinite(fit.a_interp) and not iv[0] <= fit.a_interp <= iv[1]:
        notes.append(f"Approach 2: the shape-agnostic Akima cross-check gives a = {fit.a_interp:.3f}, outside "
                     f"the parabolas' interval [{iv[0]:.3f}, {iv[1]:.3f}]: the curves' shape matters here")
    if not fit.usable:
        notes.append("Approach 2 unusable: fewer than 2 budgets with a located minimum")
    elif fit.bootstrap is not None and fit.bootstrap.n_failed:
        notes.append(failed_note("Approach 2", fit.bootstrap))
    elif n_boot and fit.bootstrap is None:
        notes.append("Approach 2: no intervals (too few runs beyond three per budget to measure the noise)")
    return notes


def parametric_notes(fit: ParametricFit) -> list[str]:
    """Why Approach 3's law, frontier or irreducible loss is not reported as known, if so."""
    notes: list[str] = []
    if not fit.converged:  # its numbers are where L-BFGS stopped, not an optimum: none is printed
        notes.append("Approach 3: L-BFGS converged from none of its starts; no law, frontier or "
                     "irreducible loss from these runs")
        return notes
    if fit.bootstrap is not None and fit.bootstrap.n_failed:
        notes.append(failed_note("Approach 3", fit.bootstrap))
    missing = fit.undetermined()
    if missing:
        known = ("its law and frontier are not reported as known (E is: the loss frontier stands on it)"
                 if "E" not in missing else "its law, frontier and irreducible loss are not reported as known")
        by_reason: dict[str, list[str]] = {}  # one reason, said once for the parameters it covers
        for name, why in missing.items():
            by_reason.setdefault(why, []).append(name)
        notes.append("Approach 3: the data do not determine " + "; ".join(
            f"{', '.join(names)} ({why})" for why, names in by_reason.items()) + "; " + known)
    return notes


def quietly(notes: list[str], name: str, fit: Callable[[], Any]) -> Any:
    """Run one fit; a numerical failure on a valid table becomes a note, never a traceback
    that would throw away a finished sweep's table and plots."""
    try:
        with np.errstate(all="ignore"):
            return fit()
    except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
        notes.append(f"{name} failed on this table ({type(exc).__name__}: {exc}); it is left out")
        return None


def failed_note(name: str, boot: Bootstrap) -> str:
    return (f"{name}: {boot.n_failed} of {boot.n_boot} bootstrap refits failed; intervals use "
            f"the other {boot.n_boot - boot.n_failed}")
