"""An adaptive IsoFLOP grid: where to centre each budget, and which trials to add to one.

Pure planning (no torch, no Ray): the Tune searcher (``flops_fit.ray.searcher``) asks
:class:`AdaptivePlan` for the next trial and tells it each outcome; everything it decides is a
function of the finished results, and every decision is written to ``adaptive.json`` in the
sweep directory (atomically) before any of its trials runs, so a restarted driver replays the
same plan and finished trials replay their records instead of training again.

- Centring: budgets are released smallest first; each is centred on the best
  current estimate of N_opt: the tokens-per-parameter prior for the first, then the frontier
  of the budgets already finished: one budget's best run moved along N ∝ C^0.5 (the slope a
  fixed D/N prior implies; Hoffmann et al. 2022 find a ≈ 0.5), two or more: Approach 2's
  frontier through their minima (``flops_fit.fitting.isoflop.fit_isoflop``). The span keeps its
  meaning (largest/smallest size) and the floor rule of ``flops_fit.planning.grid.grid_targets``.
- Additions: a budget whose best run has fewer than two sizes on one side gets one or
  two more sizes past that edge at the grid's log spacing; where the edge cannot move (the
  smallest model, or ``min_steps`` at the budget's batch) the gap between the best run and its
  neighbour on that side is halved instead (``densify``). Two points each side pin both arms of
  the parabola Approach 2 fits (Hoffmann et al. 2022, §3.2). Capped by ``max_extra_trials`` and
  ``max_extra_flops`` (a fraction of the base grid's FLOPs).
- Slots stay busy: when no queued trial is left and a slot is free, the next budget is released
  on the estimate available then, rather than waiting for the current budget to settle.
"""

from __future__ import annotations

import itertools
import json
import math
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

from flops_fit.atomic import atomic_write_text
from flops_fit.errors import PlanError
from flops_fit.planning.config import PlanConfig
from flops_fit.planning.grid import TrialSpec, grid_targets, ladder, plan_budget, plan_trial, replicate_specs
from flops_fit.planning.schedule import stems_in_order, to_branches
from flops_fit.planning.sizes import SizeTable

#: The decisions of an adaptive sweep, in the sweep directory beside sweep.json.
LOG = "adaptive.json"
#: Slope of the one-budget estimate: N_opt ∝ C^0.5 under a fixed tokens-per-parameter prior.
A_PRIOR = 0.5
#: Sizes wanted on each side of a budget's best run (a grid of 3 or 4 sizes asks for one: an
#: interior best run, as it has no room for two).
MIN_SIDE = 2


#: Default cap on added trials, per budget (``PlanConfig.max_extra_trials=None``).
EXTRA_PER_BUDGET = 2


def min_side(points_per_budget: int) -> int:
    """Sizes wanted each side of the best run for a grid of ``points_per_budget`` sizes."""
    return min(MIN_SIDE, (points_per_budget - 1) // 2)

Point = tuple[float, float]  # (size in the plan's size_count, validation loss)


def additions(points: Sequence[Point], ratio: float, feasible: Callable[[float], bool],
              side_min: int = MIN_SIDE) -> list[tuple[float, str]]:
    """Size targets to add to one budget, each with its reason, so its best run has
    ``side_min`` sizes on each side. ``ratio`` is the grid's log spacing (size to next size);
    ``feasible(target)`` says whether a target plans a new trial (a new model, enough steps)."""
    pts = sorted(points)
    if len(pts) < 2:
        return []  # nothing to locate a minimum with (failed trials)
    best = min(range(len(pts)), key=lambda j: (pts[j][1], j))
    out: list[tuple[float, str]] = []
    for side, have, edge, step, neighbour in (
        ("low", best, pts[0][0], 1 / ratio, pts[best - 1][0] if best > 0 else None),
        ("high", len(pts) - 1 - best, pts[-1][0], ratio, pts[best + 1][0] if best + 1 < len(pts) else None),
    ):
        need = side_min - have
        if need <= 0:
            continue
        extend = list(itertools.takewhile(feasible, (edge * step**j for j in range(1, need + 1))))
        out += [(t, f"extend-{side}") for t in extend]
        if len(extend) < need and neighbour is not None:
            middle = math.sqrt(neighbour * pts[best][0])
            if feasible(middle):
                out.append((middle, "densify"))
    return out


def bracketed(points: Sequence[Point], side_min: int = MIN_SIDE) -> bool:
    """Whether the best run has ``side_min`` sizes on each side."""
    pts = sorted(points)
    if not pts:
        return False
    best = min(range(len(pts)), key=lambda j: (pts[j][1], j))
    return best >= side_min and len(pts) - 1 - best >= side_min


def frontier_estimate(finished: dict[float, list[Point]]) -> tuple[Callable[[float], float], str] | None:
    """N_opt(C) from the finished budgets' points, and how it was made; None without any."""
    best = {c: min(pts, key=lambda p: (p[1], p[0]))[0] for c, pts in sorted(finished.items()) if pts}
    if not best:
        return None
    if len(best) == 1:
        ((c0, x0),) = best.items()
        return (lambda c: x0 * (c / c0) ** A_PRIOR), f"best run of budget {c0:.3g} along a = {A_PRIOR}"
    from flops_fit.fitting.isoflop import fit_isoflop

    rows = [(c, x, loss) for c, pts in finished.items() for x, loss in pts]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an edge-flagged budget is expected here; the report says so later
        fit = fit_isoflop(*zip(*rows))
    if fit.usable:
        return (lambda c: float(fit.n_opt(c))), f"Approach-2 frontier of {len(best)} budgets, a = {fit.a:.3f}"
    # Fewer than two budgets with a usable parabola: a line through the best runs (log-log).
    lc, lx = [math.log(c) for c in best], [math.log(x) for x in best.values()]
    mc, mx = sum(lc) / len(lc), sum(lx) / len(lx)
    a = sum((u - mc) * (v - mx) for u, v in zip(lc, lx)) / sum((u - mc) ** 2 for u in lc)
    return (lambda c: math.exp(mx + a * (math.log(c) - mc))), f"line through {len(best)} best runs, a = {a:.3f}"


class AdaptivePlan:
    """The trials of an adaptive sweep, released as results arrive (see the module doc)."""

    def __init__(self, sizes: SizeTable, base: Sequence[TrialSpec], log_path: Path | None = None,
                 order: Callable[[list[TrialSpec]], list[TrialSpec]] = list,
                 announce: Callable[[str], None] | None = None):
        cfg: PlanConfig = sizes.cfg
        self.sizes, self.cfg = (ladder(sizes) if cfg.schedule == "wsd" else sizes), cfg
        self.order, self.announce, self.log_path = order, announce or (lambda line: None), log_path
        self.ratio = cfg.span ** (1 / (cfg.points_per_budget - 1))
        self.side_min = min_side(cfg.points_per_budget)
        self.max_trials = EXTRA_PER_BUDGET * len(cfg.budgets) if cfg.max_extra_trials is None else cfg.max_extra_trials
        self.base = list(base)
        self.max_flops = cfg.max_extra_flops * sum(s.flops for s in self.base)
        self.events: list[dict[str, Any]] = []
        self.specs: dict[str, TrialSpec] = {}
        self.origin: dict[str, str] = {}
        self.of_budget: dict[float, list[str]] = {}
        self.queue: list[str] = []
        self.outcome: dict[str, float | None] = {}  # trial id -> loss of an ok run, None otherwise
        self.settled: set[float] = set()
        self.notes: dict[float, str] = {}
        if log_path is not None and log_path.is_file():
            for event in json.loads(log_path.read_text())["events"]:
                self.apply(event)

    # --- what the searcher calls
    def next(self, free_slot: bool = True) -> TrialSpec | None:
        """The next trial to launch, or None to wait for results."""
        self._evaluate_all()
        if not self.queue and free_slot:
            waiting = [b for b in self.cfg.budgets if b not in self.of_budget]
            if waiting:
                self._release(waiting[0])
        return self.specs[self.queue.pop(0)] if self.queue else None

    def complete(self, trial_id: str, status: str | None, loss: float | None) -> None:
        if trial_id in self.specs:
            self.outcome[trial_id] = loss if status == "ok" and loss is not None and math.isfinite(loss) else None

    def finished(self) -> bool:
        self._evaluate_all()  # the last budget settles when its last result is in
        return len(self.settled) == len(self.cfg.budgets) and not self.queue

    def planned(self) -> list[TrialSpec]:
        return list(self.specs.values())

    def expected(self) -> list[TrialSpec]:
        """The trials the sweep expects to run, as it stands now: every one released so far, and
        the fixed grid's trials standing in for the budgets not released yet (each is re-centred
        when released, with the same FLOPs). What the progress lines' ETA is costed on."""
        return self.planned() + [s for s in self.base if s.budget not in self.of_budget]

    # --- decisions
    def _x(self, spec: TrialSpec) -> float:
        return float(spec.params.get(self.cfg.size_count) or spec.n)

    def _points(self, budget: float) -> list[Point]:
        """One point per model: the base seed's ok runs (replicates measure noise, not the valley)."""
        return [(self._x(s), self.outcome[s.trial_id]) for s in map(self.specs.get, self.of_budget[budget])
                if s.seed == self.cfg.seed and self.outcome.get(s.trial_id) is not None]

    def _estimate(self) -> tuple[Callable[[float], float], str] | None:
        settled = {b: self._points(b) for b in self.settled}
        if any(settled.values()):
            return frontier_estimate(settled)
        # Nothing settled yet (budgets overlap): any budget with three finished sizes says more than the prior.
        partial = {b: pts for b in self.of_budget if len(pts := self._points(b)) >= 3}
        return frontier_estimate(partial)

    def _release(self, budget: float) -> None:
        estimate = self._estimate()
        center, how = (estimate[0](budget), estimate[1]) if estimate else (None, "tokens-per-parameter prior")
        specs = plan_budget(budget, self.cfg, self.sizes, center=center)
        if budget == self.cfg.budgets[0]:
            specs += replicate_specs(specs, self.cfg.replicates)
        specs = self._as_run(specs)
        targets = grid_targets(budget, self.cfg, self.sizes, center)
        shown = center if center is not None else math.sqrt(targets[0] * targets[-1])  # the prior's centre
        xs = [self._x(s) for s in specs]
        why = (f"sizes {min(xs) / shown:.2g}x .. {max(xs) / shown:.2g}x N_opt estimate {shown:.3g} "
               f"({how})")
        origin = "grid" if center is None else "recentred"
        self._record({"budget": budget, "why": why, "trials": [[s.to_dict(), origin] for s in specs]})

    def _evaluate_all(self) -> None:
        for budget in sorted(self.of_budget):
            self._evaluate(budget)

    def _evaluate(self, budget: float) -> None:
        ids = self.of_budget[budget]
        if budget in self.settled or any(i not in self.outcome for i in ids):
            return
        batch = self.specs[ids[0]].batch_size  # one batch per budget (TrainingRules.batch)
        new: dict[float, TrialSpec] = {}  # target -> the trial it plans

        def feasible(target: float) -> bool:
            try:
                (spec,) = self._as_run([plan_trial(budget, target, batch, self.cfg, self.sizes)])
            except PlanError:
                return False  # fewer than min_steps at this budget's batch
            if spec.trial_id in self.specs or any(s.trial_id == spec.trial_id for s in new.values()):
                return False  # the same model (the smallest one, or a ladder's neighbour)
            new[target] = spec
            return True

        points = self._points(budget)
        wanted = additions(points, self.ratio, feasible, self.side_min)
        used = [s for s in self.specs.values() if self.origin[s.trial_id] not in ("grid", "recentred")]
        trials, flops = len(used), sum(s.flops for s in used)
        accepted = []
        for target, reason in wanted:
            spec = new[target]
            if trials + 1 > self.max_trials or flops + spec.flops > self.max_flops:
                self.notes[budget] = (f"budget {budget:.3g}: {len(wanted) - len(accepted)} more trial(s) wanted, "
                                      f"capped (max_extra_trials={self.max_trials}, "
                                      f"max_extra_flops={self.cfg.max_extra_flops:g} of the base grid's FLOPs)")
                break
            trials, flops = trials + 1, flops + spec.flops
            accepted.append([spec.to_dict(), reason])
        if accepted:
            best = min(points, key=lambda p: (p[1], p[0]))[0]
            below = sum(x < best for x, _ in points)
            why = f"best run at size {best:.3g} had {below} size(s) below and {len(points) - 1 - below} above"
            self._record({"budget": budget, "why": why, "trials": accepted})
            return
        if not wanted and not bracketed(points, self.side_min) and budget not in self.notes:
            self.notes[budget] = f"budget {budget:.3g}: best run at an edge no new size can move (floor or min_steps)"
        self.settled.add(budget)

    def _as_run(self, specs: list[TrialSpec]) -> list[TrialSpec]:
        """The trials as the schedule runs them: WSD branches of the stems planned so far
        (``flops_fit.planning.schedule.to_branches``), or cosine runs as planned."""
        if self.cfg.schedule != "wsd":
            return specs
        return to_branches(specs, self.cfg, known=self.specs.values())

    # --- the log
    def apply(self, event: dict[str, Any]) -> None:
        specs = [TrialSpec.from_dict(d) for d, _ in event["trials"]]
        for spec, (_, origin) in zip(specs, event["trials"]):
            self.specs[spec.trial_id] = spec
            self.origin[spec.trial_id] = origin
            self.of_budget.setdefault(event["budget"], []).append(spec.trial_id)
        self.queue += [s.trial_id for s in stems_in_order(self.order(specs))]
        self.events.append(event)

    def _record(self, event: dict[str, Any]) -> None:
        self.apply(event)
        if self.log_path is not None:  # before the trials run: a restarted driver replays this decision
            atomic_write_text(self.log_path, json.dumps({"events": self.events}, indent=1))
        self.announce(f"adaptive: budget {event['budget']:.3g}: {len(event['trials'])} trial(s) "
                      f"[{', '.join(sorted({o for _, o in event['trials']}))}]: {event['why']}")


def read_log(run_dir: Path) -> tuple[list[TrialSpec], dict[str, str], list[dict[str, Any]]] | None:
    """An adaptive sweep's planned trials, their origins and its decisions; None for a fixed grid."""
    path = Path(run_dir) / LOG
    if not path.is_file():
        return None
    events = json.loads(path.read_text())["events"]
    specs = [TrialSpec.from_dict(d) for e in events for d, _ in e["trials"]]
    origins = {s.trial_id: o for e in events for s, (_, o) in zip(
        [TrialSpec.from_dict(d) for d, _ in e["trials"]], e["trials"])}
    return specs, origins, events


def summary(events: Sequence[dict[str, Any]]) -> list[str]:
    """One line per added trial: which, and why."""
    return [f"added {d['trial_id']} ({origin}): budget {e['budget']:.3g}, {e['why']}"
            for e in events for d, origin in e["trials"] if origin not in ("grid", "recentred")]
