"""Warmup-stable-decay (WSD): one run per model size serves every budget it appears in.

Hägele et al. 2024 ("Scaling Laws and Compute-Optimal Training Beyond Fixed Training
Durations", §3-4) show that a constant learning rate followed by a short cooldown (1 - sqrt
shape, about a fifth of the run) reaches the loss of a cosine schedule sized to the same
length, at every length. So a size's points of several IsoFLOP budgets, (N, D_1) < (N, D_2)
< ..., need not be separate runs: one constant-rate *stem* runs on, and at (1 - f)·D_i a
*branch* cools down to D_i and is evaluated. OLMo-core's model ladder and Marin's scaling
suite build their scaling runs this way.

Here each branch is one trial (one row of the results table, a true (N, D_i) point): it
continues its stem from the state the previous branch kept at its own cooldown start, runs
the constant rate to its ``cooldown_start``, keeps the stem's state there, and cools down to
its ``steps``. What it trains itself is ``stem_start``..``steps``, so the sweep spends the
longest stem plus one cooldown per branch, not every point in full.

The sizes come from one geometric ladder shared by all budgets (:class:`LadderSizes`), so a
size of one budget is the same model, the same stem, in the next. Pure Python: no torch, no Ray.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import replace
from typing import Any, Hashable, Iterable, Sequence

from flops_fit.errors import PlanError
from flops_fit.planning.config import PlanConfig
from flops_fit.planning.rules import TrainingRules
from flops_fit.planning.sizes import SizeTable
from flops_fit.planning.spec import TrialSpec


class LadderSizes:
    """A size table whose every target snaps to one geometric ladder of rungs
    ``anchor·ratio^j`` before the inner table picks the model: budgets share sizes, so
    their points are branches of the same stems. ``ratio`` is the grid's own spacing
    (``span^(1/(points-1))``) and ``anchor`` the first budget's smallest target, so the
    smallest budget's grid is the cosine grid's."""

    def __init__(self, inner: SizeTable, anchor: float, ratio: float):
        self.inner, self.anchor, self.ratio = inner, anchor, ratio

    def rung(self, target: float) -> float:
        return self.anchor * self.ratio ** round(math.log(target / self.anchor) / math.log(self.ratio))

    def pick(self, target: float) -> Hashable:
        return self.inner.pick(self.rung(target))

    def entry(self, key: Any, target: float) -> Any:
        return self.inner.entry(key, self.rung(target))  # a worker rebuilds the model from the rung

    def __getattr__(self, name: str) -> Any:  # cfg, floor, n, flops_per_token, entry ...
        return getattr(self.inner, name)


def stem_id(spec: TrialSpec, base_seed: int) -> str:
    """One stem per model and seed: ``N<n>`` (``N<n>_s<seed>`` for a replicate's seed)."""
    return f"N{spec.n}" + (f"_s{spec.seed}" if spec.seed != base_seed else "")


def lr_multiplier(spec: TrialSpec, step: int, min_ratio: float = 0.1) -> float:
    """The learning rate at optimizer step ``step`` (0-based) as a fraction of ``spec.lr``.

    Both schedules warm up linearly over ``warmup_steps``. Cosine then decays to
    ``min_ratio`` exactly at its last step. WSD holds the peak until ``cooldown_start`` and
    then decays as 1 - sqrt(progress) to zero at ``steps`` (Hägele et al. 2024, §4: 1 - sqrt
    beats a linear cooldown of the same length)."""
    if step < spec.warmup_steps:
        return (step + 1) / spec.warmup_steps
    if spec.schedule == "wsd":
        if step < spec.cooldown_start:
            return 1.0
        return 1.0 - math.sqrt((step - spec.cooldown_start) / max(1, spec.steps - spec.cooldown_start))
    progress = (step - spec.warmup_steps) / max(1, spec.steps - spec.warmup_steps)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def to_branches(specs: Sequence[TrialSpec], cfg: PlanConfig, known: Iterable[TrialSpec] = ()) -> list[TrialSpec]:
    """The cosine-planned points ``specs`` (one per budget and size, on a ladder) as WSD
    branches of their sizes' stems; ``known`` are branches planned before (an adaptive
    sweep's earlier budgets), whose stems keep their batch and warmup.

    A stem has one batch for all its branches: the batch the budget rule gives the smallest
    budget it serves (``TrainingRules.batch``: that budget's DeepSeek batch, halved until its
    largest model gets ``min_steps``), so its first and shortest branch, the one with the fewest
    steps, keeps ``min_steps``; its later branches train more tokens at that batch rather than
    the larger one their own budgets would pick. Its warmup is its first branch's. Each branch
    then gets the steps of its own budget at the stem's batch, and the learning rate of that batch.
    """
    rules = TrainingRules(cfg)
    known = list(known)
    stems: dict[str, TrialSpec] = {}
    for spec in sorted([*known, *specs], key=lambda s: (s.schedule != "wsd", s.budget)):
        stems.setdefault(spec.stem or stem_id(spec, cfg.seed), spec)
    out = []
    for spec in specs:
        first = stems[stem_id(spec, cfg.seed)]
        batch = first.batch_size
        steps = max(1, round(spec.budget / spec.flops_per_token / (batch * cfg.seq_len)))
        if steps < cfg.min_steps:
            raise PlanError(f"budget {spec.budget:.3g}: the {spec.n:,}-parameter stem's batch of {batch} gives "
                            f"{steps} steps (< min_steps={cfg.min_steps})")
        cooldown = max(1, round(cfg.cooldown_fraction * steps))
        out.append(replace(spec, schedule="wsd", stem=stem_id(spec, cfg.seed), batch_size=batch, steps=steps,
                           lr=rules.lr(spec.n, batch * cfg.seq_len), warmup_steps=first.warmup_steps,
                           cooldown_start=max(first.warmup_steps, steps - cooldown)))
    return with_stem_starts(out, known)


def with_stem_starts(branches: Sequence[TrialSpec], known: Iterable[TrialSpec] = ()) -> list[TrialSpec]:
    """Each branch's ``stem_start`` (the latest cooldown start of its stem before its own: the
    state it continues, when a stem's branches run shortest first, as the sweep runs them) and
    ``stem_tokens`` (the longest branch of its stem, the data all of them draw from)."""
    starts, longest = defaultdict(set), defaultdict(int)
    for b in [*known, *branches]:
        starts[b.stem].add(b.cooldown_start)
        longest[b.stem] = max(longest[b.stem], b.tokens)
    return [replace(b, stem_start=max((s for s in starts[b.stem] if s < b.cooldown_start), default=0),
                    stem_tokens=longest[b.stem]) for b in branches]


def spent_flops(specs: Iterable[TrialSpec]) -> float:
    """What a plan trains: each trial's own share (a whole cosine run, a branch's segment)."""
    return sum(s.tokens_to_train * s.flops_per_token for s in specs)


def format_stems(specs: Sequence[TrialSpec]) -> str:
    """Per stem: batch, length, branch points and FLOPs, against the same points as separate
    cosine runs; then the sweep's totals. Empty for a plan without stems."""
    stems = defaultdict(list)
    for s in specs:
        if s.stem:
            stems[s.stem].append(s)
    if not stems:
        return ""
    header = f"{'stem':>16} {'size':>9} {'batch':>5} {'stem tokens':>12} {'branches (D tokens)':<44} {'FLOPs':>9} {'cosine':>9}"
    lines = [header, "-" * len(header)]
    for name, branches in sorted(stems.items(), key=lambda kv: (kv[1][0].n, kv[0])):
        branches.sort(key=lambda b: b.steps)
        last = branches[-1]
        points = " ".join(f"{b.tokens / 1e6:.3g}M" + ("+" if b.trial_id.endswith("_x") else "") for b in branches)
        lines.append(f"{name:>16} {last.label:>9} {last.batch_size:5d} {last.tokens:12,d} {points:<44} "
                     f"{spent_flops(branches):9.2e} {sum(b.flops for b in branches):9.2e}")
    spent, grid = spent_flops(specs), sum(s.flops for s in specs)
    extras = sum(s.trial_id.endswith("_x") for s in specs)
    lines.append(f"WSD trains {spent:.3e} FLOPs for these {len(specs)} points; as separate cosine runs they cost "
                 f"{grid:.3e} ({spent / grid:.2f}x)"
                 + (f"; + marks {extras} extra point(s) a stem serves for one cooldown" if extras else ""))
    return "\n".join(lines)


def stems_in_order(specs: Sequence[TrialSpec]) -> list[TrialSpec]:
    """``specs`` in their given order (a launch order), except that each stem's branches take
    its places shortest first: the order the stem gate can release them in."""
    by_stem = defaultdict(list)
    for s in specs:
        by_stem[s.stem].append(s)
    ordered = {stem: iter(sorted(group, key=lambda s: (s.steps, s.trial_id))) for stem, group in by_stem.items() if stem}
    return [next(ordered[s.stem]) if s.stem else s for s in specs]


class StemGate:
    """Releases each stem's branches one at a time, shortest first, so every branch finds
    the state it continues kept by the one before it. Trials without a stem pass straight
    through. The sweep's searcher pushes what the plan releases and asks for the next ready one."""

    def __init__(self) -> None:
        self.held: list[TrialSpec] = []
        self.running: dict[str, str] = {}  # stem -> the trial id of its running branch

    def push(self, spec: TrialSpec) -> None:
        self.held.append(spec)

    def pop_ready(self) -> TrialSpec | None:
        for i, spec in enumerate(self.held):
            if not spec.stem:
                return self.held.pop(i)
            shortest = min((s for s in self.held if s.stem == spec.stem), key=lambda s: (s.steps, s.trial_id))
            if spec.stem not in self.running and shortest is spec:
                self.running[spec.stem] = spec.trial_id
                return self.held.pop(i)
        return None

    def done(self, trial_id: str) -> None:
        for stem, running in list(self.running.items()):
            if running == trial_id:
                del self.running[stem]
