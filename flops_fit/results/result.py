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
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
import pandas as pd

from flops_fit.fitting.budget import RESIDUAL_NOTE_SIGMAS
from flops_fit.fitting.checks import backtest, exponents_by_count, parametric_a_in_budget_units
from flops_fit.fitting.compare import Comparison, compare
from flops_fit.fitting.frontier import frontier_label, frontier_loss, frontier_noise
from flops_fit.fitting.isoflop import IsoFLOPFit, fit_isoflop
from flops_fit.fitting.noise import SeedNoise, seed_noise
from flops_fit.fitting.parametric import ParametricFit, fit_parametric
from flops_fit.models.gpt_spec import PARAM_COUNTS
from flops_fit.results import table as results_io
from flops_fit.results.check import check_table
from flops_fit.results.text import PRIMARY_LABELS, format_summary

if TYPE_CHECKING:
    from flops_fit.fitting.bootstrap import Bootstrap

#: Past this many decades beyond the largest swept budget, predict() warns.
EXTRAPOLATION_WARN_DECADES = 3.0


class Prediction(dict):
    """What ``Result.predict`` returns: a dict (JSON-able) whose keys are also attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Result:
    """Fits a results table (see ``flops_fit.results.table.SCHEMA``) both ways, with intervals.

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
        self.noise: SeedNoise = seed_noise(d, param_count)
        sigma = self.noise.sigma if self.noise.measured else None
        self.isoflop: IsoFLOPFit | None = None
        self.parametric: ParametricFit | None = None
        if len(d):
            names = d["trial_id"].astype(str).tolist() if "trial_id" in d else None
            self.isoflop = _quietly(self.notes, "Approach 2", lambda: fit_isoflop(
                d["budget"], d[param_count], d["loss"], tokens=d["tokens"], n_boot=n_boot, level=level,
                seed=seed, sigma=sigma, names=names))
            if self.isoflop is not None:
                self._note_isoflop()
        if len(d) >= 5:
            self.parametric = _quietly(self.notes, "Approach 3", lambda: fit_parametric(
                d[param_count], d["tokens"], d["loss"], n_boot=n_boot, level=level, seed=seed))
            if self.parametric is not None:
                self._note_parametric()
        elif fittable:
            self.notes.append(f"Approach 3 not fitted: {len(d)} usable runs (needs at least 5)")
        self.comparison: Comparison | None = None
        if self.isoflop is not None and self.parametric is not None:
            in_units = parametric_a_in_budget_units(d, param_count)
            conventions = sorted(set(d.get("flops_convention", pd.Series(["6n"])).dropna()))
            units = "C = 6ND" if in_units is None else f"C under {'/'.join(conventions)}, N = {param_count}"
            self.comparison = compare(self.isoflop, self.parametric, in_units, units)
        self.law_known = (self.parametric is not None and self.parametric.converged
                          and self.parametric.determined is not False)
        self.primary = ("isoflop" if self.isoflop is not None and self.isoflop.usable else
                        "parametric" if self.law_known else None)
        #: The ``--verify`` run's record (flops_fit.engine.verify), kept in the sweep directory.
        self.verification: dict[str, Any] | None = None
        if self.path is not None:
            from flops_fit.results.verification import load_record

            self.verification = load_record(self.path.parent)

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
        if (status == "undertrained").any():
            self.notes.append("undertrained: a run whose validation loss ended above the plateau level (halfway "
                              "from the text's unigram to its bigram cross-entropy) never left the initial loss "
                              "plateau; its loss measures its step count, not its size, so it is not fitted")
        if bad.any():
            ids = r["trial_id"].astype(str) if "trial_id" in r else r.index.astype(str)
            listed = [f"{i} ({why})" for i, why in zip(ids[bad], reasons[bad])]
            more = f", and {len(listed) - 10} more" if len(listed) > 10 else ""
            self.notes.append(f"excluded {int(bad.sum())} of {len(r)} runs from the fits: "
                              + ", ".join(listed[:10]) + more)
        return r[~bad].reset_index(drop=True)

    def _note_isoflop(self) -> None:
        fit = self.isoflop
        sigma = self.noise.sigma if self.noise.measured else fit.sigma
        for o in fit.optima:
            if not o.used:
                self.notes.append(f"Approach 2: budget {o.budget:.3g} left out of the exponent fit ({o.flag})")
            if o.excluded:
                self.notes.append(f"Approach 2: budget {o.budget:.3g} fitted without " + ", ".join(o.excluded))
            if o.note:
                self.notes.append(f"Approach 2: budget {o.budget:.3g}: {o.note}")
            if o.used and math.isfinite(sigma) and sigma > 0 and o.max_residual > RESIDUAL_NOTE_SIGMAS * sigma:
                self.notes.append(f"Approach 2: budget {o.budget:.3g}'s parabola misses a run by "
                                  f"{o.max_residual / sigma:.1f}σ (σ = {sigma:.3g} in ln L, {fit.sigma_source})")
        iv = fit.interval(lambda f: f.a)
        if fit.usable and iv is not None and math.isfinite(fit.a_interp) and not iv[0] <= fit.a_interp <= iv[1]:
            self.notes.append(f"Approach 2: the shape-agnostic Akima cross-check gives a = {fit.a_interp:.3f}, outside "
                              f"the parabolas' interval [{iv[0]:.3f}, {iv[1]:.3f}]: the curves' shape matters here")
        if not fit.usable:
            self.notes.append("Approach 2 unusable: fewer than 2 budgets with a located minimum")
        elif fit.bootstrap is not None and fit.bootstrap.n_failed:
            self.notes.append(_failed_note("Approach 2", fit.bootstrap))
        elif self.n_boot and fit.bootstrap is None:
            self.notes.append("Approach 2: no intervals (too few runs beyond three per budget to measure the noise)")

    def _note_parametric(self) -> None:
        fit = self.parametric
        if not fit.converged:  # its numbers are where L-BFGS stopped, not an optimum: none is printed
            self.notes.append("Approach 3: L-BFGS converged from none of its starts; no law, frontier or "
                              "irreducible loss from these runs")
            return
        if fit.bootstrap is not None and fit.bootstrap.n_failed:
            self.notes.append(_failed_note("Approach 3", fit.bootstrap))
        missing = fit.undetermined()
        if missing:
            known = ("its law and frontier are not reported as known (E is: the loss frontier stands on it)"
                     if "E" not in missing else "its law, frontier and irreducible loss are not reported as known")
            by_reason: dict[str, list[str]] = {}  # one reason, said once for the parameters it covers
            for name, why in missing.items():
                by_reason.setdefault(why, []).append(name)
            self.notes.append("Approach 3: the data do not determine " + "; ".join(
                f"{', '.join(names)} ({why})" for why, names in by_reason.items()) + "; " + known)

    # --- predictions ----------------------------------------------------------------------
    def predict(self, flops: float) -> Prediction:
        """N, D, tokens per parameter and loss at ``flops``, with intervals from both fits.

        N and D come from the primary approach (see the module docstring), the loss from
        Approach 3's law evaluated at that (N, D) when the law is determined; when it is not,
        the loss is a swept budget's own IsoFLOP minimum and None elsewhere (an undetermined
        law predicts no loss: ``loss_frontier(flops)`` extrapolates the minima instead, with
        its interval, as ``--verify`` does). Warns past ~3 decades of extrapolation.
        """
        p = self._predict(flops, warn=True)
        # flops-fit v1.0's names for the same numbers, so its scripts read them unchanged
        p.update(target_compute=p.flops, optimal_params=p.n, optimal_tokens=p.d, expected_loss=p.loss)
        return p

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
        if self.law_known and "parametric" in by:  # an undetermined law's loss is no number (docs/fitting.md)
            by["parametric"]["loss"] = float(self.parametric.loss_opt(c))
        main = by[self.primary]
        n, d = main["n"], main["d"]
        loss = loss_iv = None
        if self.law_known:  # loss of the fitted law at the primary (N, D)
            loss = float(self.parametric.loss(n, d))
            loss_iv = self.parametric.interval(lambda f: float(f.loss(n, d)))
        elif self.isoflop is not None:  # an undetermined law predicts nothing: a swept budget's own minimum
            loss = next((o.loss_opt for o in self.isoflop.optima if o.used and o.budget == c), None)
        return Prediction(flops=c, n=n, d=d, tokens_per_param=d / n, loss=loss,
                          n_interval=main["n_interval"], d_interval=main["d_interval"],
                          loss_interval=loss_iv, primary=self.primary, primary_label=PRIMARY_LABELS[self.primary],
                          extrapolation_decades=decades, warnings=notes, **by)

    def loss_frontier(self, flops: float | np.ndarray) -> tuple[Any, list[Any] | None, str] | None:
        """Approach 2's loss frontier at ``flops`` (a float, or an array for a curve), above
        Approach 3's E when the data determine it (``flops_fit.fitting.frontier.frontier_loss``):
        (loss, interval or None, what it stands on), or None with fewer than two usable budgets'
        minima. What ``--verify``, the backtest and loss_frontier.png predict with when the law
        is undetermined."""
        floor = self._floor()
        front = frontier_loss(self.isoflop, flops, self.level, self.noise, floor)
        return None if front is None else (*front, frontier_label(floor))

    def frontier_noise(self, flops: float) -> float | None:
        """How far one run at ``flops`` may miss ``loss_frontier`` by seed noise alone (a
        fraction of the loss, one standard deviation; ``flops_fit.fitting.frontier.frontier_noise``)."""
        return frontier_noise(self.isoflop, flops, self.noise, self._floor())

    def _floor(self) -> tuple[float, float, float] | None:
        return self.parametric.floor() if self.parametric is not None else None

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
        """The compute-optimal table and every fit's summary line and note, as the sweep prints them."""
        return format_summary(self, budgets)

    # --- checks ---------------------------------------------------------------------------
    def backtest(self) -> dict[str, Any] | None:
        """Refit without the largest budget and set its prediction there beside the measurement."""
        if not hasattr(self, "_backtest"):
            self._backtest = _quietly(self.notes, "backtest", lambda: backtest(self))
        return self._backtest

    def exponents_by_count(self) -> dict[str, float]:
        """Approach 2's a under each recorded parameter count (n, n_non_embedding, n_matmul)."""
        if not hasattr(self, "_by_count"):
            names = self.fit_data["trial_id"].astype(str).tolist() if "trial_id" in self.fit_data else None
            sigma = self.noise.sigma if self.noise.measured else None  # the main fit's outliers, left out here too
            self._by_count = ((_quietly(self.notes, "exponents by count",
                                        lambda: exponents_by_count(self.fit_data, names, sigma)) or {})
                              if len(self.fit_data) else {})
        return self._by_count

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
            "seed_noise": self.noise.to_dict(),
            "exponents_by_count": self.exponents_by_count(),
            "backtest": self.backtest(),
            "verification": self.verification,
            "notes": list(self.notes),
        }
        return _jsonable(out)

    def chinchilla_table(self, budgets: Iterable[float] | None = None) -> str:
        """The compute-optimal table as markdown (flops-fit v1.0's name), for a README or PR."""
        rows = ["| Compute Budget | Optimal N | Optimal D | D/N Ratio | Predicted Loss |", "|---:|---:|---:|---:|---:|"]
        if self.primary is None:  # nothing determined: the table says so instead of raising
            return "\n".join(rows + ["| undetermined | - | - | - | - |", "",
                                      "No compute-optimal allocation is determined by these runs:"]
                              + [f"- {n}" for n in self.notes])
        for _, r in self.table(budgets).iterrows():
            loss = "n/a" if math.isnan(r.loss) else f"{r.loss:.4f}"
            rows.append(f"| {r.budget:.3g} | {r.N_opt:.3g} | {r.D_opt:.3g} | {r.tokens_per_param:.1f} | {loss} |")
        return "\n".join(rows)

    def plot(self, out_dir: str | Path | None = None, show: bool = False) -> list[Path]:
        """Write isoflop.png, frontier.png and loss_frontier.png (default: beside the results
        table, the sweep's own directory); return their paths. ``show`` also opens them."""
        from flops_fit.results.plots import plot_all  # matplotlib only when plotting

        if self.fit_data.empty:
            raise ValueError("nothing to plot: no usable runs")
        paths = plot_all(self, self._out_dir(out_dir))
        if show:
            import matplotlib.pyplot as plt

            for p in paths:
                plt.figure()
                plt.imshow(plt.imread(p))
                plt.axis("off")
            plt.show()
        return paths

    def _out_dir(self, out_dir: str | Path | None) -> Path:
        if out_dir is not None:
            return Path(out_dir)
        if self.path is None:
            raise ValueError("pass out_dir: this Result was not read from a sweep directory")
        return self.path.parent

    def save(self, out_dir: str | Path | None = None) -> list[Path]:
        """Write table.txt, table.csv, fits.json, the plots and report.html (default: beside the table)."""
        out = self._out_dir(out_dir)
        written = [results_io.atomic_write_text(out / "table.txt", self.format_table() + "\n")]
        if self.primary is not None:
            written.append(results_io.atomic_write_text(out / "table.csv", self.table().to_csv(index=False)))
        written.append(results_io.atomic_write_text(out / "fits.json", json.dumps(self.to_dict(), indent=2) + "\n"))
        if not self.fit_data.empty:
            written += self.plot(out)
        from flops_fit.results.html import write_html

        written.append(write_html(self, out, written))
        return written


def _quietly(notes: list[str], name: str, fit: Any) -> Any:
    """Run one fit; a numerical failure on a valid table becomes a note, never a traceback
    that would throw away a finished sweep's table and plots."""
    try:
        with np.errstate(all="ignore"):
            return fit()
    except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
        notes.append(f"{name} failed on this table ({type(exc).__name__}: {exc}); it is left out")
        return None


def _failed_note(name: str, boot: Bootstrap) -> str:
    return (f"{name}: {boot.n_failed} of {boot.n_boot} bootstrap refits failed; intervals use "
            f"the other {boot.n_boot - boot.n_failed}")


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
