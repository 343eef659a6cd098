"""A warmup-stable-decay sweep through real Ray and real training (the smoke preset, two
budgets, three stems of two branches each):

- each branch is one row with its schedule, stem and cooldown tokens, and trains only from
  its stem's kept state (``flops_trained``), the sweep's compute in ``fits.json``;
- the longest branch's worker is SIGKILLed inside its cooldown (step 950 of 1038; the cooldown
  starts at 830): it resumes from its own checkpoint, and its loss equals the same branch
  trained alone from step 0 in this process. Tolerance 1e-6 relative, as for the cosine
  drill: continuation and resume are exact by construction (the batch at step k is a pure
  function of (seed, k) over the stem's tokens; model, AdamW state and step are restored),
  and here the losses are bitwise equal;
- a rerun with a third budget grows the sweep: the six finished branches replay, the new
  budget's branches continue their stems from the kept states.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flops_fit.config import TrainOptions, preset
from flops_fit.results.table import TRAINED_STATUSES, read_results

KILL_STEP = 950


@pytest.fixture(scope="module")
def wsd_sweep(ray_session, tmp_path_factory, smoke_cache):
    from drills import KillAt

    from flops_fit.ray import sweep
    from flops_fit.workloads.gpt import ReferenceGPT

    storage = tmp_path_factory.mktemp("wsd_runs")
    cfg = preset("smoke").replace(storage_path=str(storage), cache_dir=str(smoke_cache), name="wsd",
                                  budgets=(1e10, 2e10), schedule="wsd", checkpoint_every_s=0.3)
    workload = ReferenceGPT.on(cfg.data)
    workload.prepare(cfg.plan)
    specs = workload.plan(cfg.plan)
    killed = max(specs, key=lambda s: s.steps)
    assert killed.cooldown_start < KILL_STEP < killed.steps and killed.stem_start > 0
    cfg = cfg.replace(step_hooks=(KillAt(killed.trial_id, KILL_STEP),))
    result = sweep(cfg, progress=False)
    return cfg, specs, killed, workload, result


def _reports(run_dir: Path, trial_id: str) -> list[dict]:
    lines = (run_dir / trial_id / "result.json").read_text().splitlines()
    return [json.loads(line) for line in lines if line]


@pytest.mark.slow
def test_each_branch_is_a_row_that_trains_from_its_stems_kept_state(wsd_sweep):
    cfg, specs, _, _, _ = wsd_sweep
    run_dir = Path(cfg.storage_path) / cfg.name
    table = read_results(run_dir).set_index("trial_id")
    assert sorted(table.index) == sorted(s.trial_id for s in specs)
    assert table["status"].isin(TRAINED_STATUSES).all()
    assert (table["schedule"] == "wsd").all() and table["stem"].nunique() == 3
    for s in specs:
        row = table.loc[s.trial_id]
        assert row["stem"] == s.stem and row["cooldown_tokens"] == s.cooldown_tokens and row["tokens"] == s.tokens
        assert row["flops"] == pytest.approx(s.flops)  # the (N, D) point's FLOPs, as a standalone run's
        assert row["flops_trained"] == pytest.approx(s.tokens_to_train * s.flops_per_token)
    compute = json.loads((run_dir / "fits.json").read_text())["compute"]
    assert compute["flops_spent"] == pytest.approx(table["flops_trained"].sum())
    assert compute["flops_as_cosine_runs"] == pytest.approx(table["flops"].sum())
    assert 0.6 < compute["ratio"] < 0.75  # two budgets 2x apart: 1 + 0.2 x 1 + 0.8 x 1 ... of 3 units per stem
    kept = sorted(p.relative_to(run_dir / "stems").as_posix() for p in (run_dir / "stems").glob("*/step_*.pt"))
    assert kept == sorted(f"{s.stem}/step_{s.cooldown_start:08d}.pt" for s in specs if s.budget == 2e10)


@pytest.mark.slow
def test_a_branch_killed_in_its_cooldown_resumes_there_and_matches_one_trained_alone(wsd_sweep):
    from flops_fit.trainer.trial import run_trial

    cfg, _, killed, workload, _ = wsd_sweep
    run_dir = Path(cfg.storage_path) / cfg.name
    reports = _reports(run_dir, killed.trial_id)
    pids = list(dict.fromkeys(r["pid"] for r in reports))
    assert len(pids) == 2, pids
    first = [r["step"] for r in reports if r["pid"] == pids[0] and r.get("status") == "running"]
    second = [r["step"] for r in reports if r["pid"] == pids[1] and r.get("status") == "running"]
    assert first and killed.cooldown_start < max(first) < KILL_STEP  # it had checkpointed inside the cooldown
    assert not second or min(second) > max(first)
    assert reports[-1]["resumed"] is True and reports[-1]["status"] in TRAINED_STATUSES
    final = json.loads((run_dir / "finished" / f"{killed.trial_id}.json").read_text())  # the full row
    assert final["flops_trained"] == pytest.approx(killed.tokens_to_train * killed.flops_per_token)

    import torch

    threads = torch.get_num_threads()
    try:  # the same branch from step 0, no stem state, no interruption
        alone = run_trial(killed, workload, TrainOptions(threads=int(cfg.cpus_per_trial), checkpoint_every_s=1e9))
    finally:
        torch.set_num_threads(threads)
    assert final["loss"] == pytest.approx(alone.metrics["loss"], rel=1e-6, abs=0)
    print(f"killed-in-cooldown loss {final['loss']!r} vs alone {alone.metrics['loss']!r}")


@pytest.mark.slow
def test_a_budget_added_later_continues_the_stems_and_replays_every_finished_branch(wsd_sweep, capsys):
    from flops_fit.ray import sweep

    cfg, specs, _, _, _ = wsd_sweep
    run_dir = Path(cfg.storage_path) / cfg.name
    before = {s.trial_id: (run_dir / "finished" / f"{s.trial_id}.json").stat().st_mtime_ns for s in specs}
    grown = cfg.replace(budgets=(1e10, 2e10, 4e10), step_hooks=())
    sweep(grown, progress=True)
    assert "the sweep grows by 3 trial(s)" in capsys.readouterr().out
    table = read_results(run_dir).set_index("trial_id")
    assert len(table) == 9 and table["status"].isin(TRAINED_STATUSES).all()
    assert {s.trial_id: (run_dir / "finished" / f"{s.trial_id}.json").stat().st_mtime_ns for s in specs} == before
    new = table[table["budget"] == 4e10]
    for trial_id, row in new.iterrows():
        longest_before = table[(table["stem"] == row["stem"]) & (table["budget"] == 2e10)].iloc[0]
        start = longest_before["steps"] - round(0.2 * longest_before["steps"])  # that branch's cooldown start
        assert row["flops_trained"] == pytest.approx((row["steps"] - start) * row["batch_size"] * row["seq_len"]
                                                     * row["flops"] / row["tokens"]), trial_id
