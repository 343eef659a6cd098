"""Experiment trackers through Ray Tune's integrations, the real ones (the test extra installs
them, so CI runs these): MLflow with a local store, read back with mlflow.search_runs and
MlflowClient (runs, config params, final loss, every trial's training curve, the fits); W&B in
offline mode; TensorBoard's event files read back; a missing or unknown tracker refused in one line."""

from __future__ import annotations

import json
import re
import struct

import pytest
from test_find_optimal import VOCAB, TinyLM, counting_dataset, next_token_loss

from flops_fit.config import SweepConfig
from flops_fit.errors import PlanError

LAW = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28, "noise": 0.003}


def _cfg(tmp_path, name, **kw):
    """The simulated law on one budget: three trials in seconds, the trackers' own work dominates."""
    return SweepConfig.of(budgets=(1e18,), points_per_budget=3, span=12.0, vocab_size=32000, seq_len=1024,
                          simulate=LAW, storage_path=str(tmp_path), name=name, n_boot=0, **kw)


def _real_trials(tmp_path, name, tracker):
    """Three real trials of the tiny user model (one budget): curves to log, in seconds."""
    from flops_fit.api import find_optimal

    return find_optimal(
        TinyLM, "width", model_kwargs={"vocab": VOCAB}, dataset=counting_dataset(), loss_fn=next_token_loss,
        compute_budgets=(4e8,), points_per_budget=3, size_values=[4, 8, 16, 32, 64], storage_path=str(tmp_path),
        name=name, min_steps=8, max_batch_size=16, max_epochs=1000.0, log_every=2, n_boot=0, tracker=tracker,
        progress=False,
    )


def test_tensorboard_gets_every_trials_whole_curve_and_the_fits(ray_session, tmp_path):
    from tensorboardX.proto.event_pb2 import Event

    def scalars(directory):
        """(tag, step, value) of every scalar in the event files under ``directory`` (TFRecord
        framing: length, its crc, the Event proto, its crc)."""
        out = []
        for path in directory.rglob("events.out.tfevents.*"):
            data, at = path.read_bytes(), 0
            while at < len(data):
                (length,) = struct.unpack("<Q", data[at:at + 8])
                event = Event.FromString(data[at + 12:at + 12 + length])
                at += 12 + length + 4
                out += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
        return out

    result = _real_trials(tmp_path, "tb", "tensorboard")
    for row in result.results.to_dict(orient="records"):
        curve = json.loads(row["curve"])
        got = sorted((s, v) for tag, s, v in scalars(tmp_path / "tb" / row["trial_id"] / "curve")
                     if tag == "curve_train_loss")
        assert len(curve) > 1 and [s for s, _ in got] == [p["tokens"] for p in curve], row["trial_id"]
        assert [v for _, v in got] == pytest.approx([p["train_loss"] for p in curve], rel=1e-6)
    from flops_fit.ray.trackers import _fit_metrics

    fitted = {tag: v for tag, _, v in scalars(tmp_path / "tb" / "fits")}
    want = _fit_metrics(result.to_dict())
    assert want and fitted == pytest.approx(want, rel=1e-6)


def test_mlflow_gets_every_trials_run_config_curve_and_the_fits(ray_session, tmp_path):
    """Real trials (a tiny user model on counting data): each one's run holds its config, its
    final loss and its whole training curve, one point per logged step."""
    mlflow = pytest.importorskip("mlflow", reason="mlflow not installed (pip install 'flops-fit[mlflow]')")
    from mlflow.tracking import MlflowClient

    from flops_fit.api import find_optimal

    result = find_optimal(
        TinyLM, "width", model_kwargs={"vocab": VOCAB}, dataset=counting_dataset(), loss_fn=next_token_loss,
        compute_budgets=(2e8, 4e8, 8e8), points_per_budget=3, size_values=[4, 6, 8, 12, 16, 24, 32, 48, 64],
        storage_path=str(tmp_path), name="tracked", min_steps=8, max_batch_size=16, max_epochs=1000.0,
        log_every=2, n_boot=0, tracker="mlflow", progress=False,
    )
    uri = f"sqlite:///{tmp_path / 'tracked' / 'mlflow.db'}"  # the default store: in the sweep directory
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["tracked"])
    trials = runs[runs["tags.flops_fit.kind"].isna()] if "tags.flops_fit.kind" in runs else runs
    table = result.results.set_index("trial_id")
    assert (table["status"] == "ok").all(), table[["status", "error"]]
    assert sorted(trials["tags.trial_name"]) == sorted(table.index)  # one run per trial, named by its id
    client = MlflowClient(uri)
    for _, run in trials.iterrows():
        row = table.loc[run["tags.trial_name"]]
        assert run["metrics.loss"] == pytest.approx(row["loss"])  # the run's final loss is the table's
        # the trial's config: the planned spec, as Tune's callback flattens it
        assert (run["params.spec/n"], run["params.spec/steps"], run["params.spec/batch_size"]) == (
            str(int(row["n"])), str(int(row["steps"])), str(int(row["batch_size"])))
        history = client.get_metric_history(run["run_id"], "curve_train_loss")
        curve = json.loads(row["curve"])
        assert len(history) > 1 and len(history) == len(curve)  # the whole curve, not its last point
        history = sorted(history, key=lambda m: m.step)  # step = tokens trained so far
        assert [m.step for m in history] == [p["tokens"] for p in curve]
        assert [m.value for m in history] == pytest.approx([p["train_loss"] for p in curve])
    fits = runs[runs["tags.flops_fit.kind"] == "fits"]
    assert len(fits) == 1 and fits["metrics.parametric.alpha"].iloc[0] == pytest.approx(result.parametric.alpha)
    artifacts = {p.name for p in (tmp_path / "tracked" / "mlartifacts").rglob("*") if p.is_file()}
    assert {"fits.json", "report.html"} <= artifacts


def test_unknown_or_missing_tracker_fails_in_one_line(tmp_path, monkeypatch):
    with pytest.raises(PlanError, match="tracker 'neptune'"):
        _cfg(tmp_path, "x", tracker="neptune")
    import builtins

    from flops_fit.ray.trackers import require_tracker

    real = builtins.__import__
    monkeypatch.setattr(builtins, "__import__",
                        lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name)) if name == "wandb" else real(name, *a, **k))
    with pytest.raises(PlanError, match=r'pip install "flops-fit\[wandb\]"'):
        require_tracker("wandb")


def test_mlflow_skinny_without_the_sqlite_store_fails_in_one_line(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="mlflow not installed (pip install 'flops-fit[mlflow]')")
    import builtins

    from flops_fit.ray.trackers import tracker_callbacks

    real = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name == "sqlalchemy" else real(name, *a, **k))
    with pytest.raises(PlanError, match=r"needs sqlalchemy .*flops-fit\[mlflow\]"):
        tracker_callbacks(_cfg(tmp_path, "skinny", tracker="mlflow"), tmp_path / "skinny")
    assert not (tmp_path / "skinny").exists()  # refused before any store was made


def test_trackers_are_optional_by_default_and_in_the_test_extra():
    """`pip install flops-fit` pulls no tracker; the test extra (CI's install) pulls them all,
    so the tests above run in CI instead of skipping."""
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    names = {"mlflow", "mlflow-skinny", "wandb", "tensorboardx", "sqlalchemy", "alembic"}

    def named(reqs):
        return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in reqs}

    assert not named(project["dependencies"]) & names
    assert {"mlflow-skinny", "sqlalchemy", "alembic", "wandb"} <= named(project["optional-dependencies"]["test"])


def test_wandb_offline_logs_every_trial(ray_session, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb not installed (pip install 'flops-fit[wandb]')")

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    result = _real_trials(tmp_path, "wb", "wandb")
    # One offline W&B run per trial and one for the fits, under the sweep directory (no account,
    # no network). The fits run holds every trial's whole curve as one table.
    offline = sorted((tmp_path / "wb").rglob("offline-run-*/run-*.wandb"))
    (table_file,) = (tmp_path / "wb").rglob("offline-run-*/files/media/table/curves_*.table.json")
    curves = json.loads(table_file.read_text())
    assert curves["columns"] == ["trial_id", "tokens", "train_loss"]
    for row in result.results.to_dict(orient="records"):
        want = [[row["trial_id"], p["tokens"], p["train_loss"]] for p in json.loads(row["curve"])]
        got = [r for r in curves["data"] if r[0] == row["trial_id"]]
        assert len(want) > 1 and [r[:2] for r in got] == [w[:2] for w in want], row["trial_id"]
        assert [r[2] for r in got] == pytest.approx([w[2] for w in want])
    fits_dir = table_file.parents[2]
    assert {"fits.json", "report.html"} <= {p.name for p in fits_dir.iterdir()}
    assert len(offline) == len(result.results) + 1, offline
    offline = [p for p in offline if p.parent != fits_dir.parent]
    # Each run's record stream (protobuf: keys and JSON values as plain bytes, what `wandb sync`
    # uploads) names one trial and holds that trial's final loss.
    losses = result.results.set_index("trial_id")["loss"]
    named = []
    for path in offline:
        data = path.read_bytes()
        (trial,) = [t for t in losses.index if t.encode() in data]
        assert b"\x12\x04loss" in data and json.dumps(float(losses[trial])).encode() in data, (trial, path)
        named.append(trial)
    assert sorted(named) == sorted(losses.index)
