"""Measured hardware speed: the matmul peak, a trial's training throughput, a sweep's wall time.

Used by ``benchmarks/`` (model FLOPs utilisation = FLOPs per token x tokens/s / peak, with
the peak measured in the same process and thread count) and by ``flops-fit plan`` to print a
sweep's expected wall time before anything runs. torch is imported lazily, so importing this
module (as the planner does) costs nothing until a probe runs.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterable, Sequence

from flops_fit.errors import PlanError
from flops_fit.memory import AUTO, ResourceRule

#: Fixed cost of one trial on a Ray worker (actor start, torch + dynamo import, data open,
#: report, eval, idle slot time): 4.5 s with reused actors, 18 s without (bench_sweep.py, RESULTS.md).
TRIAL_OVERHEAD_S = 4.5
#: torch.compile of a new shape's forward + backward on a GPU (Inductor, about 0.5-2 min; the
#: upper middle, until benchmarks/bench_gpu.py measures it), paid by trials that compile.
COMPILE_S = 90.0


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


def _shape_of(spec_or_shape: Any):
    """A reference-GPT TrialSpec, a ModelShape or a GPTConfig -> (GPTConfig, default batch, default seq_len)."""
    from flops_fit.accounting import ModelShape
    from flops_fit.models.gpt import GPTConfig
    from flops_fit.sizes import gpt_shape

    if isinstance(spec_or_shape, GPTConfig):
        return spec_or_shape, None, spec_or_shape.max_seq_len
    shape = spec_or_shape if isinstance(spec_or_shape, ModelShape) else gpt_shape(spec_or_shape.model)
    return GPTConfig.from_shape(shape), getattr(spec_or_shape, "batch_size", None), shape.max_seq_len


def probe_tokens_per_s(spec_or_shape: Any, batch_size: int | None = None, seq_len: int | None = None, *,
                       steps: int = 6, warmup: int = 2, threads: int | None = None,
                       device: str | None = None, compile: bool = False, detail: bool = False):
    """Training tokens/s of one model shape: ``steps`` timed AdamW steps on random tokens,
    after ``warmup`` untimed ones, with the trainer's own step (``flops_fit.train.train_step``).

    Returns tokens/s, or with ``detail=True`` a dict that also splits the time into
    forward, backward and optimizer (each phase synchronised, so slightly pessimistic).
    """
    from flops_fit import accelerator
    from flops_fit import train as train_mod

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


def resource_rule(cfg: Any, cluster_gpu_bytes: Callable[[], int] | None = None) -> ResourceRule:
    """Each trial's resources under ``cfg``. For ``gpus_per_trial="auto"`` the GPU memory is
    ``gpu_memory_gb``, else the local GPU's, else ``cluster_gpu_bytes()`` (the Ray layer asks
    a GPU worker); without any of them auto cannot be sized and says so."""
    gpu_bytes = None
    if cfg.gpus_per_trial == AUTO:
        gpu_bytes = int(cfg.gpu_memory_gb * 1e9) if cfg.gpu_memory_gb else local_gpu_bytes()
        if gpu_bytes is None and cluster_gpu_bytes is not None:
            gpu_bytes = cluster_gpu_bytes()
        if gpu_bytes is None:
            raise PlanError("--gpus-per-trial auto sizes trials by GPU memory, and this machine has no GPU: "
                            "pass --gpu-memory-gb (e.g. 80 for an H100) for the GPUs the sweep will run on")
    return ResourceRule(cfg.cpus_per_trial, cfg.gpus_per_trial, gpu_bytes)


def trial_slots(cpus: int, cpus_per_trial: float, gpus: int = 0, gpus_per_trial: float = 0.0,
                max_concurrent: int | None = None) -> int:
    """How many trials run at once: a GPU trial is bounded by GPUs / gpus_per_trial (8 on an
    8-GPU 192-vCPU node at one GPU a trial, not 192 / cpus_per_trial), by CPUs as well."""
    slots = int(cpus // cpus_per_trial)
    if gpus_per_trial > 0:
        slots = min(slots, int(gpus // gpus_per_trial + 1e-9))
    slots = max(1, slots)
    return min(slots, max_concurrent) if max_concurrent else slots


def estimate_sweep_seconds(specs: Sequence[Any], cpus_per_trial: float = 1.0, slots: int | None = None, *,
                           tokens_per_s: dict[Any, float] | None = None, overhead_s: float = TRIAL_OVERHEAD_S,
                           probe_steps: int = 3, device: str | None = None,
                           compile: bool = False) -> dict[str, Any]:
    """Expected wall time of a sweep, from a quick throughput probe of each distinct shape.

    Each trial costs ``overhead_s + tokens / tokens_per_s(shape, batch)``; trials are packed
    longest first onto ``slots`` slots (default: CPUs // cpus_per_trial), the rule the
    driver launches by, so the makespan is the LPT schedule's. ``tokens_per_s`` may supply
    measured rates keyed by (ModelShape, batch_size, seq_len) to skip probing. ``compile``:
    trials that compile (``accelerator.compile_pays``) also pay ``COMPILE_S``.
    """
    import os

    from flops_fit.accelerator import compile_pays
    from flops_fit.sizes import gpt_shape

    slots = slots or trial_slots(os.cpu_count() or 1, cpus_per_trial)
    rates = dict(tokens_per_s or {})
    per_trial = []
    for s in specs:
        key = (gpt_shape(s.model), s.batch_size, s.seq_len)
        if key not in rates:
            rates[key] = probe_tokens_per_s(s, batch_size=_probe_batch(s, device), steps=probe_steps, warmup=1,
                                            threads=max(1, int(cpus_per_trial)), device=device)
        compile_s = COMPILE_S if compile and compile_pays(s) else 0.0
        per_trial.append(overhead_s + compile_s + s.tokens / rates[key])
    finish = [0.0] * slots
    for t in sorted(per_trial, reverse=True):  # LPT: each trial to the earliest-free slot
        i = finish.index(min(finish))
        finish[i] += t
    flops = sum(s.flops for s in specs)
    return {"trials": len(specs), "slots": slots, "total_flops": flops, "trial_seconds": sum(per_trial),
            "makespan_s": max(finish) if specs else 0.0, "per_trial_s": per_trial}


def _probe_batch(spec: Any, device: str | None) -> int:
    """The full batch on CPU; on CUDA the trainer's micro-batch (the full batch of the large
    shapes would not fit: the probe measures the step the trial really runs)."""
    import torch

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type != "cuda":
        return spec.batch_size
    from flops_fit.memory import micro_batch_for
    from flops_fit.sizes import gpt_shape

    return micro_batch_for(gpt_shape(spec.model), spec.batch_size, spec.seq_len, torch.cuda.mem_get_info(dev)[0])


def format_estimate(est: dict[str, Any]) -> str:
    """One line for ``flops-fit plan``."""
    return (f"estimated: {est['total_flops']:.3e} FLOPs, {est['trial_seconds']:.0f} trial-seconds, "
            f"about {est['makespan_s']:.0f} s wall on {est['slots']} slot(s) (from a throughput probe)")


def median(values: Iterable[float]) -> float:
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else 0.5 * (v[len(v) // 2 - 1] + v[len(v) // 2])
