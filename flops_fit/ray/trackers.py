"""Experiment trackers through Ray Tune's own integrations: ``--tracker mlflow|wandb|tensorboard``.

During the sweep, Tune's logger callback gets every trial's config and every result it
reports (progress, then the final metrics) live. Afterwards, ``log_sweep`` adds what only the
finished table has: each trial's training curve (train loss against tokens, one point per
logged step) and the sweep's fits as one more run. Trackers are optional extras
(``pip install "flops-fit[mlflow]"``); asking for a missing one fails in one line before
any trial starts.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flops_fit.config import SweepConfig
from flops_fit.errors import PlanError

if TYPE_CHECKING:
    from flops_fit.results.result import Result

_EXTRA = {"mlflow": ("mlflow", "mlflow"), "wandb": ("wandb", "wandb"), "tensorboard": ("tensorboardX", "tensorboard")}


def require_tracker(tracker: str) -> None:
    module, extra = _EXTRA[tracker]
    try:
        __import__(module)
    except ImportError:
        raise PlanError(f"--tracker {tracker} needs {module}: pip install \"flops-fit[{extra}]\"") from None


def _require_sqlite_store(uri: str) -> None:
    """MLflow's SQLite store needs sqlalchemy and alembic, which mlflow-skinny leaves out:
    say so in one line rather than with an ImportError from inside MLflow."""
    if not uri.startswith("sqlite:"):
        return
    for module in ("sqlalchemy", "alembic"):
        try:
            __import__(module)
        except ImportError:
            raise PlanError(f"--tracker mlflow's store {uri} needs {module} (mlflow-skinny lacks it): "
                            "pip install \"flops-fit[mlflow]\", or pass --tracking-uri to a server") from None


def mlflow_uri(cfg: SweepConfig, run_dir: Path) -> str:
    """The MLflow store: --tracking-uri, else a local SQLite file inside the sweep directory
    (MLflow 3 refuses its old ./mlruns file store unless MLFLOW_ALLOW_FILE_STORE is set)."""
    return cfg.tracking_uri or f"sqlite:///{run_dir / 'mlflow.db'}"


def _mlflow_experiment(cfg: SweepConfig, run_dir: Path) -> str:
    """The sweep's experiment, created with its artifacts inside the sweep directory (MLflow's
    default would be ./mlruns under whatever directory the driver started in)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_uri(cfg, run_dir))
    experiment = client.get_experiment_by_name(cfg.name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(cfg.name, artifact_location=(run_dir / "mlartifacts").as_uri())


def tracker_callbacks(cfg: SweepConfig, run_dir: Path) -> list[Any]:
    """Tune callbacks for ``cfg.tracker`` (none without one)."""
    if cfg.tracker is None:
        return []
    require_tracker(cfg.tracker)
    if cfg.tracker == "mlflow":
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        _require_sqlite_store(mlflow_uri(cfg, run_dir))
        _mlflow_experiment(cfg, run_dir)
        return [MLflowLoggerCallback(tracking_uri=mlflow_uri(cfg, run_dir), experiment_name=cfg.name,
                                     tags={"flops_fit.sweep": str(run_dir)})]
    if cfg.tracker == "wandb":
        from ray.air.integrations.wandb import WandbLoggerCallback

        # Tune's W&B logging actors get only WANDB_API_KEY from the driver's environment, not
        # WANDB_MODE (their workers were started with the runtime): pass the mode through
        # wandb.init's own argument, so WANDB_MODE=offline is honoured.
        mode = {"mode": os.environ["WANDB_MODE"]} if os.environ.get("WANDB_MODE") else {}
        return [WandbLoggerCallback(project=cfg.name, dir=str(run_dir), **mode)]
    # Tune's default loggers already write TensorBoard event files into each trial's directory
    # under the sweep directory (tensorboard --logdir <sweep dir>); adding TBXLoggerCallback
    # again would write every event twice.
    return []


def _curve(row: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        return [p for p in json.loads(row.get("curve") or "[]") if math.isfinite(float(p["train_loss"]))]
    except (TypeError, ValueError, KeyError):
        return []


def _fit_metrics(fits: dict[str, Any]) -> dict[str, float]:
    out = {}
    for approach in ("isoflop", "parametric"):
        for key, value in (fits.get(approach) or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                out[f"{approach}.{key}"] = float(value)
    return out


def log_sweep(cfg: SweepConfig, run_dir: Path, result: Result) -> None:
    """After the fits: each trial's curve, and the fits (with report.html and fits.json) as a run."""
    if cfg.tracker == "mlflow":
        _log_mlflow(cfg, run_dir, result)
    elif cfg.tracker == "wandb":
        _log_wandb(cfg, run_dir, result)
    elif cfg.tracker == "tensorboard":
        _log_tensorboard(run_dir, result)


def _log_wandb(cfg: SweepConfig, run_dir: Path, result: Result) -> None:
    """One more run, ``fits``: every trial's curve as one table (trial, tokens, train loss:
    W&B plots it grouped by trial), the fits as its summary, fits.json and report.html saved.
    The trials' own runs (Tune's callback) finished with the sweep and cannot be appended to."""
    import wandb

    mode = {"mode": os.environ["WANDB_MODE"]} if os.environ.get("WANDB_MODE") else {}
    run = wandb.init(project=cfg.name, dir=str(run_dir), name="fits", job_type="fits", **mode)
    try:
        rows = [[row["trial_id"], int(p["tokens"]), float(p["train_loss"])]
                for row in result.results.to_dict(orient="records") for p in _curve(row)]
        run.log({"curves": wandb.Table(columns=["trial_id", "tokens", "train_loss"], data=rows)})
        fits = result.to_dict()
        run.summary.update({**_fit_metrics(fits), "primary": str(fits.get("primary"))})
        for name in ("fits.json", "report.html", "table.txt"):
            if (run_dir / name).is_file():
                run.save(str(run_dir / name), base_path=str(run_dir), policy="now")
    finally:
        run.finish()


def _log_tensorboard(run_dir: Path, result: Result) -> None:
    """Each trial's curve as ``curve_train_loss`` against tokens in ``<trial dir>/curve`` (beside
    Tune's own events, which hold only what the trial reported live), the fits in ``fits/``."""
    from tensorboardX import SummaryWriter

    for row in result.results.to_dict(orient="records"):
        trial_dir = run_dir / str(row["trial_id"])
        if trial_dir.is_dir():
            with SummaryWriter(str(trial_dir / "curve")) as writer:
                for p in _curve(row):
                    writer.add_scalar("curve_train_loss", float(p["train_loss"]), int(p["tokens"]))
    with SummaryWriter(str(run_dir / "fits")) as writer:
        for key, value in _fit_metrics(result.to_dict()).items():
            writer.add_scalar(key, value, 0)


def _log_mlflow(cfg: SweepConfig, run_dir: Path, result: Result) -> None:
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_uri(cfg, run_dir))
    experiment_id = _mlflow_experiment(cfg, run_dir)
    runs = {r.data.tags.get("trial_name"): r.info.run_id for r in client.search_runs([experiment_id], max_results=10000)}
    now = int(time.time() * 1000)
    # One log_batch per run (MLflow splits it at its 1,000-entity limit): a log_metric per
    # curve point is one store transaction each, ~0.2 s on SQLite, minutes for a real sweep.
    for row in result.results.to_dict(orient="records"):
        run_id = runs.get(row["trial_id"])
        if run_id is None:
            continue
        # step = tokens trained so far: curves of different sizes line up
        curve = [Metric("curve_train_loss", float(p["train_loss"]), now, int(p["tokens"])) for p in _curve(row)]
        client.log_batch(run_id, metrics=curve, tags=[RunTag("flops_fit.status", str(row["status"]))])
    fits = result.to_dict()
    run = client.create_run(experiment_id, run_name="fits", tags={"flops_fit.kind": "fits"})
    client.log_batch(run.info.run_id, metrics=[Metric(k, v, now, 0) for k, v in _fit_metrics(fits).items()],
                     params=[Param("primary", str(fits.get("primary")))])
    for name in ("fits.json", "report.html", "table.txt"):
        if (run_dir / name).is_file():
            client.log_artifact(run.info.run_id, str(run_dir / name))
    client.set_terminated(run.info.run_id)
