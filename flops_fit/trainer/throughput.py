"""Measured hardware speed: the matmul peak, a model's training throughput, the local GPUs.

Used by ``benchmarks/`` (model FLOPs utilisation = FLOPs per token x tokens/s / peak, with
the peak measured in the same process and thread count) and by ``flops_fit.engine.estimate``
to cost a sweep before anything runs. torch is imported lazily, so importing this module
costs nothing until a probe runs.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flops_fit.models.gpt import GPTConfig
    from flops_fit.models.gpt_spec import ModelShape
    from flops_fit.planning.grid import TrialSpec


def _setup(threads: int | None, device: str | None):
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return torch, dev


def matmul_peak_flops(threads: int | None = None, dtype: Any = None, *, n: int | None = None,
                      repeats: int = 5, device: str | None = None) -> float:
    """Best observed FLOP/s of an n x n x n matmul (2·n³ FLOPs) on ``threads`` threads.

    ``dtype`` defaults to float32 on CPU and bfloat16 on CUDA (what the trainer computes in).
    The best of ``repeats`` timings is the peak: load from other processes only slows runs down.
    """
    torch, dev = _setup(threads, device)
    dtype = dtype or (torch.bfloat16 if dev.type == "cuda" else torch.float32)
    n = n or (8192 if dev.type == "cuda" else 1024)
    a, b = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
    inner = 10 if dev.type == "cuda" else 3
    best = math.inf
    for i in range(repeats + 1):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(inner):
            torch.mm(a, b)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first round warms caches and thread pools
            best = min(best, (time.perf_counter() - t0) / inner)
    return 2.0 * n**3 / best


def _shape_of(spec_or_shape: TrialSpec | ModelShape | GPTConfig):
    """A reference-GPT TrialSpec, a ModelShape or a GPTConfig -> (GPTConfig, default batch, default seq_len)."""
    from flops_fit.models.gpt import GPTConfig
    from flops_fit.models.gpt_spec import ModelShape, gpt_shape

    if isinstance(spec_or_shape, GPTConfig):
        return spec_or_shape, None, spec_or_shape.max_seq_len
    shape = spec_or_shape if isinstance(spec_or_shape, ModelShape) else gpt_shape(spec_or_shape.model)
    return GPTConfig.from_shape(shape), getattr(spec_or_shape, "batch_size", None), shape.max_seq_len


def probe_tokens_per_s(spec_or_shape: TrialSpec | ModelShape | GPTConfig, batch_size: int | None = None, seq_len: int | None = None, *,
                       steps: int = 6, warmup: int = 2, threads: int | None = None,
                       device: str | None = None, compile: bool = False, detail: bool = False):
    """Training tokens/s of one model shape: ``steps`` timed AdamW steps on random tokens,
    after ``warmup`` untimed ones, with the trainer's own step (``flops_fit.trainer.steps.train_step``).

    Returns tokens/s, or with ``detail=True`` a dict that also splits the time into
    forward, backward and optimizer (each phase synchronised, so slightly pessimistic).
    """
    from flops_fit.trainer import accelerator
    from flops_fit.trainer import steps as train_mod

    torch, dev = _setup(threads, device)
    config, spec_batch, spec_seq = _shape_of(spec_or_shape)
    B, T = batch_size or spec_batch or 16, seq_len or spec_seq
    from flops_fit.models.gpt import GPT

    torch.manual_seed(0)
    model = GPT(config).to(dev)
    optimizer = train_mod.make_optimizer(model, dev, weight_decay=0.1, lr=1e-3)
    step_fn = torch.compile(model) if compile else model
    x = torch.randint(0, config.vocab_size, (B, T), device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    autocast = accelerator.autocast_for(dev)
    for _ in range(warmup):
        train_mod.train_step(step_fn, optimizer, x, autocast)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = train_mod.train_step(step_fn, optimizer, x, autocast)
    float(loss)
    sync()
    elapsed = time.perf_counter() - t0
    tps = steps * B * T / elapsed
    if not detail:
        return tps
    phases = {"forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    for _ in range(steps):
        t = time.perf_counter()
        with autocast():
            _, loss = step_fn(x, labels=x)
        sync(); t1 = time.perf_counter()  # noqa: E702
        loss.backward()
        sync(); t2 = time.perf_counter()  # noqa: E702
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(); t3 = time.perf_counter()  # noqa: E702
        phases["forward"] += t1 - t; phases["backward"] += t2 - t1; phases["optimizer"] += t3 - t2  # noqa: E702
    total = sum(phases.values())
    return {"tokens_per_s": tps, "step_s": elapsed / steps, "batch_size": B, "seq_len": T,
            **{f"frac_{k}": v / total for k, v in phases.items()}}


def local_gpus() -> int:
    """CUDA devices this process sees (0 without torch CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def local_gpu_bytes() -> int | None:
    """Memory of the smallest CUDA device this process sees (None without one)."""
    import torch

    if not torch.cuda.is_available():
        return None
    return min(torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count()))


def probe_batch(spec: TrialSpec, device: str | None) -> int:
    """The full batch on CPU; on CUDA the trainer's micro-batch (the full batch of the large
    shapes would not fit: the probe measures the step the trial really runs)."""
    import torch

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type != "cuda":
        return spec.batch_size
    from flops_fit.models.gpt_spec import gpt_shape, micro_batch_for

    return micro_batch_for(gpt_shape(spec.model), spec.batch_size, spec.seq_len, torch.cuda.mem_get_info(dev)[0])
