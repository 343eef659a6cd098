"""A Tune callback that prints one line per trial event: done/running/pending, losses, ETA.

The ETA is the expected cost (``engine.expected_cost``: FLOPs plus per-step overhead) of the
trials the sweep still expects to run, divided by the rate measured so far (cost trained per
second of sweep time, so concurrency and this machine's speed are in it); it is refined as each
trial finishes and shown from the first one on. The expected trials are asked for at every
line, because an adaptive sweep re-centres its budgets and adds trials as it runs: costed on
the grid planned at the start, its ETA counted trials that were replaced and never run, and
grew as the sweep neared its end. Trials that finished before a resume (replayed from their
records, or restored by Tune) cost no time now, so they are left out of the rate.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable

from ray import tune


class SweepProgress(tune.Callback):
    """Prints ``[done/total | running | pending] trial: event`` lines as the sweep moves."""

    def __init__(self, costs: Callable[[], dict[str, float]]):
        """``costs()``: trial id -> expected cost of every trial the sweep expects to run, now."""
        # No stream attribute: Tune pickles callbacks with the experiment state.
        self.costs = costs
        self.t0 = time.monotonic()
        self.finished: set[str] = set()
        self.trained: set[str] = set()  # finished by training in this driver: what the rate is measured on

    def eta_s(self, elapsed: float) -> float | None:
        """Seconds left at the measured rate; None before any trial trained."""
        costs = self.costs()
        done = sum(costs.get(t, 0.0) for t in self.trained)
        left = sum(c for t, c in costs.items() if t not in self.finished)
        if done <= 0 or elapsed <= 0:
            return None
        return left / (done / elapsed)

    @staticmethod
    def _id(trial: Any) -> str:
        return (trial.config or {}).get("spec", {}).get("trial_id", trial.trial_id)

    def _line(self, trials: list[Any], trial: Any, text: str) -> None:
        # Trials that ended before a resume are restored TERMINATED and never complete again:
        # count them from Tune's own list, or a resumed sweep ends at "7/9 done" with 9 ok.
        self.finished |= {self._id(t) for t in trials if t.status in ("TERMINATED", "ERROR")}
        running = sum(t.status == "RUNNING" for t in trials)
        pending = sum(t.status == "PENDING" for t in trials)
        spec_id = self._id(trial)
        total = len(set(self.costs()) | self.finished | {self._id(t) for t in trials})
        elapsed = time.monotonic() - self.t0
        eta = self.eta_s(elapsed)
        eta_text = "" if eta is None else f" | ETA {eta:.0f}s"
        print(
            f"[{elapsed:6.0f}s | {len(self.finished)}/{total} done | {running} running | {pending} pending{eta_text}] "
            f"{spec_id}: {text}",
            file=sys.stdout,
            flush=True,
        )

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trials, trial, "started")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if result.get("status") == "running" and result.get("train_loss") is not None:
            self._line(trials, trial, f"step {result.get('step')} train_loss {result['train_loss']:.4f}")

    def _finish(self, trial: Any) -> None:
        self.finished.add(self._id(trial))
        if not (trial.last_result or {}).get("replayed"):
            self.trained.add(self._id(trial))

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
