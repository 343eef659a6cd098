"""What only a GPU can show: for trials of the GPU preset, the peak memory against
``flops_fit.planning.resources``'s model, MFU, the torch.compile time of a new shape, and how long a
checkpoint write blocks the training loop.

    python benchmarks/bench_gpu.py            # on a CUDA machine: the tinystories-gpu shapes + 1e18's largest
    python benchmarks/bench_gpu.py --quick    # one tiny shape, seconds; runs on CPU too (no memory column)
    python benchmarks/bench_gpu.py --workers 2 [--shard]   # the median shape on 1 and on 2 data-parallel GPUs
                                              # of this node (NCCL; gloo on CPU with --quick): tokens/s and scaling

Per shape: the micro-batch the trainer picks (``accelerator.micro_batches_for``), the measured peak
(``torch.cuda.max_memory_allocated``) over ``memory.training_bytes`` at that micro-batch (the
model should be >= 1: an upper estimate), tokens/s eager and compiled (Dynamo reset first, so
the compiled row is compiled), MFU = attention-convention FLOPs/token x tokens/s / measured
bf16 matmul peak, compile_s = first compiled step minus an eager step, checkpoint_stall_s =
what the loop waits for at a checkpoint (the copy of model + AdamW state to pinned host memory)
and checkpoint_write_s = until the background write is on disk.
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, table  # noqa: E402


def _shapes(quick: bool):
    from flops_fit.config import preset
    from flops_fit.engine.sweep import default_workload

    if quick:
        cfg = preset("smoke")
        specs = default_workload(cfg).plan(cfg.plan)
        return [("smoke-largest", max(specs, key=lambda s: s.n))]
    cfg = preset("tinystories-gpu")
    specs = sorted(default_workload(cfg).plan(cfg.plan), key=lambda s: s.n)
    old = cfg.replace(budgets=(1e18,), span=16.0)
    big = max(default_workload(old).plan(old.plan), key=lambda s: s.n)
    return [("smallest", specs[0]), ("median", specs[len(specs) // 2]), ("largest", specs[-1]), ("1e18-largest", big)]


def measure(label: str, spec, steps: int) -> dict:
    import torch

    from flops_fit.models import gpt_spec as accounting
    from flops_fit.models import gpt_spec as memory
    from flops_fit.models.gpt import GPT, GPTConfig
    from flops_fit.models.gpt_spec import gpt_shape
    from flops_fit.trainer import accelerator, checkpoint
    from flops_fit.trainer import steps as step_parts
    from flops_fit.trainer import trial as train
    from flops_fit.trainer.throughput import matmul_peak_flops

    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    shape = gpt_shape(spec.model)
    model = GPT(GPTConfig.from_shape(shape)).to(dev)
    opt = step_parts.make_optimizer(model, dev, 0.1, 1e-3)
    k = accelerator.micro_batches_for(spec, dev, model)
    x = torch.randint(0, shape.vocab_size, (spec.batch_size, spec.seq_len), device=dev)
    autocast = accelerator.autocast_for(dev)
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def timed(fn, n):
        sync()
        t0 = time.perf_counter()
        for _ in range(n):
            loss = fn()
        float(loss)
        sync()
        return (time.perf_counter() - t0) / n

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    eager = functools.partial(step_parts.train_step, model, opt, x, autocast, micro_batches=k)
    timed(eager, 1)
    eager_s = timed(eager, steps)
    peak = torch.cuda.max_memory_allocated() if cuda else None
    torch._dynamo.reset()
    compiled = torch.compile(model)
    step_c = functools.partial(step_parts.train_step, compiled, opt, x, autocast, micro_batches=k)
    first_s = timed(step_c, 1)
    compiled_s = timed(step_c, steps)
    trial = train._Trial(spec, None, dev, None, None, model, opt)
    with tempfile.TemporaryDirectory() as root:
        done = []
        writer = checkpoint.BackgroundWriter(root, lambda d, p: done.append(time.perf_counter()), 0.0)
        sync()
        t0 = time.perf_counter()
        writer.submit(train._checkpoint_state(trial, 0.0), 0, {})
        ckpt_s = time.perf_counter() - t0  # what the loop waits for: the copy to pinned host memory
        writer.close()
        write_s = done[0] - t0
    tokens = spec.batch_size * spec.seq_len
    fpt = accounting.flops_per_token(shape, spec.seq_len, "attention")
    peak_flops = matmul_peak_flops(device=str(dev))
    model_bytes = memory.training_bytes(shape, spec.batch_size // k, spec.seq_len)
    row = {"case": label, "label": spec.label, "n": spec.n, "batch": spec.batch_size, "micro_batches": k,
           "peak_gb": peak / 1e9 if peak else None, "model_gb": model_bytes / 1e9,
           "peak_over_model": peak / model_bytes if peak else None,
           "tokens_per_s_eager": tokens / eager_s, "tokens_per_s_compiled": tokens / compiled_s,
           "mfu_eager": fpt * tokens / eager_s / peak_flops, "mfu_compiled": fpt * tokens / compiled_s / peak_flops,
           "compile_s": first_s - eager_s, "checkpoint_stall_s": ckpt_s,
           "checkpoint_write_s": write_s}
    del model, opt, compiled, trial, eager, step_c
    accelerator.release_device_memory(dev, compiled=True)
    return row


def _data_parallel_shape(quick: bool):
    """The shape ``--workers`` times: the GPU preset's median trial (the smoke preset's largest with --quick)."""
    cases = dict(_shapes(quick))
    return cases.get("median") or cases["smoke-largest"]


def rank_tokens_per_s(quick: bool, steps: int, shard: bool) -> None:
    """One rank of ``--workers`` (torchrun starts k of them): the trainer's own data-parallel
    step (``flops_fit.trainer.distributed``: this rank's slice of the batch, DDP or FSDP2) timed
    over ``steps`` steps after one untimed; rank 0 prints the trial's tokens/s as JSON."""
    import json

    import torch
    import torch.distributed as dist

    from flops_fit.trainer import accelerator
    from flops_fit.trainer import steps as step_parts
    from flops_fit.trainer.distributed import World
    from flops_fit.workloads.gpt import ReferenceGPT

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    world = World.current(shard)
    dev = torch.device(f"cuda:{dist.get_rank() % torch.cuda.device_count()}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(dev)
    spec = _data_parallel_shape(quick)
    torch.manual_seed(0)
    model = world.place(ReferenceGPT().build_model(spec), dev)
    opt = step_parts.make_optimizer(model, dev, 0.1, 1e-3)
    step_fn = world.wrap(model, dev)
    rows = world.rows(spec.batch_size)
    k = accelerator.micro_batches_for(spec, dev, model, rows, world.size if world.sharded else 1)
    x = torch.randint(0, spec.model["vocab_size"], (rows, spec.seq_len), device=dev)
    autocast = accelerator.autocast_for(dev)
    step_parts.train_step(step_fn, opt, x, autocast, micro_batches=k)
    if cuda:
        torch.cuda.synchronize()
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step_parts.train_step(step_fn, opt, x, autocast, micro_batches=k)
    float(loss)
    if cuda:
        torch.cuda.synchronize()
    dist.barrier()
    seconds = (time.perf_counter() - t0) / steps
    if world.leads:
        print(json.dumps({"workers": world.size, "sharded": world.sharded, "label": spec.label, "n": spec.n,
                          "batch": spec.batch_size, "micro_batches": k,
                          "tokens_per_s": spec.batch_size * spec.seq_len / seconds}), flush=True)
    dist.destroy_process_group()


def data_parallel_rows(workers: int, quick: bool, steps: int, shard: bool) -> list[dict]:
    """tokens/s of the same trial on 1 and on ``workers`` ranks of this node, and the scaling."""
    import json
    import subprocess

    rows = []
    for k in (1, workers):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(k), __file__,
               "--rank", "--steps", str(steps)] + (["--quick"] if quick else []) + (["--shard"] if shard and k > 1 else [])
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads([line for line in out.splitlines() if line.startswith("{")][-1]))
    for row in rows:
        row["speedup"] = row["tokens_per_s"] / rows[0]["tokens_per_s"]
        row["scaling_efficiency"] = row["speedup"] / row["workers"]
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--workers", type=int, default=None, help="time the median shape on 1 and on this many ranks")
    p.add_argument("--shard", action="store_true", help="with --workers: shard the model (FSDP2), not DDP")
    p.add_argument("--rank", action="store_true", help=argparse.SUPPRESS)  # one rank of --workers (torchrun)
    args = p.parse_args()
    import torch

    if args.rank:
        return rank_tokens_per_s(args.quick, args.steps or 5, args.shard)
    if args.workers:
        rows = data_parallel_rows(args.workers, args.quick, args.steps or (3 if args.quick else 20), args.shard)
        result = {"benchmark": "gpu-data-parallel", "quick": args.quick, "shard": args.shard,
                  "device": "cuda" if torch.cuda.is_available() else "cpu", "rows": rows}
        return emit(result, table(rows, ["workers", "sharded", "label", "batch", "micro_batches", "tokens_per_s",
                                         "speedup", "scaling_efficiency"]))

    steps = args.steps or (1 if args.quick else 5)
    rows = [measure(label, spec, steps) for label, spec in _shapes(args.quick)]
    result = {"benchmark": "gpu", "quick": args.quick, "device": "cuda" if torch.cuda.is_available() else "cpu",
              "rows": rows}
    emit(result, table(rows, ["case", "label", "micro_batches", "peak_gb", "model_gb", "peak_over_model",
                              "mfu_eager", "mfu_compiled", "compile_s", "checkpoint_stall_s",
                              "checkpoint_write_s"]))


if __name__ == "__main__":
    main()
