"""``PlanConfig``: everything that decides a sweep's grid and its trials' training rules.

Pure Python: no torch, no Ray, no numpy, no file reads (a recipe named here is read when the
rules are applied, ``flops_fit.planning.rules``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from flops_fit.errors import PlanError
from flops_fit.models import gpt_spec
from flops_fit.planning.recipe import SQRT_BATCH_RULE

#: The learning-rate schedules a sweep can train with (``PlanConfig.schedule``).
SCHEDULES = ("cosine", "wsd")
#: Replicates re-run the smallest budget's this many central sizes with new seeds.
REPLICATED_SIZES = 3


@dataclass(frozen=True)
class PlanConfig:
    """Everything that decides the grid. Two sweeps with equal configs plan equal grids."""

    budgets: tuple[float, ...]
    """FLOPs budgets, under ``flops_convention``; sorted, distinct, positive, finite."""
    points_per_budget: int = 5
    """Model sizes per budget (at least 3 so a parabola has an interior minimum)."""
    tokens_per_param: float = 20.0
    """Prior for the optimum, D/N with N = all parameters (Chinchilla's ~20)."""
    span: float = 16.0
    """Ratio of the largest to the smallest model of a budget (in ``size_count``)."""
    size_count: str = "n"
    """Which parameter count the sizes are spaced in and targeted by (gpt_spec.PARAM_COUNTS)."""
    vocab_size: int = gpt_spec.DEFAULT_VOCAB_SIZE
    """The reference GPT's vocabulary (a trained tokenizer's real size replaces it)."""
    seq_len: int = 256
    flops_convention: str = gpt_spec.DEFAULT_FLOPS_CONVENTION
    min_steps: int = 50
    """Every trial gets at least this many optimizer steps, or the plan is refused."""
    max_batch_size: int = 512
    """Upper bound on sequences per step (memory, or a measured critical batch: ``tiny`` caps at 16)."""
    base_lr: float = 3e-3
    """Peak AdamW learning rate of a model with ``lr_n_ref`` parameters (see ``TrainingRules.lr``)."""
    lr_exponent: float = 0.0
    """The peak learning rate falls as n^-lr_exponent with the parameter count n."""
    lr_n_ref: float = 1e5
    """The parameter count ``base_lr`` is stated at."""
    lr_batch_ref: float | None = None
    """Tokens per optimizer step ``base_lr`` is stated at; None: the rate ignores the batch."""
    lr_batch_exponent: float = SQRT_BATCH_RULE
    """With ``lr_batch_ref``, the rate grows as (tokens per step)^lr_batch_exponent: Adam's
    square-root scaling rule (Malladi et al. 2022, "On the SDEs and Scaling Rules for Adaptive
    Gradient Algorithms"); measured on the tiny grid in docs/fitting.md."""
    rules_valid_to: float | None = None
    """The largest budget the training rules (``max_batch_size``, the learning-rate recipe) were
    measured at; a plan whose budgets go past it is refused in one line (a CPU demo's batch cap
    and rates do not hold at 1e19). None: no such limit. Setting a rule by hand lifts it."""
    beta2: float = 0.99
    """AdamW's second-moment decay. Porian et al. 2024 ("Resolving Discrepancies in
    Compute-Optimal Scaling", §4) find the usual 0.95 costs loss at small batches and that a
    higher beta2 is essential there; every batch of the CPU presets is 2-32 sequences."""
    schedule: str = "cosine"
    """``cosine``: every trial its own run, its cosine sized to its length (Hoffmann et al. 2022,
    §3). ``wsd``: warmup-stable-decay, one constant-rate stem per size on a shared ladder,
    cooled down at every token count it serves (``flops_fit.planning.schedule``)."""
    cooldown_fraction: float = 0.2
    """With ``schedule="wsd"``, the share of a branch's steps spent cooling down (1 - sqrt
    shape; Hägele et al. 2024 use 0.2, OLMo-core's ladder at least 0.1)."""
    recipe: str | None = None
    """A learning-rate recipe measured by ``flops-fit tune`` (a recipe.json path, or a built-in
    name such as ``tiny``): its rule replaces the ``lr_*`` fields and base_lr
    (``flops_fit.planning.rules.TrainingRules``), and it is saved with the sweep."""
    seed: int = 0
    replicates: int = 0
    """Extra seeds for each of the smallest budget's ``REPLICATED_SIZES`` central sizes: their spread measures
    the run-to-run noise σ the fits report and use (flops_fit.fitting.noise). The tiny and
    tinystories-gpu presets run 2; a grid you give exactly (and find_optimal, as v1.0) none."""
    adapt: bool = True
    """Adaptive grid (flops_fit.planning.adaptive): budgets run smallest first, each centred on the frontier of
    those finished, and trials are added where a budget's best run lacks two sizes on a side.
    False (--no-adapt): the fixed grid around the prior, every budget planned up front."""
    max_extra_trials: int | None = None
    """Cap on the trials an adaptive sweep adds, all budgets together (None: 2 per budget)."""
    max_extra_flops: float = 0.5
    """Cap on the FLOPs those added trials spend, as a fraction of the base grid's FLOPs."""

    def __post_init__(self) -> None:
        budgets = tuple(self.budgets)
        if not budgets:
            raise PlanError("no budgets given; pass at least one FLOPs budget, e.g. --budgets 1e12 3e12 1e13")
        for b in budgets:
            if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) or b <= 0:
                raise PlanError(f"budget {b!r} is not a positive finite number of FLOPs")
        if len(set(budgets)) != len(budgets):
            dup = sorted({b for b in budgets if budgets.count(b) > 1})
            raise PlanError(f"duplicate budgets {dup}; list each FLOPs budget once")
        object.__setattr__(self, "budgets", tuple(sorted(float(b) for b in budgets)))
        if not isinstance(self.points_per_budget, int) or self.points_per_budget < 3:
            raise PlanError(
                f"points_per_budget={self.points_per_budget!r}: need at least 3 sizes per budget "
                "to fit a parabola with an interior minimum"
            )
        if self.flops_convention not in gpt_spec.FLOPS_CONVENTIONS:
            raise PlanError(
                f"unknown flops_convention {self.flops_convention!r}; choose one of {gpt_spec.FLOPS_CONVENTIONS}"
            )
        if self.size_count not in gpt_spec.PARAM_COUNTS:
            raise PlanError(f"unknown size_count {self.size_count!r}; choose one of {gpt_spec.PARAM_COUNTS}")
        if self.rules_valid_to is not None and max(budgets) > self.rules_valid_to:
            raise PlanError(
                f"budgets up to {max(budgets):.3g} are past what this config's training rules were measured on "
                f"(up to {self.rules_valid_to:.3g}: batch at most {self.max_batch_size} sequences, learning rates "
                f"{'of recipe ' + repr(self.recipe) if self.recipe else 'set by hand'}); use --preset tinystories-gpu, "
                f"or set the rules for this scale (--max-batch-size, --recipe or --base-lr) or --rules-valid-to")
        if self.schedule not in SCHEDULES:
            raise PlanError(f"unknown schedule {self.schedule!r}; choose one of {SCHEDULES}")
        if not 0 < self.cooldown_fraction < 1:
            raise PlanError(f"cooldown_fraction must be in (0, 1) (0.2: Hägele et al. 2024), "
                            f"got {self.cooldown_fraction!r}")
        if not 0 < self.beta2 < 1:
            raise PlanError(f"beta2 must be in (0, 1), got {self.beta2!r}")
        if not (math.isfinite(self.lr_exponent) and abs(self.lr_exponent) < 2):
            raise PlanError(f"lr_exponent must be a finite number in (-2, 2), got {self.lr_exponent!r}")
        if not (math.isfinite(self.lr_batch_exponent) and 0 <= self.lr_batch_exponent <= 1):
            raise PlanError(f"lr_batch_exponent must be in [0, 1] (0.5: Adam's square-root rule), "
                            f"got {self.lr_batch_exponent!r}")
        positive = ("tokens_per_param", "base_lr", "lr_n_ref") + (("lr_batch_ref",) if self.lr_batch_ref is not None else ())
        for name in positive:
            if not getattr(self, name) > 0:
                raise PlanError(f"{name} must be positive, got {getattr(self, name)!r}")
        if not self.span > 1:
            raise PlanError(f"span must be > 1 (largest/smallest model ratio), got {self.span!r}")
        if isinstance(self.replicates, bool) or not isinstance(self.replicates, int) or self.replicates < 0:
            raise PlanError(f"replicates must be a whole number >= 0, got {self.replicates!r}")
        if self.max_extra_trials is not None and (isinstance(self.max_extra_trials, bool) or not isinstance(
                self.max_extra_trials, int) or self.max_extra_trials < 0):
            raise PlanError(f"max_extra_trials must be a whole number >= 0 (or unset: 2 per budget), "
                            f"got {self.max_extra_trials!r}")
        if not (self.max_extra_flops >= 0 and math.isfinite(self.max_extra_flops)):
            raise PlanError(f"max_extra_flops must be a fraction >= 0 of the base grid's FLOPs, "
                            f"got {self.max_extra_flops!r}")
        for name in ("vocab_size", "seq_len", "min_steps", "max_batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise PlanError(f"{name} must be a positive int, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["budgets"] = list(self.budgets)
        return d

    def replicate_trials(self) -> int:
        """Trials the replicates add: ``replicates`` seeds of ``REPLICATED_SIZES`` sizes."""
        return REPLICATED_SIZES * self.replicates
