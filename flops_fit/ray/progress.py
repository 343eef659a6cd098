"""A Tune callback that prints one line per trial event: done/running/pending, losses, ETA.

The ETA schedules the work left onto the sweep's slots: each trial's expected cost
(``flops_fit.engine.estimate.expected_cost``: FLOPs plus per-step overhead) at the speed one
slot has measured (cost of the trials trained so far over their wall time, so this machine's
speed and the slots' contention are in it). A running trial holds its slot for what is left of its
expected time; the trials not started yet go, in the order the sweep expects to launch them,
to the slot that frees first; the ETA is when the last slot frees. Dividing the work left by
the aggregate rate instead assumes every slot stays busy to the end, and read about half the
time left while the sweep's last, largest trial ran alone in one of two slots.

The expected trials are asked for at every line, because an adaptive sweep re-centres its
budgets and adds trials as it runs: costed on the grid planned at the start, its ETA counted
trials that were replaced and never run, and grew as the sweep neared its end. Trials that
finished before a resume (replayed from their records, or restored by Tune) cost no time
now, so they are left out of the speed.
"""

from __future__ import annotations

import heapq
import sys
import time
from typing import Any, Callable

from ray import tune


class SweepProgress(tune.Callback):
    """Prints ``[done/total | running | pending] trial: event`` lines as the sweep moves."""

    def __init__(self, costs: Callable[[], dict[str, float]], clock: Callable[[], float] = time.monotonic):
        """``costs()``: trial id -> expected cost of every trial the sweep expects to run, now,
        in the order it expects to launch them. ``clock``: seconds (tests pass their own)."""
        # No stream attribute: Tune pickles callbacks with the experiment state.
        self.costs = costs
        self.clock = clock
        self.t0 = clock()
        self.finished: set[str] = set()
        self.started: dict[str, float] = {}  # trial id -> when it started in this driver
        self.trained: dict[str, float] = {}  # trained to the end in this driver -> its wall time
        self.slots = 1  # the most trials seen running at once

    def eta_s(self) -> float | None:
        """Seconds until the last slot frees; None before any trial trained."""
        costs = self.costs()
        measured = [(costs[t], wall) for t, wall in self.trained.items() if t in costs]
        busy = sum(wall for _, wall in measured)
        if not measured or busy <= 0:
            return None
        speed = sum(cost for cost, _ in measured) / busy  # cost per second of one slot
        now = self.clock()
        running = [t for t in self.started if t not in self.finished]
        frees = [max(costs.get(t, 0.0) / speed - (now - self.started[t]), 0.0) for t in running]
        frees += [0.0] * max(self.slots - len(frees), 0)
        heapq.heapify(frees)
        for t, cost in costs.items():
            if t not in self.finished and t not in self.started:
                heapq.heappush(frees, heapq.heappop(frees) + cost / speed)
        return max(frees, default=0.0)

    @staticmethod
    def _id(trial: Any) -> str:
        return (trial.config or {}).get("spec", {}).get("trial_id", trial.trial_id)

    def _line(self, trials: list[Any], trial: Any, text: str) -> None:
        # Trials that ended before a resume are restored TERMINATED and never complete again:
        # count them from Tune's own list, or a resumed sweep ends at "7/9 done" with 9 ok.
        self.finished |= {self._id(t) for t in trials if t.status in ("TERMINATED", "ERROR")}
        running = sum(t.status == "RUNNING" for t in trials)
        pending = sum(t.status == "PENDING" for t in trials)
        self.slots = max(self.slots, running)
        spec_id = self._id(trial)
        total = len(set(self.costs()) | self.finished | {self._id(t) for t in trials})
        elapsed = self.clock() - self.t0
        eta = self.eta_s()
        eta_text = "" if eta is None else f" | ETA {eta:.0f}s"
        print(
            f"[{elapsed:6.0f}s | {len(self.finished)}/{total} done | {running} running | {pending} pending{eta_text}] "
            f"{spec_id}: {text}",
            file=sys.stdout,
            flush=True,
        )

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.started[self._id(trial)] = self.clock()
        self._line(trials, trial, "started")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if result.get("status") == "running" and result.get("train_loss") is not None:
            self._line(trials, trial, f"step {result.get('step')} train_loss {result['train_loss']:.4f}")

    def _finish(self, trial: Any) -> None:
        tid = self._id(trial)
        self.finished.add(tid)
        result = trial.last_result or {}
        # Only a run trained to its last step measures a cost's time: a diverged one stopped
        # early, a failed one anywhere, a replayed one took no time.
        if tid in self.started and result.get("status") in ("ok", "undertrained") and not result.get("replayed"):
            self.trained[tid] = self.clock() - self.started[tid]

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial)
        result = trial.last_result or {}
        loss = result.get("loss")
        text = f"{result.get('status', 'done')}"
        if loss is not None:
            text += f", val loss {loss:.4f}"
        if result.get("wall_s"):
            text += f", {result['wall_s']:.1f}s, {result.get('tokens_per_s', 0):,.0f} tok/s"
        self._line(trials, trial, text)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial)
        self._line(trials, trial, "FAILED (retries exhausted)")
