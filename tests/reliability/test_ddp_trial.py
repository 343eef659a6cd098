"""Trials on two data-parallel workers through real Ray Train (gloo on CPU), in one smoke
sweep: rank 1 of the longest trial is SIGKILLed at step 300 of 519 (``KillAt(..., rank=1)``,
first attempt only). Ray Train restarts both workers from the trial's last checkpoint in
``<sweep>/train/<trial>/``; the record must show the planned tokens exactly once (its curve
runs once to the last step), a resumed trial, two workers, and the loss of the same spec
trained uninterrupted in one process, within the tolerance ``tests/test_distributed.py``
justifies (1e-4: two ranks sum in another order; resuming itself is exact)."""

from __future__ import annotations

import json

import pytest

from flops_fit.config import TrainOptions, preset
from flops_fit.engine.storage import TRAIN_DIR
from flops_fit.results.table import TRAINED_STATUSES, read_results

KILL_STEP = 300
TOLERANCE = 1e-4  # tests/test_distributed.py


@pytest.mark.slow
def test_a_killed_worker_of_a_two_worker_trial_resumes_the_group_from_its_checkpoint(ray_session, tmp_path, smoke_cache):
    from drills import KillAt

    from flops_fit.ray import sweep
    from flops_fit.trainer.trial import run_trial
    from flops_fit.workloads.gpt import ReferenceGPT

    cfg = preset("smoke").replace(storage_path=str(tmp_path), cache_dir=str(smoke_cache), name="ddp", budgets=(1e10,),
                                  adapt=False, workers_per_trial=2, cpus_per_trial=1.0, checkpoint_every_s=0.3)
    workload = ReferenceGPT.on(cfg.data)
    workload.prepare(cfg.plan)
    specs = workload.plan(cfg.plan)
    killed = max(specs, key=lambda s: s.steps)
    assert killed.steps > KILL_STEP + 100 and killed.batch_size % 2 == 0
    sweep(cfg.replace(step_hooks=(KillAt(killed.trial_id, KILL_STEP, rank=1),)), progress=False)

    run_dir = tmp_path / "ddp"
    table = read_results(run_dir).set_index("trial_id")
    assert sorted(table.index) == sorted(s.trial_id for s in specs)
    assert (table["workers"] == 2).all()
    assert all(table.loc[s.trial_id, "tokens"] == s.tokens for s in specs)
    row = table.loc[killed.trial_id]
    assert row["status"] in TRAINED_STATUSES
    record = json.loads((run_dir / "finished" / f"{killed.trial_id}.json").read_text())
    assert record["resumed"] is True  # rank 0 of the restarted group started from a checkpoint
    steps = [p["step"] for p in json.loads(record["curve"])]
    assert steps == sorted(set(steps)) and steps[-1] == killed.steps  # each step once in the record
    assert record["flops_trained"] == killed.flops
    assert any((run_dir / TRAIN_DIR / killed.trial_id).glob("checkpoint_*"))  # Ray Train kept the latest

    import torch

    threads = torch.get_num_threads()
    try:
        alone = run_trial(killed, workload, TrainOptions(threads=1, checkpoint_every_s=1e9)).metrics
    finally:
        torch.set_num_threads(threads)
    assert row["loss"] == pytest.approx(alone["loss"], abs=TOLERANCE), (row["loss"], alone["loss"])
    print(f"two workers, killed and resumed: {row['loss']!r}; one process uninterrupted: {alone['loss']!r}")
