"""Size tables: which model sizes a workload can build, and their exact gpt_spec.

The planner asks a size table for the model closest to a target parameter count, that
model's total count ``n`` and its FLOPs per token under the budget's convention, and a
description of it to put in the ``TrialSpec``. Two tables exist: the reference GPT's (any
target maps to a shape by the closed-form shape rule, ``flops_fit.models.gpt_spec``) and a user
model's (a finite table of counts measured by building the model on the ``meta`` device,
``flops_fit.workloads.user``). Pure Python: no torch, no Ray, no numpy.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Hashable, Protocol

from flops_fit.errors import PlanError
from flops_fit.models import gpt_spec
from flops_fit.models.gpt_spec import ModelShape

if TYPE_CHECKING:
    from flops_fit.planning.config import PlanConfig

#: The smallest model a GPT grid uses: 16 wide, 1 layer (narrower models learn next to nothing).
MIN_D_MODEL = 16


@dataclass(frozen=True)
class SizeEntry:
    """What a TrialSpec records about one size, beyond ``n`` and its FLOPs per token."""

    model: dict[str, Any]
    """The workload's own description of the model (enough to build it on a worker)."""
    params: dict[str, int | None]
    """Parameter counts by group (``n``, ``n_non_embedding``, ...); None where unknown."""
    flops_per_token_by: dict[str, float]
    """Training FLOPs per token under every convention this model supports (``flops_6n``, ...)."""
    label: str
    """Short human name of the size (``64x1``, ``width=32``) for tables."""


class SizeTable(Protocol):
    """The planner's view of a workload's model sizes."""

    cfg: "PlanConfig"
    flops_convention: str
    floor_key: Hashable
    floor: float  # parameter count (in cfg.size_count) of the smallest model

    def pick(self, target: float) -> Hashable: ...
    def n(self, key: Any) -> int: ...
    def flops_per_token(self, key: Any) -> float: ...
    def entry(self, key: Any, target: float) -> SizeEntry: ...


def smallest_shape(cfg: "PlanConfig") -> ModelShape:
    return ModelShape(cfg.vocab_size, MIN_D_MODEL, 1, 1, gpt_spec.swiglu_hidden(MIN_D_MODEL), cfg.seq_len)


class GPTSizes:
    """Sizes of the reference GPT: any target count maps to a shape by the shape rule."""

    def __init__(self, cfg: "PlanConfig"):
        self.cfg = cfg
        self.flops_convention = cfg.flops_convention
        self.floor_key = smallest_shape(cfg)
        self.floor = float(gpt_spec.count_params(self.floor_key, cfg.size_count))

    def pick(self, target: float) -> ModelShape:
        if target <= self.floor:
            return self.floor_key
        return gpt_spec.shape_for_params(target, self.cfg.vocab_size, self.cfg.seq_len, count=self.cfg.size_count)

    def n(self, shape: ModelShape) -> int:
        return gpt_spec.param_groups(shape).total

    def flops_per_token(self, shape: ModelShape) -> float:
        return gpt_spec.flops_per_token(shape, self.cfg.seq_len, self.cfg.flops_convention)

    def entry(self, shape: ModelShape, target: float) -> SizeEntry:
        return SizeEntry(
            model={**dataclasses.asdict(shape), "target_params": target, "size_count": self.cfg.size_count},
            params=gpt_spec.param_groups(shape).as_dict(),
            flops_per_token_by=gpt_spec.all_flops_per_token(shape, self.cfg.seq_len),
            label=f"{shape.d_model}x{shape.num_layers}",
        )


class CountedSizes:
    """Sizes of a user's model: a finite table {size value: parameter count} measured by
    building the model; only the total count is known, so the budget convention is 6·N·D."""

    flops_convention = "6n"

    def __init__(self, cfg: "PlanConfig", size_param: str, counts: dict[Any, int]):
        if not counts:
            raise PlanError(f"no usable values of {size_param!r}: the model factory rejected every one tried")
        self.cfg, self.size_param = cfg, size_param
        self.values = sorted(counts, key=lambda v: counts[v])
        self.counts = counts
        self.floor_key = self.values[0]
        self.floor = float(counts[self.floor_key])

    def pick(self, target: float) -> Any:
        return min(self.values, key=lambda v: abs(math.log(self.counts[v] / target)))

    def n(self, value: Any) -> int:
        return self.counts[value]

    def flops_per_token(self, value: Any) -> float:
        return 6.0 * self.counts[value]

    def entry(self, value: Any, target: float) -> SizeEntry:
        n = self.counts[value]
        return SizeEntry(
            model={"size_param": self.size_param, "size_value": value},
            params={"n": n, "n_non_embedding": None},
            flops_per_token_by={"flops_6n": 6.0 * n},
            label=f"{self.size_param}={value}",
        )
