"""Budgets -> an IsoFLOP grid of trial specs (Chinchilla Approach 2 data), with checks.

Pure Python: no torch, no Ray, no numpy. Which sizes exist and what each costs comes from
a size table (:mod:`flops_fit.planning.sizes`): the reference GPT's exact closed form by default, or
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

from flops_fit.errors import PlanError
from flops_fit.planning.config import REPLICATED_SIZES, PlanConfig
from flops_fit.planning.rules import TrainingRules
from flops_fit.planning.sizes import GPTSizes, SizeTable


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
    rules = TrainingRules(cfg)
    return TrialSpec(
        trial_id=f"C{budget:.2e}_N{n}{suffix}".replace("+", ""),
        budget=budget,
        seq_len=cfg.seq_len,
        batch_size=batch,
        steps=steps,
        lr=rules.lr(n, batch * cfg.seq_len),
        warmup_steps=rules.warmup(n, batch, steps),
        flops_convention=sizes.flops_convention,
        flops_per_token=fpt,
        n=n,
        seed=cfg.seed,
        model=entry.model,
        params=entry.params,
        flops_per_token_by=entry.flops_per_token_by,
        label=entry.label,
        beta2=rules.beta2(),
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
    batch = TrainingRules(cfg).batch(budget, min(budget / sizes.flops_per_token(k) for k in targets))
    return sorted((plan_trial(budget, t, batch, cfg, sizes) for t in targets.values()), key=lambda s: s.n)


def plan(budgets: Sequence[float] | PlanConfig, points_per_budget: int = 5, *, sizes: SizeTable | None = None,
         **options: Any) -> list[TrialSpec]:
    """The whole sweep: every budget's grid, smallest budget first. Raises PlanError
    before anything runs when any part of the request is infeasible. ``sizes`` replaces the
    reference GPT's shape rule (``flops_fit.planning.sizes.CountedSizes`` for a user's model)."""
    cfg = budgets if isinstance(budgets, PlanConfig) else PlanConfig(
        budgets=tuple(budgets), points_per_budget=points_per_budget, **options
    )
    specs = [spec for budget in cfg.budgets for spec in plan_budget(budget, cfg, sizes)]
    return specs + replicate_specs(specs, cfg.replicates)


def replicate_specs(specs: Sequence[TrialSpec], k: int) -> list[TrialSpec]:
    """``k`` seed-varied copies of the smallest budget's ``REPLICATED_SIZES`` central trials
    (cheapest runs, near the optimum where the fits look): same model and tokens, seeds
    seed+1 ... seed+k."""
    if k <= 0 or not specs:
        return []
    first = [s for s in specs if s.budget == min(t.budget for t in specs)]
    mid = len(first) // 2
    lo = max(0, mid - (REPLICATED_SIZES - 1) // 2)
    central = first[lo: lo + REPLICATED_SIZES]
    return [replace(s, trial_id=f"{s.trial_id}_s{s.seed + r}", seed=s.seed + r)
            for r in range(1, k + 1) for s in central]


def format_plan(specs: Sequence[TrialSpec], resources: Callable[[TrialSpec], str] | None = None,
                resources_label: str = "resources") -> str:
    """The grid as a table a person can read, with the total FLOPs; ``resources(spec)``
    adds what each trial asks Ray for (``1c/0.25g``: one CPU, a quarter of a GPU), under
    ``resources_label`` ("real sweep" when a simulated design shows what training would take)."""
    header = f"{'budget':>9} {'N':>11} {'N_non_emb':>10} {'size':>9} {'D tokens':>11} {'D/N':>7} {'steps':>6} {'batch':>5} {'lr':>8} {'FLOPs':>9} {'seed':>4}"
    header += f" {resources_label:>10}" if resources else ""
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
