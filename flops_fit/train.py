"""One trial: a TrialSpec in, metrics out. torch only (no Ray), so it runs and tests alone.

The trial builds its GPT with ``create_model_for_scaling``, opens its TinyStories shards
lazily, trains for exactly ``spec.tokens`` tokens (whole steps of ``batch_size x seq_len``)
with AdamW and a warmup + cosine schedule sized to its own length (Hoffmann et al. 2022,
§3: a schedule longer than the run biases the loss of short runs upward), then evaluates
on the fixed held-out validation tokens that every trial shares. That validation loss is
the ``loss`` the fit uses.

Resumption: the batch at step k is a pure function of (seed, k), so a checkpoint needs only
model, optimizer, step and the running curve; a resumed trial sees exactly the batches an
uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from flops_fit.config import DataOptions, TrainOptions
from flops_fit.plan import TrialSpec

CHECKPOINT_FILE = "trial_state.pt"


@dataclass
class TrialOutcome:
    status: str  # ok | diverged
    metrics: dict[str, Any] = field(default_factory=dict)


def lr_at(step: int, spec: TrialSpec, min_ratio: float = 0.1) -> float:
    """Linear warmup, then cosine decay to ``min_ratio``·peak exactly at the last step."""
    if step < spec.warmup_steps:
        return spec.lr * (step + 1) / spec.warmup_steps
    progress = (step - spec.warmup_steps) / max(1, spec.steps - spec.warmup_steps)
    return spec.lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class BatchOrder:
    """Which windows form step k's batch: epoch-wise permutations seeded by (seed, epoch)."""

    def __init__(self, num_windows: int, batch_size: int, seed: int):
        self.n, self.b, self.seed = num_windows, batch_size, seed
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n)}
        return self._perms[epoch]

    def indices(self, step: int, stop: int | None = None) -> np.ndarray:
        """Windows of step ``step`` (or of steps ``step .. stop-1``, concatenated)."""
        flat = np.arange(step * self.b, (step + 1 if stop is None else stop) * self.b)
        epochs, offsets = np.divmod(flat, self.n)
        return np.concatenate([self._perm(int(e))[offsets[epochs == e]] for e in np.unique(epochs)])


class BatchStream:
    """Step k's batch, exactly ``train.get_batch(order.indices(k))``, but gathered ``ahead``
    steps per ``get_batch`` call: the gather's fixed numpy cost (45-190 us a step, up to 3%
    of a smoke-preset step; benchmarks/RESULTS.md) is paid once per chunk, not per step.

    With ``prefetch`` (on CUDA) the next chunk is gathered and pinned on a background thread
    while the GPU trains on this one (numpy's gathers release the GIL), and each step's slice
    goes to the GPU with a non-blocking copy: the loader leaves the critical path."""

    #: Tokens gathered per chunk (8 MiB of int64): small next to any model's memory.
    CHUNK_TOKENS = 1 << 20

    def __init__(self, data, order: BatchOrder, steps: int, seq_len: int, device: torch.device,
                 prefetch: bool | None = None):
        self.data, self.order, self.steps, self.device = data, order, steps, device
        self.ahead = max(1, min(64, self.CHUNK_TOKENS // max(1, order.b * seq_len)))
        self.lo = self.hi = 0
        self.x = self.y = None
        self.pin = device.type == "cuda"
        prefetch = self.pin if prefetch is None else prefetch
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="batches") if prefetch else None
        self._next: tuple[int, Any] | None = None

    def _gather(self, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.data.get_batch(self.order.indices(lo, hi))
        x, y = batch if isinstance(batch, (tuple, list)) else (batch, batch)
        same = y is x
        x = x.reshape(hi - lo, self.order.b, *x.shape[1:])
        x = x.pin_memory() if self.pin else x
        if same:
            return x, x
        y = y.reshape(hi - lo, self.order.b, *y.shape[1:])
        return x, (y.pin_memory() if self.pin else y)

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.lo <= step < self.hi:
            hi = min(self.steps, step + self.ahead)
            if self._next is not None and self._next[0] == step:
                self.x, self.y = self._next[1].result()
            else:
                self.x, self.y = self._gather(step, hi)
            self.lo, self.hi, self._next = step, hi, None
            if self._pool is not None and hi < self.steps:
                self._next = (hi, self._pool.submit(self._gather, hi, min(self.steps, hi + self.ahead)))
        same = self.y is self.x
        x = self.x[step - self.lo]
        y = x if same else self.y[step - self.lo]
        if self.device.type == "cuda":  # pinned source: the copy overlaps the running step
            x = x.to(self.device, non_blocking=True)
            y = x if same else y.to(self.device, non_blocking=True)
        return x, y

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def _open_data(spec: TrialSpec, data: DataOptions):
    from flops_fit.examples.tinystories import TinyStoriesDataset

    common = dict(
        seq_len=spec.seq_len,
        cache_dir=data.cache_dir,
        source=data.source,
        tokenizer_name=data.tokenizer_name,
        tokenizer=data.tokenizer_json,
        vocab_size=spec.vocab_size,
    )
    train = TinyStoriesDataset(split="train", num_tokens=spec.tokens, **common).prepare_data()
    val = TinyStoriesDataset(split="validation", num_tokens=data.val_tokens, **common).prepare_data()
    epochs = spec.tokens / max(1, len(train) * spec.seq_len)
    if epochs > data.max_epochs:
        raise ValueError(
            f"trial {spec.trial_id} needs {spec.tokens:,} tokens but the training split has "
            f"{len(train) * spec.seq_len:,}: {epochs:.1f} epochs > max_epochs={data.max_epochs}; "
            "use more data or raise max_epochs"
        )
    return train, val


def build_model(spec: TrialSpec):
    from flops_fit.examples.gpt import create_model_for_scaling

    model = create_model_for_scaling(
        spec.target_params, vocab_size=spec.vocab_size, max_seq_len=spec.seq_len, count=spec.size_count
    )
    built = model.config.shape
    if (built.d_model, built.num_layers, built.num_heads, built.d_ff) != (
        spec.d_model, spec.num_layers, spec.num_heads, spec.d_ff
    ):
        raise RuntimeError(f"trial {spec.trial_id}: built shape {built} differs from the planned one")
    return model


def _pair(batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
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


@torch.no_grad()
def evaluate(model, val, device: torch.device, batch_size: int, autocast) -> float:
    """Mean next-token loss over every window of the fixed validation set."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(val), batch_size):
        idx = np.arange(start, min(len(val), start + batch_size))
        x, y = _pair(val.get_batch(idx), device)
        with autocast():
            _, loss = model(x, labels=y)
        weight = x.shape[0] * (x.shape[1] - 1)
        total += float(loss) * weight
        count += weight
    model.train()
    return total / count


def _autocast(device: torch.device):
    """bf16 autocast on CUDA (tensor cores, fp32 master weights); plain fp32 on CPU."""
    if device.type == "cuda":
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


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


def train_step(step_fn, optimizer, x: torch.Tensor, autocast, poison: bool = False,
               labels: torch.Tensor | None = None) -> torch.Tensor:
    """One optimizer step on batch ``x`` (labels default to ``x``: the model shifts them);
    returns the detached loss (no host sync). ``poison`` turns the loss into NaN (the
    divergence fault drill)."""
    with autocast():
        _, loss = step_fn(x, labels=x if labels is None else labels)
    if poison:
        loss = loss * float("nan")
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def run_trial(
    spec: TrialSpec,
    data: DataOptions,
    options: TrainOptions | None = None,
    *,
    resume_from: str | os.PathLike[str] | None = None,
    save_checkpoint: Callable[[Path, dict[str, Any]], None] | None = None,
    checkpoint_root: str | os.PathLike[str] | None = None,
    workload: Any = None,
) -> TrialOutcome:
    """Train ``spec`` and return its metrics.

    ``resume_from``: a directory holding a previous ``save_checkpoint`` state. Every
    ``checkpoint_every_s`` seconds the trial writes its state into a fresh directory under
    ``checkpoint_root`` and hands it to ``save_checkpoint(dir, progress_metrics)`` (the Ray
    layer turns that into ``tune.report(..., checkpoint=...)``).

    ``workload``: an object with ``build_model(spec)`` and ``open_data(spec) -> (train, val)``
    replacing the reference GPT and TinyStories (``flops_fit.api``); datasets answer
    ``get_batch(indices)`` with a tensor (labels = inputs) or an ``(inputs, labels)`` pair.
    """
    options = options or TrainOptions()
    t_start = time.perf_counter()
    if options.threads:
        torch.set_num_threads(options.threads)
    device = torch.device(options.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    autocast = _autocast(device)
    torch.manual_seed(spec.seed)

    if workload is not None:  # a user's model and data (flops_fit.api.find_optimal)
        train, val = workload.open_data(spec)
        model = workload.build_model(spec).to(device)
    else:
        train, val = _open_data(spec, data)
        model = build_model(spec).to(device)
    optimizer = make_optimizer(model, device, options.weight_decay, spec.lr)
    step_fn = torch.compile(model) if options.compile else model

    step, curve, wall_before = 0, [], 0.0
    if resume_from is not None:
        state = torch.load(Path(resume_from) / CHECKPOINT_FILE, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, curve, wall_before = state["step"], state["curve"], state.get("wall_s", 0.0)
        torch.set_rng_state(state["rng_cpu"])

    faults = options.faults or {}
    diverge_at = faults.get("diverge", {}).get(spec.trial_id)
    kill_at = faults.get("kill", {}).get(spec.trial_id) if resume_from is None else None
    order = BatchOrder(len(train), spec.batch_size, spec.seed)
    batches = BatchStream(train, order, spec.steps, spec.seq_len, device)
    last_ckpt = time.perf_counter()
    running = torch.zeros((), device=device)
    since_log = 0
    t_train = time.perf_counter()
    step_at_start = step
    status = "ok"
    while step < spec.steps:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, spec)
        x, y = batches.get(step)
        if kill_at is not None and step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # fault drill: the worker dies mid-trial
        loss = train_step(step_fn, optimizer, x, autocast, poison=diverge_at is not None and step >= diverge_at,
                          labels=y)
        running += loss
        since_log += 1
        step += 1
        # Host syncs only every log_every steps (a .item() per step stalls a GPU pipeline).
        if step % options.log_every == 0 or step == spec.steps:
            mean = float(running) / since_log
            running.zero_()
            since_log = 0
            curve.append({"step": step, "tokens": step * spec.batch_size * spec.seq_len, "train_loss": mean})
            if not math.isfinite(mean):
                status = "diverged"
                break
        if save_checkpoint is not None and time.perf_counter() - last_ckpt >= options.checkpoint_every_s:
            wall = wall_before + time.perf_counter() - t_start
            ckpt_dir = _write_checkpoint(checkpoint_root, model, optimizer, step, curve, wall)
            save_checkpoint(ckpt_dir, {"step": step, "train_loss": curve[-1]["train_loss"] if curve else None})
            last_ckpt = time.perf_counter()
    batches.close()
    train_s = time.perf_counter() - t_train

    loss_val = evaluate(model, val, device, options.eval_batch_size, autocast) if status == "ok" else None
    if loss_val is not None and not math.isfinite(loss_val):
        status, loss_val = "diverged", None
    trained_tokens = step * spec.batch_size * spec.seq_len
    metrics = spec.record()
    metrics["n"] = count_parameters(model)  # the model contract; equals the closed form (tested)
    metrics.update(
        loss=loss_val,
        train_loss=curve[-1]["train_loss"] if curve and math.isfinite(curve[-1]["train_loss"]) else None,
        status=status,
        tokens=trained_tokens,
        flops=trained_tokens * spec.flops_per_token,
        **{k: v * trained_tokens for k, v in spec.flops_per_token_all().items()},
        tokens_per_s=(step - step_at_start) * spec.batch_size * spec.seq_len / max(train_s, 1e-9),
        wall_s=wall_before + time.perf_counter() - t_start,
        node_id=os.environ.get("FLOPS_FIT_NODE_ID") or platform.node(),
        curve=json.dumps(curve),
        error=None if status == "ok" else f"non-finite training loss by step {step}",
    )
    return TrialOutcome(status=status, metrics=metrics)


def _write_checkpoint(root, model, optimizer, step, curve, wall_s) -> Path:
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix=f"ckpt_{step:08d}_", dir=root))
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "curve": curve,
            "wall_s": wall_s,
            "rng_cpu": torch.get_rng_state(),
        },
        directory / CHECKPOINT_FILE,
    )
    return directory
