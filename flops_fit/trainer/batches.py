"""Which training windows each optimizer step sees, and how they reach the device.

The batch at step k is a pure function of (seed, k): ``BatchOrder`` draws epoch-wise
permutations seeded by (seed, epoch), so a resumed trial sees exactly the batches an
uninterrupted one would. ``BatchStream`` gathers those batches a chunk of steps at a time.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch


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
                 prefetch: bool | None = None, rows: slice = slice(None)):
        self.data, self.order, self.steps, self.device = data, order, steps, device
        self.rows = rows
        """Which rows of each step's batch this process trains (a data-parallel rank's part)."""
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
        x = x.reshape(hi - lo, self.order.b, *x.shape[1:])[:, self.rows]
        x = x.pin_memory() if self.pin else x
        if same:
            return x, x
        y = y.reshape(hi - lo, self.order.b, *y.shape[1:])[:, self.rows]
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
