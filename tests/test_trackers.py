"""Experiment trackers through Ray Tune's integrations, the real ones: MLflow with a local
store read back with mlflow.search_runs; a missing or unknown tracker refused in one line.
(W&B offline mode is not covered yet: see the README.)"""

from __future__ import annotations

import pytest

from flops_fit.config import SweepConfig
from flops_fit.errors import PlanError

LAW = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28, "noise": 0.003}


def _cfg(tmp_path, name, **kw):
    return SweepConfig.of(budgets=(1e18, 1e19, 1e20), points_per_budget=5, span=12.0, vocab_size=32000,
                          seq_len=1024, simulate=LAW, storage_path=str(tmp_path), name=name, n_boot=0, **kw)


def test_mlflow_gets_one_run_per_trial_and_the_fits(ray_session, tmp_path):
    mlflow = pytest.importorskip("mlflow", reason="mlflow not installed (pip install 'flops-fit[mlflow]')")
    from flops_fit.ray import sweep

    result = sweep(_cfg(tmp_path, "tracked", tracker="mlflow"), progress=False)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'tracked' / 'mlflow.db'}")  # the default store: in the sweep
    runs = mlflow.search_runs(experiment_names=["tracked"])
    trials = runs[runs["tags.flops_fit.kind"].isna()] if "tags.flops_fit.kind" in runs else runs
    table = result.results.set_index("trial_id")
    assert sorted(trials["tags.trial_name"]) == sorted(table.index)  # one run per trial, named by its id
    for _, run in trials.iterrows():  # the run's final loss is the table's
        assert run["metrics.loss"] == pytest.approx(table.loc[run["tags.trial_name"], "loss"])
    assert "params.spec/budget" in runs  # the trial's config
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



def test_wandb_offline_logs_every_trial(ray_session, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb not installed (pip install 'flops-fit[wandb]')")
    from flops_fit.ray import sweep

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = SweepConfig.of(budgets=(1e18, 1e19), points_per_budget=3, span=12.0, vocab_size=32000, seq_len=1024,
                         simulate=LAW, storage_path=str(tmp_path), name="wb", n_boot=0, tracker="wandb")
    result = sweep(cfg, progress=False)
    # One offline W&B run per trial, written under the sweep directory (no account, no network).
    offline = list((tmp_path / "wb").rglob("offline-run-*"))
    assert len(offline) == len(result.results), offline
