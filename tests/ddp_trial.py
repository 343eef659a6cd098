"""One trial on the ranks torchrun started (gloo, CPU): ``python -m torch.distributed.run
--standalone --nproc_per_node K tests/ddp_trial.py OUT.json [MODE]``; rank 0 writes the trial's
metrics to OUT.json. MODE ``ddp`` (default) keeps a model copy per rank; ``shard`` shards it
(FSDP2); ``shard-resume`` shards it, stops the trial after its first checkpoint, and trains
it again from that checkpoint (OUT.json: the resumed run's metrics, with the step it resumed at).
The spec is ``tests/test_distributed.py``'s: 8 sequences a step, so 1, 2 and 4 ranks divide it."""

from __future__ import annotations

import json
import sys
import tempfile

import torch
import torch.distributed as dist
from windows import SEQ, VOCAB, TinyGPTWorkload

from flops_fit.config import TrainOptions
from flops_fit.planning.grid import plan
from flops_fit.trainer.trial import run_trial


def spec():
    return plan([1e10], 3, vocab_size=VOCAB, seq_len=SEQ, min_steps=40, max_batch_size=8)[2]  # 148 steps of 8


class _Stop(Exception):
    pass


def stopped_and_resumed(options: TrainOptions) -> dict:
    saved: list = []  # every rank hands over at the same log point (rank 0 a directory, the others None)

    def stop_after_first_checkpoint(ctx):
        if saved and not ctx.resumed:
            raise _Stop

    root = tempfile.mkdtemp() if dist.get_rank() == 0 else None
    stopping = TrainOptions(threads=1, log_every=5, checkpoint_every_s=1e-9, shard_model=options.shard_model,
                            step_hooks=(stop_after_first_checkpoint,))
    try:
        run_trial(spec(), TinyGPTWorkload(), stopping, save_checkpoint=lambda d, p: saved.append((d, p["step"])),
                  checkpoint_root=root)
    except _Stop:
        pass
    where = [saved[0][0] if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(where)
    metrics = run_trial(spec(), TinyGPTWorkload(), options, resume_from=where[0]).metrics
    return {**metrics, "resumed_at": saved[0][1]}


if __name__ == "__main__":
    mode = sys.argv[2] if len(sys.argv) > 2 else "ddp"
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    options = TrainOptions(threads=1, log_every=5, shard_model=mode.startswith("shard"))
    if mode == "shard-resume":
        metrics = stopped_and_resumed(options)
    else:
        metrics = run_trial(spec(), TinyGPTWorkload(), options).metrics
    if dist.get_rank() == 0:
        with open(sys.argv[1], "w") as f:
            json.dump(metrics, f)
    dist.destroy_process_group()
