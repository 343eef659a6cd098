"""The Ray sweep end to end: real Ray, real training of tiny GPTs on the offline sample."""

from __future__ import annotations

import dataclasses
import math

import pytest

from flops_fit.config import preset
from flops_fit.errors import PlanError
from flops_fit.planning.grid import plan
from flops_fit.results.table import TRAINED_STATUSES, read_results


@pytest.fixture(scope="module")
def smoke_sweep(ray_session, tmp_path_factory):
    """One real smoke sweep (9 trials), one of which is made to diverge at step 5."""
    from drills import DivergeAt

    from flops_fit.ray import sweep

    storage = tmp_path_factory.mktemp("runs")
    cache = tmp_path_factory.mktemp("cache")
    cfg = preset("smoke").replace(storage_path=str(storage), cache_dir=str(cache), name="smoke")
    diverging = plan(cfg.plan)[4].trial_id
    cfg = cfg.replace(step_hooks=(DivergeAt(diverging, 5),))
    result = sweep(cfg)
    return cfg, result, diverging


def test_every_planned_trial_lands_in_the_results_table(smoke_sweep):
    cfg, result, diverging = smoke_sweep
    table = read_results(f"{cfg.storage_path}/{cfg.name}")
    specs = plan(dataclasses.replace(cfg.plan, vocab_size=int(table["vocab_size"].iloc[0])))
    assert sorted(table["trial_id"]) == sorted(s.trial_id for s in specs)
    ok = table[table["status"].isin(TRAINED_STATUSES)]  # undertrained: trained, left out of the fits
    assert len(ok) == len(specs) - 1
    assert all(math.isfinite(v) and 0 < v < 10 for v in ok["loss"])
    # every trial trained for exactly its planned tokens
    planned = {s.trial_id: s.tokens for s in specs}
    assert all(ok["tokens"] == ok["trial_id"].map(planned))
    assert all(ok["node_id"].str.len() > 0) and all(ok["tokens_per_s"] > 0)
    assert result.results is not None and len(result.results) == len(specs)


def test_a_diverged_trial_is_recorded_not_retried(smoke_sweep):
    cfg, _, diverging = smoke_sweep
    table = read_results(f"{cfg.storage_path}/{cfg.name}").set_index("trial_id")
    assert table.loc[diverging, "status"] == "diverged"
    assert math.isnan(table.loc[diverging, "loss"]) or table.loc[diverging, "loss"] is None
    assert "non-finite" in table.loc[diverging, "error"]


def test_n_is_the_models_own_count(smoke_sweep):
    from flops_fit.models.gpt import create_model_for_scaling

    cfg, _, _ = smoke_sweep
    table = read_results(f"{cfg.storage_path}/{cfg.name}")
    row = table[table["status"].isin(TRAINED_STATUSES)].iloc[0]
    specs = {s.trial_id: s for s in plan(dataclasses.replace(cfg.plan, vocab_size=int(row["vocab_size"])))}
    m = specs[row["trial_id"]].model
    model = create_model_for_scaling(m["target_params"], vocab_size=m["vocab_size"], max_seq_len=cfg.seq_len,
                                     count=m["size_count"])
    assert row["n"] == model.n()


def test_rerunning_resumes_without_training_again(smoke_sweep, capsys):
    from flops_fit.ray import sweep

    cfg, _, _ = smoke_sweep
    before = read_results(f"{cfg.storage_path}/{cfg.name}")
    capsys.readouterr()
    sweep(cfg)
    out = capsys.readouterr().out
    assert "resuming sweep" in out
    assert ": started" not in out  # no trial was launched again
    after = read_results(f"{cfg.storage_path}/{cfg.name}")
    cols = ["trial_id", "loss", "wall_s", "status"]
    assert before[cols].sort_values("trial_id").equals(after[cols].sort_values("trial_id"))


def test_a_different_plan_under_the_same_name_is_refused(smoke_sweep):
    from flops_fit.ray import sweep

    cfg, _, _ = smoke_sweep
    with pytest.raises(PlanError, match="holds a different sweep"):
        sweep(cfg.replace(budgets=(1e10, 2e10, 8e10)))


def test_unwritable_storage_is_reported_before_anything_runs(tmp_path):
    from flops_fit.ray import sweep

    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")  # (tests run as root here, so permissions alone can't lock a dir)
    with pytest.raises(PlanError, match="not writable"):
        sweep(preset("smoke").replace(storage_path=str(not_a_dir / "runs")))
