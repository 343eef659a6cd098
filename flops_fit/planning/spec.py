"""``TrialSpec``: one planned trial, what a worker needs to run it and what its row records.

Pure Python: no torch, no Ray, no numpy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class TrialSpec:
    """One trial: a model and an exact token count for one budget.

    ``model`` is the workload's own description of the model (the reference GPT's shape and
    size target, or a user model's size value); ``params`` its parameter counts by group
    (None where a workload cannot know one); ``flops_per_token_by`` its FLOPs per token
    under every convention it supports.
    """

    trial_id: str
    budget: float
    seq_len: int
    batch_size: int
    steps: int
    lr: float
    warmup_steps: int
    flops_convention: str
    flops_per_token: float
    n: int
    seed: int
    model: dict[str, Any]
    params: dict[str, int | None]
    flops_per_token_by: dict[str, float]
    label: str = ""
    beta2: float = 0.95
    """AdamW beta2 (0.95 in plans written before the recipe; the planner sets ``PlanConfig.beta2``)."""
    schedule: str = "cosine"
    """``cosine`` (its own run) or ``wsd`` (a branch of its size's stem, ``flops_fit.planning.schedule``)."""
    stem: str = ""
    """WSD: the stem this branch cools down from (one per size and seed)."""
    cooldown_start: int = 0
    """WSD: the step its cooldown starts at; the stem's state there is kept for later branches."""
    stem_start: int = 0
    """WSD: the step the plan expects it to continue the stem from (the previous branch's
    ``cooldown_start``; 0 for a stem's first branch): where its trained FLOPs start."""
    stem_tokens: int = 0
    """WSD: the training tokens every branch of its stem draws its batches from (its longest
    branch's), so the batch at step k is the same in every branch and a branch continued from
    the stem's kept state trains exactly as one trained from the start."""

    #: Fields a cosine trial leaves at their defaults and out of ``to_dict``, so the manifests
    #: and adaptive logs of sweeps planned before WSD existed read the same.
    _WSD_FIELDS = ("schedule", "stem", "cooldown_start", "stem_start", "stem_tokens")

    @property
    def tokens(self) -> int:
        return self.steps * self.batch_size * self.seq_len

    @property
    def flops(self) -> float:
        return self.tokens * self.flops_per_token

    @property
    def tokens_to_train(self) -> int:
        """Tokens this trial trains itself: all of them, or a branch's from its stem's checkpoint."""
        return (self.steps - self.stem_start) * self.batch_size * self.seq_len

    @property
    def cooldown_tokens(self) -> int | None:
        return (self.steps - self.cooldown_start) * self.batch_size * self.seq_len if self.stem else None

    def flops_columns(self, tokens: int) -> dict[str, float]:
        """``flops_<convention>`` columns for ``tokens`` trained tokens."""
        return {k: v * tokens for k, v in self.flops_per_token_by.items()}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not self.stem:
            for name in self._WSD_FIELDS:
                d.pop(name)
        return d

    def record(self) -> dict[str, Any]:
        """The plan-side columns of this trial's results row (no outcome yet)."""
        return dict(
            trial_id=self.trial_id,
            budget=self.budget,
            **self.params,
            **{c: self.model.get(c) for c in MODEL_COLUMNS},
            seq_len=self.seq_len,
            batch_size=self.batch_size,
            lr=self.lr,
            steps=self.steps,
            seed=self.seed,
            flops_convention=self.flops_convention,
            tokens=self.tokens,
            flops=self.flops,
            **self.flops_columns(self.tokens),
            schedule=self.schedule,
            stem=self.stem or None,
            cooldown_tokens=self.cooldown_tokens,
            flops_trained=self.tokens_to_train * self.flops_per_token,
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrialSpec":
        return cls(**d)


#: Columns of the results table that describe a model's shape (null for a model without one).
MODEL_COLUMNS = ("d_model", "num_layers", "num_heads", "d_ff", "vocab_size")
