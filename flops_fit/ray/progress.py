"""A Tune callback that prints one line per trial event: done/running/pending, losses, ETA.

The ETA is the plan's expected cost of the trials not yet finished (``engine.expected_cost``:
FLOPs plus per-step overhead) divided by the rate measured so far (cost finished per second
of sweep time, so concurrency and this machine's speed are in it); it is refined as each
trial finishes and shown from the first one on."""

from __future__ import annotations

import sys
import time
from typing import Any

from ray import tune


class SweepProgress(tune.Callback):
    """Prints ``[done/total | running | pending] trial: event`` lines as the sweep moves."""

    def __init__(self, total: int, already_done: int = 0, costs: dict[str, float] | None = None):
        # No stream attribute: Tune pickles callbacks with the experiment state.
        self.total = total
        self.base = already_done
        self.done = already_done
        self.t0 = time.monotonic()
        self.last_loss: dict[str, float] = {}
        self.costs = dict(costs or {})
        self.finished: set[str] = set()

    def eta_s(self, elapsed: float) -> float | None:
        """Seconds left at the measured rate; None before any trial finished."""
        done = sum(self.costs.get(t, 0.0) for t in self.finished)
        left = sum(c for t, c in self.costs.items() if t not in self.finished)
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
        self.done = self.base + len(self.finished)
        running = sum(t.status == "RUNNING" for t in trials)
        pending = sum(t.status == "PENDING" for t in trials)
        spec_id = self._id(trial)
        # an adaptive sweep adds trials as it runs: count every distinct trial Tune knows
        total = max(self.total, self.base + len(self.finished | {self._id(t) for t in trials}))
        elapsed = time.monotonic() - self.t0
        eta = self.eta_s(elapsed)
        eta_text = "" if eta is None else f" | ETA {eta:.0f}s"
        print(
            f"[{elapsed:6.0f}s | {self.done}/{total} done | {running} running | {pending} pending{eta_text}] "
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
        self.done = self.base + len(self.finished)

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
