"""A Ray Tune ``Searcher`` that runs an adaptive IsoFLOP grid (``flops_fit.planning.adaptive``).

Tune asks ``suggest`` whenever it could start a trial (a custom searcher gets one pending
trial at a time) and reports each end to ``on_trial_complete``; the searcher hands both to an
:class:`~flops_fit.planning.adaptive.AdaptivePlan`, which owns every decision. ``slots`` (how many trials
the cluster runs at once) lets it tell a free slot from a full one: with a slot free and no
trial queued it releases the next budget on the estimate available now, so budgets overlap
and adapting never idles the sweep; with every slot busy it waits, so a later budget is
centred on as many finished results as possible.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune.search import Searcher

from flops_fit.config import SweepConfig
from flops_fit.engine.estimate import launch_order
from flops_fit.engine.sweep import SPEC_ID
from flops_fit.planning.adaptive import LOG, AdaptivePlan
from flops_fit.planning.resources import trial_slots
from flops_fit.planning.schedule import StemGate, stems_in_order

if TYPE_CHECKING:
    from flops_fit.planning.grid import TrialSpec
    from flops_fit.workloads.base import Workload


class FixedPlan:
    """A fixed grid behind the searcher's interface (a WSD grid needs the searcher's stem
    gate; a fixed cosine grid goes to Tune as a plain grid search): every trial up front, in
    launch order, and nothing decided from results."""

    max_trials = 0

    def __init__(self, specs: list[TrialSpec]):
        self.specs, self.queue, self.events = list(specs), stems_in_order(launch_order(specs)), []

    def next(self, free_slot: bool = True) -> TrialSpec | None:
        return self.queue.pop(0) if self.queue else None

    def complete(self, trial_id: str, status: str | None, loss: float | None) -> None:
        pass

    def finished(self) -> bool:
        return not self.queue

    def planned(self) -> list[TrialSpec]:
        return self.specs

    expected = planned

    def apply(self, event: dict[str, Any]) -> None:
        pass


class AdaptiveSearcher(Searcher):
    def __init__(self, plan: AdaptivePlan | FixedPlan, slots: int):
        # No metric: the plan reads each final record itself, and a Searcher with a metric makes
        # Tune reject the checkpoint reports of a training trial that carry no loss yet.
        super().__init__()
        self.plan = plan
        self.slots = max(1, int(slots))
        self.live: dict[str, str] = {}  # Tune trial id -> spec id, trials suggested and not ended
        self.gate = StemGate()  # a WSD stem's branches one at a time, shortest first

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.plan.finished() and not self.live and not self.gate.held:
            return Searcher.FINISHED
        spec = self.gate.pop_ready()
        while spec is None:
            released = self.plan.next(free_slot=len(self.live) < self.slots)
            if released is None:
                return None  # Tune asks again after the next result
            self.gate.push(released)
            spec = self.gate.pop_ready()
        self.live[trial_id] = spec.trial_id
        return {"spec": spec.to_dict()}

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        spec_id = self.live.pop(trial_id, None)
        if spec_id is None:
            return
        self.gate.done(spec_id)
        result = result or {}
        self.plan.complete(result.get(SPEC_ID, spec_id), None if error else result.get("status"),
                           None if error else result.get("loss"))

    # Tune snapshots a searcher with its experiment. The plan's own state is its decision log
    # (adaptive.json, written before each decision's trials run), which is what a restarted
    # driver replays; this snapshot holds the same events.
    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "w") as fh:
            json.dump({"events": self.plan.events}, fh)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path) as fh:
            for event in json.load(fh)["events"][len(self.plan.events):]:
                self.plan.apply(event)


def cluster_slots(cfg: SweepConfig) -> int:
    """Trials the cluster runs at once (``planning.resources.trial_slots`` on Ray's resources).
    An overestimate only releases a budget a little early."""
    import ray

    resources = ray.cluster_resources()
    gpus_per_trial = cfg.gpus_per_trial if isinstance(cfg.gpus_per_trial, float) else 0.0  # auto: shares differ
    workers = cfg.workers_per_trial if isinstance(cfg.workers_per_trial, int) else 1  # auto: counts differ
    return trial_slots(resources.get("CPU", 1), cfg.cpus_per_trial * workers, resources.get("GPU", 0),
                       gpus_per_trial * workers, cfg.max_concurrent_trials)


def adaptive_tune_config(cfg: SweepConfig, specs: list[TrialSpec], workload: Workload, run_dir: Path,
                         progress: bool) -> tuple[dict[str, Any], AdaptivePlan | FixedPlan]:
    """``TuneConfig`` keywords (``search_alg``, ``num_samples``) for a sweep whose trials the
    searcher releases (adaptive, or WSD with its stem gate), and its plan."""
    if not cfg.plan.adapt:
        fixed = FixedPlan(specs)
        return {"search_alg": AdaptiveSearcher(fixed, cluster_slots(cfg)), "num_samples": len(specs)}, fixed
    plan = AdaptivePlan(workload.size_table(cfg.plan), specs, Path(run_dir) / LOG, order=launch_order,
                        announce=(lambda line: print(line, flush=True)) if progress else None)
    # An upper bound Tune never reaches first: every budget's grid, the replicates, the additions.
    bound = len(cfg.plan.budgets) * cfg.plan.points_per_budget + cfg.plan.replicate_trials() + plan.max_trials
    return {"search_alg": AdaptiveSearcher(plan, cluster_slots(cfg)), "num_samples": bound}, plan
