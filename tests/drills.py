"""Fault drills, as step hooks (``TrainOptions.step_hooks``): the production trainer holds no
drill code; these are shipped to the workers by value like any user code."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass


@dataclass(frozen=True)
class KillAt:
    """SIGKILL the worker process before step ``step`` of trial ``trial_id``, unless this
    attempt resumed from a checkpoint (so the retried attempt gets through). ``rank``: of a
    trial on several data-parallel workers, only that rank's process."""

    trial_id: str
    step: int
    rank: int | None = None

    def __call__(self, ctx) -> None:
        if ctx.spec.trial_id == self.trial_id and ctx.step == self.step and not ctx.resumed:
            if self.rank is None or _rank() == self.rank:
                os.kill(os.getpid(), signal.SIGKILL)


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_initialized() else 0


@dataclass(frozen=True)
class DivergeAt:
    """Fill every weight of trial ``trial_id`` with NaN before step ``step``: its loss is
    non-finite from then on, as in a real divergence."""

    trial_id: str
    step: int

    def __call__(self, ctx) -> None:
        if ctx.spec.trial_id == self.trial_id and ctx.step == self.step:
            import torch

            with torch.no_grad():
                for p in ctx.model.parameters():
                    p.fill_(float("nan"))
