"""``Result``: a sweep's results table, both scaling-law fits, and what they predict.

Which approach is primary: Approach 2 (IsoFLOP parabolas) gives N_opt and D_opt; it assumes
no functional form for the loss, reads D from the recorded tokens (so it holds under any
FLOPs convention), and Besiroglu et al. 2024 found Approach 3's fit fragile enough to have
been misreported in Hoffmann et al. 2022. Approach 3 (the parametric law) gives the loss,
which Approach 2 cannot, and is the fallback for N and D when Approach 2 has < 2 usable
budgets. ``compare`` flags when the two disagree beyond their intervals.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from flops_fit import results as results_io
from flops_fit.accounting import PARAM_COUNTS
from flops_fit.fit import Comparison, IsoFLOPFit, ParametricFit, compare, fit_isoflop, fit_parametric
from flops_fit.tablecheck import check_table

#: Past this many decades beyond the largest swept budget, predict() warns.
EXTRAPOLATION_WARN_DECADES = 3.0
_LABELS = {"isoflop": "Approach 2 (IsoFLOP parabolas)", "parametric": "Approach 3 (parametric law)"}


class Prediction(dict):
    """What ``Result.predict`` returns: a dict (JSON-able) whose keys are also attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Result:
    """Fits a results table (see ``flops_fit.results.SCHEMA``) both ways, with intervals.

    Only rows with status "ok" and a finite positive loss, N and tokens feed the fits; the
    rest are listed in ``notes``. ``param_count`` picks which parameter count is N: "n"
    (all parameters, Chinchilla's convention and the default, so numbers compare with
    Hoffmann et al. 2022), "n_non_embedding" (Kaplan et al. 2020) or "n_matmul".
    """

    def __init__(self, results: pd.DataFrame, param_count: str = "n", n_boot: int = 200,
                 seed: int | None = 0, level: float = 0.9, path: str | Path | None = None) -> None:
        if param_count not in PARAM_COUNTS:
            raise ValueError(f"param_count must be one of {PARAM_COUNTS}, got {param_count!r}")
        if n_boot < 0:
            raise ValueError(f"n_boot must be >= 0 (0 skips the intervals), got {n_boot}")
        missing = [c for c in ("budget", "tokens", "loss", "status", param_count) if c not in results]
        if missing:
            raise ValueError(f"results table lacks columns {missing}")
        self.results, self.notes, fittable = check_table(results, param_count)
        self.param_count, self.n_boot, self.seed, self.level = param_count, n_boot, seed, level
        self.path = None if path is None else Path(path)
        self.fit_data = self._select_runs()
        if not fittable:  # a malformed or degenerate table never reaches the fits
            self.fit_data = self.fit_data.iloc[0:0]
        d = self.fit_data
        self.isoflop: IsoFLOPFit | None = None
        self.parametric: ParametricFit | None = None
        if len(d):
            self.isoflop = fit_isoflop(d["budget"], d[param_count], d["loss"], tokens=d["tokens"],
                                       n_boot=n_boot, level=level, seed=seed)
            self._note_isoflop()
        if len(d) >= 5:
            self.parametric = fit_parametric(d[param_count], d["tokens"], d["loss"], n_boot=n_boot,
                                             level=level, seed=seed)
            self._note_parametric()
        else:
            self.notes.append(f"Approach 3 not fitted: {len(d)} usable runs (needs at least 5)")
        self.comparison: Comparison | None = None
        if self.isoflop is not None and self.parametric is not None:
            self.comparison = compare(self.isoflop, self.parametric)
            if self.comparison.agree is False:
                self.notes.append(self.comparison.note)
        self.primary = ("isoflop" if self.isoflop is not None and self.isoflop.usable else
                        "parametric" if self.parametric is not None and self.parametric.converged else None)

    @classmethod
    def from_path(cls, path: str | Path, **kwargs: Any) -> Result:
        """Read ``results.parquet`` (or a sweep directory holding it) and fit."""
        p = results_io.results_path(path)
        return cls(results_io.read_results(p), path=p, **kwargs)

    # --- what feeds the fits, and what did not ----------------------------------------
    def _select_runs(self) -> pd.DataFrame:
        r = self.results
        reasons = pd.Series("", index=r.index)
        for col in ("loss", self.param_count, "tokens"):
            values = pd.to_numeric(r[col], errors="coerce").astype(float)
            reasons[~(np.isfinite(values) & (values > 0))] = f"no valid {col}"
        status = r["status"].astype(str)
        reasons[status != "ok"] = status
        if "error" in r:
            err = r["error"].where(r["error"].notna(), "").astype(str).str.slice(0, 60)
            reasons = reasons.where((status == "ok") | (err == ""), reasons + ": " + err)
        bad = reasons != ""
        if bad.any():
            ids = r["trial_id"].astype(str) if "trial_id" in r else r.index.astype(str)
            listed = [f"{i} ({why})" for i, why in zip(ids[bad], reasons[bad])]
            more = f", and {len(listed) - 10} more" if len(listed) > 10 else ""
            self.notes.append(f"excluded {int(bad.sum())} of {len(r)} runs from the fits: "
                              + ", ".join(listed[:10]) + more)
        return r[~bad].reset_index(drop=True)

    def _note_isoflop(self) -> None:
        fit = self.isoflop
        for o in fit.optima:
            if not o.used:
                self.notes.append(f"Approach 2: budget {o.budget:.3g} left out of the exponent fit ({o.flag})")
        if not fit.usable:
            self.notes.append("Approach 2 unusable: fewer than 2 budgets with a bracketed minimum")
        elif fit.bootstrap is not None and fit.bootstrap.n_failed:
            self.notes.append(_failed_note("Approach 2", fit.bootstrap))

    def _note_parametric(self) -> None:
        fit = self.parametric
        if not fit.converged:
            self.notes.append("Approach 3: L-BFGS did not converge from any start; treat its numbers with care")
        if fit.bootstrap is not None and fit.bootstrap.n_failed:
            self.notes.append(_failed_note("Approach 3", fit.bootstrap))
        conventions = set(self.fit_data.get("flops_convention", pd.Series(dtype=str)).dropna()) - {"6n"}
        if self.param_count != "n" or conventions:
            self.notes.append(
                f"Approach 3's frontier assumes C = 6·N·D with N = {self.param_count}, but the budgets "
                f"use {sorted(conventions) or ['6n']} with N = n; its N_opt/D_opt are in those units, "
                "Approach 2's follow the budgets")

    # --- predictions ----------------------------------------------------------------------
    def predict(self, flops: float) -> Prediction:
        """N, D, tokens per parameter and loss at ``flops``, with intervals from both fits.

        N and D come from the primary approach (see the module docstring), the loss from
        Approach 3's law evaluated at that (N, D). Warns past ~3 decades of extrapolation.
        """
        return self._predict(flops, warn=True)

    def _predict(self, flops: float, warn: bool) -> Prediction:
        c = float(flops)
        if not (math.isfinite(c) and c > 0):
            raise ValueError(f"flops must be a positive finite number, got {flops!r}")
        if self.primary is None:
            raise ValueError("no usable fit: " + "; ".join(self.notes or ["no runs"]))
        decades = math.log10(c / float(self.fit_data["budget"].max()))
        notes = []
        if decades > EXTRAPOLATION_WARN_DECADES:
            notes.append(f"C={c:.3g} is {decades:.1f} decades past the largest swept budget; "
                         "extrapolations this far are unreliable")
            if warn:
                warnings.warn(notes[-1], stacklevel=3)
        by = {}
        for name, fit in (("isoflop", self.isoflop), ("parametric", self.parametric)):
            if fit is None or not math.isfinite(fit.a):
                continue
            by[name] = {"n": float(fit.n_opt(c)), "d": float(fit.d_opt(c)),
                        "n_interval": fit.interval(lambda f: float(f.n_opt(c))),
                        "d_interval": fit.interval(lambda f: float(f.d_opt(c)))}
        if self.parametric is not None:
            by["parametric"]["loss"] = float(self.parametric.loss_opt(c))
        main = by[self.primary]
        n, d = main["n"], main["d"]
        loss = loss_iv = None
        if self.parametric is not None:  # loss of the fitted law at the primary (N, D)
            loss = float(self.parametric.loss(n, d))
            loss_iv = self.parametric.interval(lambda f: float(f.loss(n, d)))
        return Prediction(flops=c, n=n, d=d, tokens_per_param=d / n, loss=loss,
                          n_interval=main["n_interval"], d_interval=main["d_interval"],
                          loss_interval=loss_iv, primary=self.primary, primary_label=_LABELS[self.primary],
                          extrapolation_decades=decades, warnings=notes, **by)

    def table(self, budgets: Iterable[float] | None = None) -> pd.DataFrame:
        """The compute-optimal table: one row per budget (default: the swept budgets)."""
        if budgets is None:
            budgets = sorted(self.fit_data["budget"].unique())
        rows = []
        for c in budgets:
            p = self._predict(c, warn=False)
            ni, di, li = (p[k] or (math.nan, math.nan) for k in ("n_interval", "d_interval", "loss_interval"))
            rows.append({"budget": p.flops, "N_opt": p.n, "N_lo": ni[0], "N_hi": ni[1],
                         "D_opt": p.d, "D_lo": di[0], "D_hi": di[1], "tokens_per_param": p.tokens_per_param,
                         "loss": math.nan if p.loss is None else p.loss, "loss_lo": li[0], "loss_hi": li[1]})
        return pd.DataFrame(rows)

    # --- text, JSON, files ----------------------------------------------------------------
    def format_table(self, budgets: Iterable[float] | None = None) -> str:
        n_used, n_all = len(self.fit_data), len(self.results)
        boot = f"{self.level:.0%} bootstrap intervals ({self.n_boot} resamples)" if self.n_boot else "no intervals (n_boot=0)"
        lines = [f"flops_fit: {n_used} of {n_all} runs fitted, N = {self.param_count}; {boot}"]
        if self.primary is not None:
            lines.append(f"Compute-optimal allocation: N, D from {_LABELS[self.primary]}; loss from Approach 3")
            t = self.table(budgets)
            lines.append(f"{'budget':>10}  {'N_opt':>26}  {'D_opt':>26}  {'D/N':>7}  {'loss':>22}")
            for _, r in t.iterrows():
                lines.append(f"{r.budget:>10.3g}  {_iv(r.N_opt, r.N_lo, r.N_hi):>26}  "
                             f"{_iv(r.D_opt, r.D_lo, r.D_hi):>26}  {r.tokens_per_param:>7.1f}  "
                             f"{_iv(r.loss, r.loss_lo, r.loss_hi, '.4g'):>22}")
        if self.isoflop is not None and self.isoflop.usable:
            f, used = self.isoflop, sum(o.used for o in self.isoflop.optima)
            lines.append(f"Approach 2: N_opt ∝ C^{_iv(f.a, *_ivs(f, 'a'), '.3f')}, D_opt ∝ "
                         f"C^{_iv(f.b, *_ivs(f, 'b'), '.3f')} ({used} of {len(f.optima)} budgets used)")
        if self.parametric is not None:
            p = self.parametric
            lines.append(f"Approach 3: L = E + A/N^α + B/D^β with E={_iv(p.E, *_ivs(p, 'E'), '.3g')}, "
                         f"A={_iv(p.A, *_ivs(p, 'A'), '.3g')}, B={_iv(p.B, *_ivs(p, 'B'), '.3g')}, "
                         f"α={_iv(p.alpha, *_ivs(p, 'alpha'), '.3f')}, β={_iv(p.beta, *_ivs(p, 'beta'), '.3f')}; "
                         f"N_opt ∝ C^{_iv(p.a, *_ivs(p, 'a'), '.3f')}")
        if self.comparison is not None:
            lines.append(self.comparison.note)
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format_table()

    def __repr__(self) -> str:
        return f"Result({len(self.results)} runs, param_count={self.param_count!r}, primary={self.primary!r})"

    def to_dict(self) -> dict[str, Any]:
        out = {
            "param_count": self.param_count, "n_runs": len(self.results), "n_fitted": len(self.fit_data),
            "level": self.level, "n_boot": self.n_boot, "seed": self.seed, "primary": self.primary,
            "isoflop": None if self.isoflop is None else self.isoflop.to_dict(),
            "parametric": None if self.parametric is None else self.parametric.to_dict(),
            "comparison": None if self.comparison is None else vars(self.comparison),
            "table": self.table().to_dict(orient="records") if self.primary else [],
            "notes": list(self.notes),
        }
        return _jsonable(out)

    def plot(self, out_dir: str | Path) -> list[Path]:
        """Write isoflop.png, frontier.png and loss_frontier.png; return their paths."""
        from flops_fit.plots import plot_all  # matplotlib only when plotting

        if self.fit_data.empty:
            raise ValueError("nothing to plot: no usable runs")
        return plot_all(self, Path(out_dir))

    def save(self, out_dir: str | Path | None = None) -> list[Path]:
        """Write table.txt, table.csv, fits.json and the plots (default: beside the table)."""
        if out_dir is None:
            if self.path is None:
                raise ValueError("save() needs out_dir for a Result not read from a file")
            out_dir = self.path.parent
        out = Path(out_dir)
        written = [results_io.atomic_write_text(out / "table.txt", self.format_table() + "\n")]
        if self.primary is not None:
            written.append(results_io.atomic_write_text(out / "table.csv", self.table().to_csv(index=False)))
        written.append(results_io.atomic_write_text(out / "fits.json", json.dumps(self.to_dict(), indent=2) + "\n"))
        if not self.fit_data.empty:
            written += self.plot(out)
        return written


def _failed_note(name: str, boot: Any) -> str:
    return (f"{name}: {boot.n_failed} of {boot.n_boot} bootstrap refits failed; intervals use "
            f"the other {boot.n_boot - boot.n_failed}")


def _ivs(fit: Any, name: str) -> tuple[float, float]:
    iv = fit.interval(lambda f: getattr(f, name))
    return iv if iv is not None else (math.nan, math.nan)


def _iv(value: float, lo: float, hi: float, fmt: str = ".3g") -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    text = format(value, fmt)
    if math.isfinite(lo) and math.isfinite(hi):
        text += f" [{format(lo, fmt)}, {format(hi, fmt)}]"
    return text


def _jsonable(obj: Any) -> Any:
    """Plain JSON: numpy scalars to Python, tuples to lists, NaN/inf to null."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj
