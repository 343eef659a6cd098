"""The pieces of one optimizer step and of scoring a model: the optimizer, the step with its
gradient accumulation, and the held-out evaluation. torch only; ``flops_fit.trainer.trial``
runs them in order, ``flops_fit.trainer.throughput`` times the step alone."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from flops_fit.trainer.distributed import ONE_PROCESS, World, gradient_sync


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


@torch.no_grad()
def evaluate(model, val, device: torch.device, batch_size: int, autocast, world: World = ONE_PROCESS) -> float:
    """Mean next-token loss over every window of the fixed validation set. With several ranks
    each scores every k-th batch of windows and the sums are added: the same windows, once."""
    model.eval()
    total, count = 0.0, 0
    for start in range(world.rank * batch_size, len(val), batch_size * world.size):
        idx = np.arange(start, min(len(val), start + batch_size))
        x, y = pair_batch(val.get_batch(idx), device)
        with autocast():
            _, loss = model(x, labels=y)
        weight = x.shape[0] * (x.shape[1] - 1)
        total += float(loss) * weight
        count += weight
    model.train()
    total, count = world.sum([total, count], device)
    return total / count


def make_optimizer(model, device: torch.device, weight_decay: float, lr: float,
                   beta2: float = 0.95) -> torch.optim.Optimizer:
    """AdamW, weight decay on matrices only (not norm gains), betas (0.9, beta2): the trial's
    spec carries beta2 (``PlanConfig.beta2``)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, beta2),
        fused=device.type == "cuda",
    )


def train_step(step_fn, optimizer, x: torch.Tensor, autocast, labels: torch.Tensor | None = None,
               micro_batches: int = 1, scaler: Any = None) -> torch.Tensor:
    """One optimizer step on batch ``x`` (labels default to ``x``: the model shifts them);
    returns the detached loss (no host sync).

    ``micro_batches`` > 1 accumulates the gradient over that many equal slices of the batch
    (each loss scaled by 1/k): the same update as one pass over the whole batch, to float
    rounding, with a k-times smaller activation peak. Equal slices of full-length windows
    score equally many tokens, so the mean of the slice means is the batch mean. ``scaler``
    (a ``torch.amp.GradScaler``, fp16 only) scales the loss against underflow. A DDP
    ``step_fn`` all-reduces the gradients once, after the last slice's backward."""
    labels = x if labels is None else labels
    if x.shape[0] % micro_batches:
        raise ValueError(f"batch of {x.shape[0]} does not split into {micro_batches} equal micro-batches")
    total = torch.zeros((), device=x.device)
    for i, (xs, ys) in enumerate(zip(x.chunk(micro_batches), labels.chunk(micro_batches))):
        with gradient_sync(step_fn, last=i == micro_batches - 1):
            with autocast():
                _, loss = step_fn(xs, labels=ys)
            part = loss / micro_batches if micro_batches > 1 else loss
            (scaler.scale(part) if scaler is not None else part).backward()
        total += part.detach()
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total
