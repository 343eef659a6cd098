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
from collections import defaultdict
from dataclasses import replace
from typing import Any, Callable, Sequence

from flops_fit.errors import PlanError
from flops_fit.planning.config import REPLICATED_SIZES, PlanConfig
from flops_fit.planning.rules import TrainingRules
from flops_fit.planning.schedule import LadderSizes, format_stems, stem_id, to_branches, with_stem_starts
from flops_fit.planning.sizes import GPTSizes, SizeTable
from flops_fit.planning.spec import MODEL_COLUMNS, TrialSpec

__all__ = ["MODEL_COLUMNS", "TrialSpec", "plan", "plan_budget", "plan_trial", "grid_targets", "format_plan"]


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
    sizes = sizes or GPTSizes(cfg)
    if cfg.schedule == "wsd":
        sizes = ladder(sizes)
    specs = [spec for budget in cfg.budgets for spec in plan_budget(budget, cfg, sizes)]
    specs += replicate_specs(specs, cfg.replicates)
    if cfg.schedule != "wsd":
        return specs
    # Replicates are the smallest budget's points on new seeds: stems of one branch each, so
    # they cost what cosine replicates cost (a replicate stem run on to larger budgets would
    # cost more than all of them together) and measure the seed noise of the same points.
    branches = to_branches(specs, cfg)
    return with_stem_starts([*branches, *extra_branches(branches, cfg, sizes)])


def ladder(sizes: SizeTable) -> LadderSizes:
    """The size ladder every budget of a WSD plan shares: the grid's own log spacing
    (``span^(1/(points-1))``), anchored at the smallest budget's smallest target, so the
    smallest budget's sizes are the cosine grid's."""
    cfg = sizes.cfg
    return LadderSizes(sizes, grid_targets(cfg.budgets[0], cfg, sizes)[0],
                       cfg.span ** (1 / (cfg.points_per_budget - 1)))


def extra_branches(branches: Sequence[TrialSpec], cfg: PlanConfig, sizes: SizeTable) -> list[TrialSpec]:
    """Points the stems give almost for free: for each budget, the next size up the ladder
    past its largest one, where that size's stem runs past this budget's token count anyway
    (it serves a larger budget), so the point costs one cooldown. Taken where it gets
    ``min_steps`` at the stem's batch; it widens the budget's valley on its large-N side."""
    ladder_sizes = sizes if isinstance(sizes, LadderSizes) else ladder(sizes)
    by_stem = defaultdict(list)
    for b in branches:
        by_stem[b.stem].append(b)
    extras = []
    for budget in sorted({b.budget for b in branches}):
        mine = [b for b in branches if b.budget == budget and b.seed == cfg.seed]
        if not mine:
            continue
        mine_stems = {b.stem for b in mine}
        largest = max(mine, key=lambda b: b.n)
        target = float(largest.params.get(cfg.size_count) or largest.n) * ladder_sizes.ratio
        try:
            candidate = plan_trial(budget, ladder_sizes.rung(target), largest.batch_size, cfg, ladder_sizes,
                                   suffix="_x")
        except PlanError:
            continue
        name = stem_id(candidate, cfg.seed)
        stem = by_stem.get(name, [])
        if name in mine_stems or not stem or max(s.tokens for s in stem) <= candidate.tokens:
            continue  # no stem of that size runs past this point: it would cost a run of its own
        try:
            (branch,) = to_branches([candidate], cfg, known=stem)
        except PlanError:
            continue  # fewer than min_steps at the stem's batch
        extras.append(branch)
    return extras


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
    stems = format_stems(specs)  # a WSD plan: what its stems train, against separate runs
    return "\n".join(lines + ([stems] if stems else []))


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,d}"
