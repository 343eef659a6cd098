"""A trial on k data-parallel ranks (``flops_fit.trainer.distributed``), without Ray: torchrun
starts the ranks (gloo, CPU), as Ray Train does in a sweep (``tests/reliability/test_ddp_trial.py``).

Each rank trains an equal slice of every step's batch and DDP averages the gradients, so the
update is the one-process update up to float32 summation order: gradients summed over 8
sequences in one process against 4 + 4 summed per rank and then averaged. Measured on the spec
below (148 steps of 8 sequences, a 87,920-parameter GPT): final validation loss 4.5372133 (one
process) against 4.5372138 (two ranks), a difference of 4.8e-7, and at most 3.8e-7 along the
training curve, a few float32 ulps of the loss. The test allows 1e-4: 250 times below the seed
noise of the fits (0.02-0.03 in ln L, docs/fitting.md) and 200 times above what was measured,
so it fails on a wrong slice or a missing gradient average (either moves the loss by 1e-2 or
more) and not on summation order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flops_fit.config import TrainOptions
from flops_fit.trainer.distributed import World

TESTS = Path(__file__).parent
TOLERANCE = 1e-4


def _torchrun(ranks: int, out: Path, mode: str = "ddp") -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks),
                    str(TESTS / "ddp_trial.py"), str(out), mode], check=True, env=env, cwd=TESTS, timeout=300,
                   capture_output=True)
    return json.loads(out.read_text())


def test_two_ranks_train_the_one_process_trial_to_float_rounding(tmp_path):
    import torch
    from ddp_trial import spec
    from windows import TinyGPTWorkload

    from flops_fit.trainer.trial import run_trial

    threads = torch.get_num_threads()
    try:
        alone = run_trial(spec(), TinyGPTWorkload(), TrainOptions(threads=1, log_every=5)).metrics
    finally:
        torch.set_num_threads(threads)
    ranks = _torchrun(2, tmp_path / "two.json")
    assert ranks["workers"] == 2 and alone["workers"] == 1
    assert ranks["tokens"] == alone["tokens"] == spec().tokens  # the same tokens, split, not doubled
    assert ranks["flops_trained"] == alone["flops_trained"]
    assert ranks["loss"] == pytest.approx(alone["loss"], abs=TOLERANCE)
    curves = [[p["train_loss"] for p in json.loads(m["curve"])] for m in (alone, ranks)]
    assert len(curves[0]) == len(curves[1]) and max(abs(a - b) for a, b in zip(*curves)) < TOLERANCE
    print(f"one process {alone['loss']!r}, two ranks {ranks['loss']!r}: {abs(alone['loss'] - ranks['loss']):.2g}")


def test_a_model_sharded_over_two_ranks_trains_as_ddp_does_and_resumes_from_its_gathered_checkpoint(tmp_path):
    """FSDP2 (``shard_model``): the same update as DDP (gradients averaged, here bitwise the
    same loss), and a checkpoint gathered to rank 0 and broadcast back resumes exactly."""
    ddp = _torchrun(2, tmp_path / "ddp.json")
    sharded = _torchrun(2, tmp_path / "sharded.json", "shard")
    assert sharded["workers"] == 2 and sharded["n"] == ddp["n"]  # n() counts the whole model, not a shard
    assert sharded["loss"] == pytest.approx(ddp["loss"], abs=TOLERANCE)
    resumed = _torchrun(2, tmp_path / "resumed.json", "shard-resume")
    assert 0 < resumed["resumed_at"] < spec_steps()
    assert resumed["loss"] == pytest.approx(sharded["loss"], rel=1e-6, abs=0)  # exact by construction
    assert resumed["tokens"] == sharded["tokens"] and resumed["curve"] == sharded["curve"]
    print(f"DDP {ddp['loss']!r}, sharded {sharded['loss']!r}, sharded stopped at step {resumed['resumed_at']} and "
          f"resumed {resumed['loss']!r}")


def spec_steps() -> int:
    from ddp_trial import spec

    return spec().steps


def test_each_rank_takes_its_own_equal_slice():
    assert [World(r, 4).part(8) for r in range(4)] == [slice(0, 2), slice(2, 4), slice(4, 6), slice(6, 8)]
    assert World().part(8) == slice(0, 8)
    with pytest.raises(ValueError, match="does not split into 3 equal"):
        World(0, 3).rows(8)
