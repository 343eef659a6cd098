"""Budgets -> an IsoFLOP grid of trial specs (Chinchilla Approach 2 data), with checks.

Pure Python: no torch, no Ray, no numpy. Which sizes exist and what each costs comes from
a size table (:mod:`flops_fit.sizes`): the reference GPT's exact closed form by default, or
the table a workload measured.

For each FLOPs budget C the grid holds ``points_per_budget`` model sizes spaced log-evenly
in the parameter count the fit uses (``size_count``, default all parameters) around the size
a tokens-per-parameter prior calls optimal; each size trains on D = C / FLOPs-per-token
tokens under the sweep's FLOPs convention, rounded to whole optimizer steps. The grid is
wide enough (``span``, max/min size ratio) that the loss-vs-size curve has an interior
minimum for a parabola fit (Hoffmann et al. 2022, §3.2, Fig. 3).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Sequence

from flops_fit import accounting
from flops_fit.errors import PlanError
from flops_fit.recipe import RULE_FIELDS, SQRT_BATCH_RULE, load, rule_lr
from flops_fit.sizes import GPTSizes, SizeTable


def deepseek_batch_tokens(budget: float) -> float:
    """Compute-optimal batch size in tokens, B = 0.292·C^0.3271 (DeepSeek LLM, Bi et al.
    2024, §3.1). It shrinks with the budget, which gives the large models of small
    budgets enough optimizer steps for an IsoFLOP valley to show."""
    return 0.292 * budget**0.3271


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
    """Which parameter count the sizes are spaced in and targeted by (accounting.PARAM_COUNTS)."""
    vocab_size: int = accounting.DEFAULT_VOCAB_SIZE
    """The reference GPT's vocabulary (a trained tokenizer's real size replaces it)."""
    seq_len: int = 256
    flops_convention: str = accounting.DEFAULT_FLOPS_CONVENTION
    min_steps: int = 50
    """Every trial gets at least this many optimizer steps, or the plan is refused."""
    max_batch_size: int = 512
    """Upper bound on sequences per step (memory, or a measured critical batch: ``tiny`` caps at 16)."""
    base_lr: float = 3e-3
    """Peak AdamW learning rate of a model with ``lr_n_ref`` parameters (see ``peak_lr``)."""
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
    beta2: float = 0.99
    """AdamW's second-moment decay. Porian et al. 2024 ("Resolving Discrepancies in
    Compute-Optimal Scaling", §4) find the usual 0.95 costs loss at small batches and that a
    higher beta2 is essential there; every batch of the CPU presets is 2-32 sequences."""
    recipe: str | None = None
    """A learning-rate recipe measured by ``flops-fit tune`` (a recipe.json path, or a built-in
    name such as ``tiny``): it sets the ``lr_*`` fields and base_lr, and is saved with the sweep."""
    seed: int = 0
    replicates: int = 0
    """Extra seeds for each of the smallest budget's three central sizes: their spread measures
    the run-to-run noise σ the fits report and use (flops_fit.noise). The tiny and
    tinystories-gpu presets run 2; a grid you give exactly (and find_optimal, as v1.0) none."""
    adapt: bool = True
    """Adaptive grid (flops_fit.adapt): budgets run smallest first, each centred on the frontier of
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
        if self.flops_convention not in accounting.FLOPS_CONVENTIONS:
            raise PlanError(
                f"unknown flops_convention {self.flops_convention!r}; choose one of {accounting.FLOPS_CONVENTIONS}"
            )
        if self.size_count not in accounting.PARAM_COUNTS:
            raise PlanError(f"unknown size_count {self.size_count!r}; choose one of {accounting.PARAM_COUNTS}")
        if self.recipe is not None:  # a measured rule sets the learning-rate constants
            for name, value in load(self.recipe).rule().items():
                object.__setattr__(self, name, None if value is None else float(value))
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

    @property
    def tokens(self) -> int:
        return self.steps * self.batch_size * self.seq_len

    @property
    def flops(self) -> float:
        return self.tokens * self.flops_per_token

    def flops_columns(self, tokens: int) -> dict[str, float]:
        """``flops_<convention>`` columns for ``tokens`` trained tokens."""
        return {k: v * tokens for k, v in self.flops_per_token_by.items()}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

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
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrialSpec":
        return cls(**d)


#: Columns of the results table that describe a model's shape (null for a model without one).
MODEL_COLUMNS = ("d_model", "num_layers", "num_heads", "d_ff", "vocab_size")


def _prior_optimum(budget: float, sizes: SizeTable) -> float:
    """Size target t where D/N(total) equals the prior; bisection in log t."""

    def tokens_per_param(t: float) -> float:
        key = sizes.pick(t)
        return budget / sizes.flops_per_token(key) / sizes.n(key)

    lo, hi = math.log(sizes.floor), math.log(1e13)
    if tokens_per_param(math.exp(lo)) <= sizes.cfg.tokens_per_param:
        return math.exp(lo)
    for _ in range(40):
        mid = (lo + hi) / 2
        if tokens_per_param(math.exp(mid)) > sizes.cfg.tokens_per_param:
            lo = mid
        else:
            hi = mid
    return math.exp((lo + hi) / 2)


def smallest_feasible_budget(cfg: PlanConfig, sizes: SizeTable | None = None) -> float:
    """The least budget whose smallest model still gets ``min_steps`` steps of one sequence."""
    sizes = sizes or GPTSizes(cfg)
    return sizes.flops_per_token(sizes.floor_key) * cfg.min_steps * cfg.seq_len


def budget_batch(budget: float, largest_tokens: float, cfg: PlanConfig) -> int:
    """Sequences per step for every trial of one budget: the DeepSeek rule's B(C) as a power
    of two, halved until the budget's largest model (``largest_tokens`` tokens, the fewest)
    still gets ``min_steps`` steps. One batch per budget, because B(C) is a function of the
    budget only and a batch that varies inside a budget would move its IsoFLOP valley."""
    batch = 2 ** max(0, round(math.log2(max(1.0, deepseek_batch_tokens(budget) / cfg.seq_len))))
    batch = min(batch, cfg.max_batch_size)
    while batch > 1 and largest_tokens / (batch * cfg.seq_len) < cfg.min_steps:
        batch //= 2
    return batch


def peak_lr(n: int, cfg: PlanConfig, batch_tokens: float | None = None) -> float:
    """The peak learning rate of a model with ``n`` parameters trained on ``batch_tokens``
    tokens a step: base_lr·(n/lr_n_ref)^-lr_exponent·(batch_tokens/lr_batch_ref)^lr_batch_exponent.

    One rule in the total parameter count for every workload (a user's model has no width to
    read). Its constants are measured, not guessed: ``flops-fit tune`` scans the learning
    rate at three sizes spanning a grid and fits this power law (Porian et al. 2024 fit the
    optimal AdamW learning rate as a power law in N the same way, §4; DeepSeek LLM, Bi et al.
    2024, in compute). The batch term matters because the batch grows with the budget
    (``budget_batch``): a rate measured at 2 sequences a step is half the best one at 16
    (docs/fitting.md), which the square-root rule (Malladi et al. 2022) restores."""
    return rule_lr(n, batch_tokens, **{k: getattr(cfg, k) for k in RULE_FIELDS})


def warmup_steps_for(n: int, batch: int, steps: int, cfg: PlanConfig) -> int:
    """Linear warmup over as many tokens as the model has parameters (Porian et al. 2024,
    §3.3: Kaplan's fixed 3000 steps is most of a small model's run and biased its optimum),
    capped at a tenth of the run: a trial of fewer tokens than parameters (the large end of a
    small budget) would otherwise spend the whole run warming up."""
    return max(1, min(round(n / (batch * cfg.seq_len)), round(0.1 * steps)))


def plan_trial(budget: float, target: float, batch: int, cfg: PlanConfig, sizes: SizeTable,
               suffix: str = "") -> TrialSpec:
    """The trial of ``budget`` at the size closest to ``target`` parameters, ``batch``
    sequences a step, its token budget rounded to whole steps. One planner for the grid, the
    trials an adaptive sweep adds and the verification run; refused below ``min_steps``."""
    key = sizes.pick(target)
    n, fpt = sizes.n(key), sizes.flops_per_token(key)
    steps = max(1, round(budget / fpt / (batch * cfg.seq_len)))
    if steps < cfg.min_steps:
        raise PlanError(
            f"budget {budget:.3g}: the model with {n:,} parameters would get {steps} optimizer steps "
            f"(< min_steps={cfg.min_steps}) even at batch {batch}; use a budget >= "
            f"{budget * cfg.min_steps / steps:.3g}, a smaller span, or a lower min_steps"
        )
    entry = sizes.entry(key, target)
    return TrialSpec(
        trial_id=f"C{budget:.2e}_N{n}{suffix}".replace("+", ""),
        budget=budget,
        seq_len=cfg.seq_len,
        batch_size=batch,
        steps=steps,
        lr=peak_lr(n, cfg, batch * cfg.seq_len),
        warmup_steps=warmup_steps_for(n, batch, steps, cfg),
        flops_convention=sizes.flops_convention,
        flops_per_token=fpt,
        n=n,
        seed=cfg.seed,
        model=entry.model,
        params=entry.params,
        flops_per_token_by=entry.flops_per_token_by,
        label=entry.label,
        beta2=cfg.beta2,
    )


def grid_targets(budget: float, cfg: PlanConfig, sizes: SizeTable, center: float | None = None) -> list[float]:
    """``points_per_budget`` size targets spaced log-evenly over ``span`` around ``center``
    (default: the prior optimum), never below the smallest model."""
    # When the centre sits near the smallest model, shift the grid up so it still spans its
    # full width (the smallest point at the floor) instead of collapsing.
    center = max(center or _prior_optimum(budget, sizes), sizes.floor * cfg.span**0.5)
    k = cfg.points_per_budget
    return [max(center * cfg.span ** (i / (k - 1) - 0.5), sizes.floor) for i in range(k)]


def plan_budget(budget: float, cfg: PlanConfig, sizes: SizeTable | None = None,
                center: float | None = None) -> list[TrialSpec]:
    """The IsoFLOP grid for one budget around ``center`` (default: the prior optimum), sizes
    merged when they round to the same model."""
    sizes = sizes or GPTSizes(cfg)
    floor = smallest_feasible_budget(cfg, sizes)
    if budget < floor:
        raise PlanError(
            f"budget {budget:.3g} FLOPs is too small: even the smallest model gets fewer than "
            f"min_steps={cfg.min_steps} steps; the smallest feasible budget is {floor:.3g}"
        )
    targets: dict[Any, float] = {}
    for target in grid_targets(budget, cfg, sizes, center):
        targets.setdefault(sizes.pick(target), target)  # merged: two targets rounded to the same model
    if len(targets) < 3:
        raise PlanError(
            f"budget {budget:.3g}: only {len(targets)} distinct model sizes after merging; "
            "raise span or the budget"
        )
    batch = budget_batch(budget, min(budget / sizes.flops_per_token(k) for k in targets), cfg)
    return sorted((plan_trial(budget, t, batch, cfg, sizes) for t in targets.values()), key=lambda s: s.n)


def plan(budgets: Sequence[float] | PlanConfig, points_per_budget: int = 5, *, sizes: SizeTable | None = None,
         **options: Any) -> list[TrialSpec]:
    """The whole sweep: every budget's grid, smallest budget first. Raises PlanError
    before anything runs when any part of the request is infeasible. ``sizes`` replaces the
    reference GPT's shape rule (``flops_fit.sizes.CountedSizes`` for a user's model)."""
    cfg = budgets if isinstance(budgets, PlanConfig) else PlanConfig(
        budgets=tuple(budgets), points_per_budget=points_per_budget, **options
    )
    specs = [spec for budget in cfg.budgets for spec in plan_budget(budget, cfg, sizes)]
    return specs + replicate_specs(specs, cfg.replicates)


def replicate_specs(specs: Sequence[TrialSpec], k: int) -> list[TrialSpec]:
    """``k`` seed-varied copies of the smallest budget's three central trials (cheapest runs,
    near the optimum where the fits look): same model and tokens, seeds seed+1 ... seed+k."""
    if k <= 0 or not specs:
        return []
    first = [s for s in specs if s.budget == min(t.budget for t in specs)]
    mid = len(first) // 2
    central = first[max(0, mid - 1): mid + 2]
    return [replace(s, trial_id=f"{s.trial_id}_s{s.seed + r}", seed=s.seed + r)
            for r in range(1, k + 1) for s in central]


def format_plan(specs: Sequence[TrialSpec], resources: Callable[[TrialSpec], str] | None = None) -> str:
    """The grid as a table a person can read, with the total FLOPs; ``resources(spec)``
    adds what each trial asks Ray for (``1c/0.25g``: one CPU, a quarter of a GPU)."""
    header = f"{'budget':>9} {'N':>11} {'N_non_emb':>10} {'size':>9} {'D tokens':>11} {'D/N':>7} {'steps':>6} {'batch':>5} {'lr':>8} {'FLOPs':>9} {'seed':>4}"
    header += f" {'resources':>10}" if resources else ""
    lines = [header, "-" * len(header)]
    for s in specs:
        lines.append(
            f"{s.budget:9.2e} {s.n:11,d} {_count(s.params.get('n_non_embedding')):>10} {s.label:>9} "
            f"{s.tokens:11,d} {s.tokens / s.n:7.2f} {s.steps:6d} {s.batch_size:5d} {s.lr:8.2e} {s.flops:9.2e} {s.seed:4d}"
            + (f" {resources(s):>10}" if resources else "")
        )
    total = sum(s.flops for s in specs)
    lines.append(f"{len(specs)} trials, total {total:.3e} FLOPs ({specs[0].flops_convention if specs else ''} convention)")
    return "\n".join(lines)


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,d}"
