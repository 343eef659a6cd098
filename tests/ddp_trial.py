"""One trial on the ranks torchrun started (gloo, CPU): ``python -m torch.distributed.run
--nproc_per_node K tests/ddp_trial.py OUT.json``. Rank 0 writes the trial's metrics to OUT.json.
The spec is ``tests/test_distributed.py``'s: 8 sequences a step, so 1, 2 and 4 ranks divide it."""

from __future__ import annotations

import json
import sys

import torch
import torch.distributed as dist
from windows import SEQ, VOCAB, TinyGPTWorkload

from flops_fit.config import TrainOptions
from flops_fit.planning.grid import plan
from flops_fit.trainer.trial import run_trial


def spec():
    return plan([1e10], 3, vocab_size=VOCAB, seq_len=SEQ, min_steps=40, max_batch_size=8)[2]  # 148 steps of 8


if __name__ == "__main__":
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    metrics = run_trial(spec(), TinyGPTWorkload(), TrainOptions(threads=1, log_every=5)).metrics
    if dist.get_rank() == 0:
        with open(sys.argv[1], "w") as f:
            json.dump(metrics, f)
    dist.destroy_process_group()
