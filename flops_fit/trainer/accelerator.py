"""The accelerator side of a trial: the autocast dtype for a device, the micro-batch that fits
in its memory, a fractional GPU's memory cap, and whether and how to ``torch.compile``. torch
only (no Ray); ``flops_fit.trainer.trial`` runs the trial with these."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Callable

import torch

from flops_fit.planning.grid import TrialSpec


def compute_dtype(capability: tuple[int, int] | None) -> torch.dtype:
    """The autocast dtype for a CUDA device of compute ``capability`` (None: CPU, fp32).

    bf16 from sm80 (A100/A10G/L4/H100): native bf16 tensor cores and flash attention. Below
    (T4 sm75, V100 sm70) bf16 has no tensor-core path and Inductor skips bf16 graphs, so
    fp16 with a dynamic loss scale (``torch.amp.GradScaler``) instead."""
    if capability is None:
        return torch.float32
    return torch.bfloat16 if tuple(capability) >= (8, 0) else torch.float16


def autocast_for(device: torch.device, dtype: torch.dtype | None = None) -> Callable[[], Any]:
    """Autocast on CUDA in ``dtype`` (default: ``compute_dtype`` of the device; fp32 master
    weights either way); plain fp32 on CPU."""
    if device.type == "cuda":
        dtype = dtype or compute_dtype(torch.cuda.get_device_capability(device))
        return lambda: torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext


def micro_batches_for(spec: TrialSpec, device: torch.device, model: torch.nn.Module, rows: int | None = None,
                      shards: int = 1) -> int:
    """1 on CPU (results stay bit-identical to the unaccumulated step); on CUDA, the fewest
    equal micro-batches of this process's ``rows`` sequences a step (default the whole batch;
    a data-parallel rank's part; ``shards``: GPUs its model is sharded over) whose memory estimate (``flops_fit.models.gpt_spec.training_bytes``)
    fits in the free device memory."""
    if device.type != "cuda" or not spec.model or "d_model" not in spec.model:
        return 1
    from flops_fit.models.gpt_spec import gpt_shape, micro_batch_for

    free, total = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device)  # the model already sits in what is reserved
    free = min(free, int(torch.cuda.get_per_process_memory_fraction(device) * total))  # a shared GPU's cap
    rows = rows or spec.batch_size
    return rows // micro_batch_for(gpt_shape(spec.model), rows, spec.seq_len, free, shards)


def cap_gpu_memory(share: float) -> None:
    """A trial holding ``share`` < 1 of a GPU keeps to it: Ray's fractional GPUs isolate no
    memory, so without a cap one trial's growth makes its neighbours fail. With the cap
    PyTorch's allocator raises out-of-memory in this trial past its share (and the trainer
    halves its micro-batch), instead."""
    if 0 < share < 1 and torch.cuda.is_available():
        torch.cuda.set_per_process_memory_fraction(share)


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


#: Steps below which torch.compile does not pay: Inductor compiles forward + backward of a
#: new shape in about 0.5-2 min, and saves roughly a third of a step (benchmarks/bench_gpu.py
#: measures both); a trial of a few hundred steps spends longer compiling than it saves.
COMPILE_MIN_STEPS = 2000


def compile_pays(spec: TrialSpec) -> bool:
    return spec.steps >= COMPILE_MIN_STEPS


def configure_compile(threads: int | None) -> None:
    """Inductor's compile workers capped at the trial's CPUs (it starts up to 32 per process
    otherwise, on a node shared by 8 trials), and its cache node-local and persistent, so a
    retried or resumed trial of the same shape skips the compile."""
    from flops_fit.data.tokenizer import default_cache_dir

    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(default_cache_dir()) / "inductor"))
    if threads:
        os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", str(int(threads)))
        import torch._inductor.config as inductor_config

        inductor_config.compile_threads = int(threads)


def release_device_memory(device: torch.device, compiled: bool) -> None:
    """What a trial leaves behind, freed before the worker's next one: Dynamo's graphs (a
    reused worker would pile them up past the recompile limit) and the CUDA cache."""
    import gc

    if compiled:
        torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
