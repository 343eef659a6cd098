"""``Result``: a sweep's results table, both scaling-law fits (``flops_fit.results.fits``:
which runs feed them and which approach is primary), and what they predict. Its text is
``results.text``, its plots ``results.plots``, its files ``results.files``."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
import pandas as pd

from flops_fit.fitting.checks import backtest, exponents_by_count
from flops_fit.fitting.frontier import frontier_label, frontier_loss, frontier_noise
from flops_fit.models.gpt_spec import PARAM_COUNTS
from flops_fit.results import table as results_io
from flops_fit.results.fits import fit_table, quietly
from flops_fit.results.text import PRIMARY_LABELS, format_summary

if TYPE_CHECKING:
    from flops_fit.fitting.compare import Comparison
    from flops_fit.fitting.envelope import EnvelopeFit
    from flops_fit.fitting.isoflop import IsoFLOPFit
    from flops_fit.fitting.noise import SeedNoise
    from flops_fit.fitting.parametric import ParametricFit

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
        fits = fit_table(results, param_count, n_boot, seed, level)
        self.results: pd.DataFrame = fits.results
        self.notes: list[str] = fits.notes
        self.fit_data: pd.DataFrame = fits.fit_data
        self.noise: SeedNoise = fits.noise
        self.isoflop: IsoFLOPFit | None = fits.isoflop
        self.parametric: ParametricFit | None = fits.parametric
        self.comparison: Comparison | None = fits.comparison
        self.law_known: bool = fits.law_known
        self.primary: str | None = fits.primary
        self.envelope: EnvelopeFit | None = fits.envelope
        self.envelope_agreement: dict[str, Any] | None = fits.envelope_agreement
        self.param_count, self.n_boot, self.seed, self.level = param_count, n_boot, seed, level
        self.path = None if path is None else Path(path)
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

    def compute(self) -> dict[str, Any]:
        """What the sweep trained (``flops_spent``: whole cosine runs, WSD stems plus cooldowns)
        beside what its points cost as separate cosine runs (``flops_as_cosine_runs``), both in
        the budgets' FLOPs convention."""
        df = self.results
        points = df["flops"].fillna(0.0)
        trained = df["flops_trained"].fillna(points) if "flops_trained" in df else points  # older tables
        wsd = int((df["schedule"] == "wsd").sum()) if "schedule" in df else 0
        spent, grid = float(trained.sum()), float(points.sum())
        return {"flops_spent": spent, "flops_as_cosine_runs": grid, "ratio": spent / grid if grid else None,
                "wsd_branches": wsd, "stems": int(df.loc[df["schedule"] == "wsd", "stem"].nunique()) if wsd else 0}

    # --- text, JSON, files ----------------------------------------------------------------
    def format_table(self, budgets: Iterable[float] | None = None) -> str:
        """The compute-optimal table and every fit's summary line and note, as the sweep prints them."""
        return format_summary(self, budgets)

    # --- checks ---------------------------------------------------------------------------
    def backtest(self) -> dict[str, Any] | None:
        """Refit without the largest budget and set its prediction there beside the measurement."""
        if not hasattr(self, "_backtest"):
            self._backtest = quietly(self.notes, "backtest", lambda: backtest(self))
        return self._backtest

    def exponents_by_count(self) -> dict[str, float]:
        """Approach 2's a under each recorded parameter count (n, n_non_embedding, n_matmul)."""
        if not hasattr(self, "_by_count"):
            names = self.fit_data["trial_id"].astype(str).tolist() if "trial_id" in self.fit_data else None
            sigma = self.noise.sigma if self.noise.measured else None  # the main fit's outliers, left out here too
            self._by_count = ((quietly(self.notes, "exponents by count",
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
            "envelope": None if self.envelope is None else {**self.envelope.to_dict(),
                                                            "agreement": self.envelope_agreement},
            "table": self.table().to_dict(orient="records") if self.primary else [],
            "seed_noise": self.noise.to_dict(),
            "compute": self.compute(),
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
        from flops_fit.results.files import save_result

        return save_result(self, self._out_dir(out_dir))


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
