"""One trial: a TrialSpec and a workload in, metrics out. torch only (no Ray), so it runs and
tests alone.

The workload builds the model and opens the data (``flops_fit.workloads``); the trial
trains for exactly ``spec.tokens`` tokens (whole steps of ``batch_size x seq_len``) with
AdamW and a warmup + cosine schedule sized to its own length (Hoffmann et al. 2022, §3: a
schedule longer than the run biases the loss of short runs upward), then evaluates on the
fixed held-out validation set every trial shares. That validation loss is the ``loss`` the
fit uses.

Resumption: the batch at step k is a pure function of (seed, k) (``flops_fit.batches``), so
a checkpoint needs only model, optimizer, step and the running curve; a resumed trial sees
exactly the batches an uninterrupted one would.

Steps of ``run_trial``: setup (device, data, model, optimizer), resume, loop, evaluate,
record. ``TrainOptions.step_hooks`` run before every step with a :class:`StepContext`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from flops_fit.batches import BatchOrder, BatchStream
from flops_fit.config import TrainOptions
from flops_fit.plan import TrialSpec

CHECKPOINT_FILE = "trial_state.pt"


@dataclass
class TrialOutcome:
    status: str  # ok | diverged
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepContext:
    """What a step hook sees, before optimizer step ``step`` (0-based) runs."""

    spec: TrialSpec
    step: int
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    resumed: bool
    """True when this attempt of the trial started from a checkpoint."""


def lr_at(step: int, spec: TrialSpec, min_ratio: float = 0.1) -> float:
    """Linear warmup, then cosine decay to ``min_ratio``·peak exactly at the last step."""
    if step < spec.warmup_steps:
        return spec.lr * (step + 1) / spec.warmup_steps
    progress = (step - spec.warmup_steps) / max(1, spec.steps - spec.warmup_steps)
    return spec.lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def pair_batch(batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels) on ``device``; a bare tensor is its own labels (the model shifts)."""
    x, y = batch if isinstance(batch, (tuple, list)) else (batch, batch)
    if device.type == "cuda":  # pinned, non-blocking copies overlap the previous step
        same = y is x
        x = x.pin_memory().to(device, non_blocking=True)
        y = x if same else y.pin_memory().to(device, non_blocking=True)
    return x, y


def count_parameters(model) -> int:
    """The model contract: ``n()`` (or ``num_params()``) is the trainable parameter count."""
    for name in ("n", "num_params"):
        if callable(getattr(model, name, None)):
            return int(getattr(model, name)())
    raise TypeError(f"{type(model).__name__} has neither n() nor num_params()")


def autocast_for(device: torch.device) -> Callable[[], Any]:
    """bf16 autocast on CUDA (tensor cores, fp32 master weights); plain fp32 on CPU."""
    if device.type == "cuda":
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


@torch.no_grad()
def evaluate(model, val, device: torch.device, batch_size: int, autocast) -> float:
    """Mean next-token loss over every window of the fixed validation set."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(val), batch_size):
        idx = np.arange(start, min(len(val), start + batch_size))
        x, y = pair_batch(val.get_batch(idx), device)
        with autocast():
            _, loss = model(x, labels=y)
        weight = x.shape[0] * (x.shape[1] - 1)
        total += float(loss) * weight
        count += weight
    model.train()
    return total / count


def make_optimizer(model, device: torch.device, weight_decay: float, lr: float) -> torch.optim.Optimizer:
    """AdamW, weight decay on matrices only (not norm gains), betas (0.9, 0.95)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.95),
        fused=device.type == "cuda",
    )


def train_step(step_fn, optimizer, x: torch.Tensor, autocast, labels: torch.Tensor | None = None) -> torch.Tensor:
    """One optimizer step on batch ``x`` (labels default to ``x``: the model shifts them);
    returns the detached loss (no host sync)."""
    with autocast():
        _, loss = step_fn(x, labels=x if labels is None else labels)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


@dataclass
class _Trial:
    """The state ``run_trial``'s steps share."""

    spec: TrialSpec
    options: TrainOptions
    device: torch.device
    train: Any
    val: Any
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    step: int = 0
    curve: list[dict[str, Any]] = field(default_factory=list)
    wall_before: float = 0.0
    resumed: bool = False


def _setup(spec: TrialSpec, workload: Any, options: TrainOptions) -> _Trial:
    if options.threads:
        torch.set_num_threads(options.threads)
    device = torch.device(options.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(spec.seed)  # before the model is built: its init is a function of the seed
    train, val = workload.open_data(spec)
    model = workload.build_model(spec).to(device)
    optimizer = make_optimizer(model, device, options.weight_decay, spec.lr)
    return _Trial(spec, options, device, train, val, model, optimizer)


def _resume(trial: _Trial, resume_from: str | os.PathLike[str]) -> None:
    state = torch.load(Path(resume_from) / CHECKPOINT_FILE, map_location=trial.device, weights_only=False)
    trial.model.load_state_dict(state["model"])
    trial.optimizer.load_state_dict(state["optimizer"])
    trial.step, trial.curve, trial.wall_before = state["step"], state["curve"], state.get("wall_s", 0.0)
    torch.set_rng_state(state["rng_cpu"])
    trial.resumed = True


def _write_checkpoint(trial: _Trial, root: str | os.PathLike[str] | None, wall_s: float) -> Path:
    directory = Path(tempfile.mkdtemp(prefix=f"ckpt_{trial.step:08d}_", dir=root))
    torch.save(
        {
            "model": trial.model.state_dict(),
            "optimizer": trial.optimizer.state_dict(),
            "step": trial.step,
            "curve": trial.curve,
            "wall_s": wall_s,
            "rng_cpu": torch.get_rng_state(),
        },
        directory / CHECKPOINT_FILE,
    )
    return directory


def _loop(trial: _Trial, t_start: float, save_checkpoint, checkpoint_root) -> str:
    """Train to ``spec.steps``; returns "ok" or "diverged" (a non-finite mean training loss)."""
    spec, options, device = trial.spec, trial.options, trial.device
    autocast = autocast_for(device)
    step_fn = torch.compile(trial.model) if options.compile else trial.model
    batches = BatchStream(trial.train, BatchOrder(len(trial.train), spec.batch_size, spec.seed),
                          spec.steps, spec.seq_len, device)
    last_ckpt = time.perf_counter()
    running = torch.zeros((), device=device)
    since_log = 0
    status = "ok"
    try:
        while trial.step < spec.steps:
            for group in trial.optimizer.param_groups:
                group["lr"] = lr_at(trial.step, spec)
            x, y = batches.get(trial.step)
            for hook in options.step_hooks:
                hook(StepContext(spec, trial.step, trial.model, trial.optimizer, trial.resumed))
            running += train_step(step_fn, trial.optimizer, x, autocast, labels=y)
            since_log += 1
            trial.step += 1
            # Host syncs only every log_every steps (a .item() per step stalls a GPU pipeline).
            if trial.step % options.log_every == 0 or trial.step == spec.steps:
                mean = float(running) / since_log
                running.zero_()
                since_log = 0
                trial.curve.append({"step": trial.step, "tokens": trial.step * spec.batch_size * spec.seq_len,
                                    "train_loss": mean})
                if not math.isfinite(mean):
                    status = "diverged"
                    break
            if save_checkpoint is not None and time.perf_counter() - last_ckpt >= options.checkpoint_every_s:
                wall = trial.wall_before + time.perf_counter() - t_start
                ckpt_dir = _write_checkpoint(trial, checkpoint_root, wall)
                save_checkpoint(ckpt_dir, {"step": trial.step,
                                           "train_loss": trial.curve[-1]["train_loss"] if trial.curve else None})
                last_ckpt = time.perf_counter()
    finally:
        batches.close()
    return status


def _record(trial: _Trial, status: str, loss_val: float | None, train_s: float, steps_run: int,
            t_start: float) -> dict[str, Any]:
    spec = trial.spec
    trained_tokens = trial.step * spec.batch_size * spec.seq_len
    last = trial.curve[-1]["train_loss"] if trial.curve else None
    metrics = spec.record()
    metrics["n"] = count_parameters(trial.model)  # the model contract; equals the planned n (tested)
    metrics.update(
        loss=loss_val,
        train_loss=last if last is not None and math.isfinite(last) else None,
        status=status,
        tokens=trained_tokens,
        flops=trained_tokens * spec.flops_per_token,
        **spec.flops_columns(trained_tokens),
        tokens_per_s=steps_run * spec.batch_size * spec.seq_len / max(train_s, 1e-9),
        wall_s=trial.wall_before + time.perf_counter() - t_start,
        node_id=os.environ.get("FLOPS_FIT_NODE_ID") or platform.node(),
        curve=json.dumps(trial.curve),
        error=None if status == "ok" else f"non-finite training loss by step {trial.step}",
    )
    return metrics


def run_trial(
    spec: TrialSpec,
    workload: Any,
    options: TrainOptions | None = None,
    *,
    resume_from: str | os.PathLike[str] | None = None,
    save_checkpoint: Callable[[Path, dict[str, Any]], None] | None = None,
    checkpoint_root: str | os.PathLike[str] | None = None,
) -> TrialOutcome:
    """Train ``spec`` and return its metrics.

    ``workload`` has ``build_model(spec)`` and ``open_data(spec) -> (train, val)``; the
    datasets answer ``get_batch(indices)`` with a tensor (labels = inputs) or an
    ``(inputs, labels)`` pair. ``resume_from``: a directory holding a previous
    ``save_checkpoint`` state. Every ``checkpoint_every_s`` seconds the trial writes its
    state into a fresh directory under ``checkpoint_root`` and hands it to
    ``save_checkpoint(dir, progress_metrics)`` (the Ray layer turns that into
    ``tune.report(..., checkpoint=...)``).
    """
    options = options or TrainOptions()
    t_start = time.perf_counter()
    trial = _setup(spec, workload, options)
    if resume_from is not None:
        _resume(trial, resume_from)
    step_at_start, t_train = trial.step, time.perf_counter()
    status = _loop(trial, t_start, save_checkpoint, checkpoint_root)
    train_s = time.perf_counter() - t_train
    loss_val = None
    if status == "ok":
        loss_val = evaluate(trial.model, trial.val, trial.device, options.eval_batch_size, autocast_for(trial.device))
        if not math.isfinite(loss_val):
            status, loss_val = "diverged", None
    metrics = _record(trial, status, loss_val, train_s, trial.step - step_at_start, t_start)
    return TrialOutcome(status=status, metrics=metrics)
