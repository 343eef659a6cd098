"""The processes one trial trains on: one, or k data-parallel ranks (PyTorch DDP, or FSDP2
when the model is sharded over them).

torch only (no Ray): Ray Train starts the k processes and their process group
(``flops_fit.ray.workers``); here each rank trains its slice of every step's batch. The batch
at step s is still a pure function of (seed, s) (``flops_fit.trainer.batches``): all ranks draw
the same global batch and rank r takes its r-th of k equal contiguous slices, so the tokens
a step trains are those of the one-process trial, whatever k is. DDP averages the ranks'
gradients, and the mean of k equal slices' mean losses is the batch's mean loss: the same
update as one process, to float summation order (``tests/test_distributed.py`` measures by how
much).

Sharded (``TrainOptions.shard_model``; FSDP2, Zhao et al. 2023): each block, then the root, is
``fully_shard``-ed, so a rank holds a k-th of the weights, gradients and AdamW moments and
gathers one block's weights at a time; the gradients are reduce-scattered as averages, the
same update as DDP's. A checkpoint is the full state gathered on rank 0 and restored by rank 0
broadcasting it (``torch.distributed.checkpoint.state_dict``): the model's keys are the
unsharded model's, the optimizer's are keyed by parameter name, so a sharded trial resumes
sharded (its worker count comes from its plan, which a rerun repeats).

Every decision that changes what a rank does next is the same on every rank: the mean
training loss a non-finite value stops on is the ranks' all-reduced mean, and whether a
checkpoint starts or is handed over is rank 0's answer, shared by an all-reduce at each log
point, so every rank calls ``ray.train.report`` equally often (Ray Train requires it).
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
    sharded: bool = False

    @classmethod
    def current(cls, shard_model: bool = False) -> World:
        """The initialized process group's ranks, else one process (never sharded)."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return cls(dist.get_rank(), dist.get_world_size(), shard_model)
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

    def place(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """``model`` on ``device``; sharded, each rank keeps its k-th there (built on the host,
        so the whole model is never on one GPU)."""
        if not self.sharded:
            return model.to(device)
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(device.type, (self.size,))
        for block in getattr(model, "blocks", ()):  # the reference GPT's units; another model shards whole
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)  # moves each rank's shards to the mesh's device
        return model

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """The module the training step calls: DDP over the ranks, or ``model`` itself (one
        process, or sharded: FSDP2 shards in place). The unwrapped ``model`` stays what
        checkpoints, evaluation and ``n()`` use, so a state saved with k ranks restores with
        any other k."""
        if self.size == 1 or self.sharded:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def state(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict] | None:
        """(model, optimizer) state dicts to checkpoint: rank 0's own, or sharded the full
        ones gathered to rank 0's host memory (a collective: every rank calls it; the others
        get None). Ranks of an unsharded trial other than 0 are not asked."""
        if not self.sharded:
            return model.state_dict(), optimizer.state_dict()
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        full = get_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return full if self.leads else None

    def load(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, model_state: dict | None,
             optimizer_state: dict | None) -> None:
        """Restore a checkpoint's state dicts; sharded, rank 0's (the others pass None) are
        broadcast and each rank keeps its shards (a collective)."""
        if not self.sharded:
            model.load_state_dict(model_state)
            optimizer.load_state_dict(optimizer_state)
            return
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        # One call each: set_state_dict would skip the model on a rank that passes none.
        options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
        set_model_state_dict(model, model_state or {}, options=options)
        set_optimizer_state_dict(model, optimizer, optimizer_state or {}, options=options)

    def sum(self, values: Sequence[float], device: torch.device) -> list[float]:
        """``values`` summed over the ranks (in float64)."""
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
    """Around one micro-batch's backward: DDP all-reduces (FSDP2 reduce-scatters) gradients
    only after the step's last micro-batch, so accumulating k slices costs one reduction."""
    set_sync = getattr(step_fn, "set_requires_gradient_sync", None)  # FSDP2
    if set_sync is not None:
        set_sync(last)
        yield
        return
    no_sync = getattr(step_fn, "no_sync", None)  # DDP
    with (no_sync() if no_sync is not None and not last else contextlib.nullcontext()):
        yield
