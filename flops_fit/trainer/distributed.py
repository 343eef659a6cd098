"""The processes one trial trains on: one, or k data-parallel ranks (PyTorch DDP).

torch only (no Ray): Ray Train starts the k processes and their process group
(``flops_fit.ray.workers``); here each rank trains its slice of every step's batch. The batch
at step s is still a pure function of (seed, s) (``flops_fit.trainer.batches``): all ranks draw
the same global batch and rank r takes its r-th of k equal contiguous slices, so the tokens
a step trains are those of the one-process trial, whatever k is. DDP averages the ranks'
gradients, and the mean of k equal slices' mean losses is the batch's mean loss: the same
update as one process, to float summation order (``tests/test_distributed.py`` measures by how
much).

Every decision that changes what a rank does next (stop on a non-finite loss, start or hand
over a checkpoint) is taken on rank 0 and reaches the others in the one all-reduce at each
log point, so every rank calls ``ray.train.report`` equally often (Ray Train requires it).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This trial's ranks: ``size`` processes, this one ``rank`` (0 leads: it writes
    checkpoints, kept stems and the record)."""

    rank: int = 0
    size: int = 1

    @classmethod
    def current(cls) -> World:
        """The initialized process group's ranks, else one process."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def leads(self) -> bool:
        return self.rank == 0

    def rows(self, batch_size: int) -> int:
        """Sequences this rank trains a step (a k-th of the batch; the plan checks it divides)."""
        if batch_size % self.size:
            raise ValueError(f"a batch of {batch_size} sequences does not split into {self.size} equal "
                             "per-worker slices: the planner only plans batches that do")
        return batch_size // self.size

    def part(self, batch_size: int) -> slice:
        """This rank's contiguous rows of a step's global batch (all of them for one process)."""
        rows = self.rows(batch_size)
        return slice(self.rank * rows, (self.rank + 1) * rows)

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """The module the training step calls: DDP over the ranks, or ``model`` itself. The
        unwrapped ``model`` stays what checkpoints, evaluation and ``n()`` use, so a state
        saved with k ranks restores with any other k."""
        if self.size == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def sum(self, values: Sequence[float], device: torch.device) -> list[float]:
        """``values`` summed over the ranks (float64; the one collective at a log point)."""
        if self.size == 1:
            return list(values)
        t = torch.tensor(list(values), dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    def leader_flags(self, flags: Sequence[bool], device: torch.device) -> list[bool]:
        """Rank 0's ``flags`` on every rank."""
        if self.size == 1:
            return list(flags)
        summed = self.sum([float(f) if self.leads else 0.0 for f in flags], device)
        return [s > 0.5 for s in summed]


#: A trial in one process.
ONE_PROCESS = World()


@contextlib.contextmanager
def gradient_sync(step_fn: torch.nn.Module, last: bool) -> Iterator[None]:
    """Around one micro-batch's backward: DDP all-reduces gradients only after the step's
    last micro-batch (``no_sync`` before it), so accumulating k slices costs one all-reduce."""
    no_sync = getattr(step_fn, "no_sync", None)
    with (no_sync() if no_sync is not None and not last else contextlib.nullcontext()):
        yield
