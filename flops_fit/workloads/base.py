"""The ``Workload`` protocol: what one kind of trial decides, so the engine has one path.

A workload answers, in the order the engine asks (``flops_fit.engine.sweep.run_sweep``):

1. ``prepare(plan)`` on the driver, once: train or load the tokenizer, measure model sizes;
2. ``size_table(plan)``: which sizes exist and their exact parameter/FLOPs accounting
   (``flops_fit.planning.sizes``; its ``cfg`` is the plan as this workload runs it, e.g. with the
   tokenizer's real vocabulary); ``plan(plan)`` is the IsoFLOP grid of ``TrialSpec`` over
   it (``flops_fit.planning.grid.plan``), and the trials an adaptive sweep or a verification run add
   are planned over the same table (``flops_fit.planning.grid.plan_trial``);
3. ``preflight(specs)``: everything checkable before any trial starts (one-line PlanError);
4. ``identity()``: what, besides the plan, makes two sweeps the same (the resume manifest);
5. ``run_trial(spec, options, ...)`` on a worker: the trial's results row (a WSD branch
   continues its stem from the state kept under ``stem_dir``).

The workload object is pickled to the workers after ``prepare``, so it carries what the
driver prepared (the serialised tokenizer, the measured sizes). Trained workloads
(``TrainedWorkload``) answer ``run_trial`` with the one trainer, ``flops_fit.trainer.trial``, and
supply ``build_model(spec)`` and ``open_data(spec)``. This module stays free of torch and Ray.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

if TYPE_CHECKING:
    from flops_fit.config import TrainOptions
    from flops_fit.planning.config import PlanConfig
    from flops_fit.planning.grid import TrialSpec
    from flops_fit.planning.sizes import SizeTable

SaveCheckpoint = Callable[[Path, dict[str, Any]], None]


class Workload(Protocol):
    kind: str
    trial_cpus: float | None
    """None: a trial holds the sweep's resources (``--cpus-per-trial``, ``--gpus-per-trial``);
    a number: the workload's trials compute no model (a simulated law) and ask Ray for just
    this share of a CPU and no GPU, whatever the real sweep would take."""

    def prepare(self, plan: "PlanConfig") -> None: ...
    def size_table(self, plan: "PlanConfig") -> "SizeTable": ...
    def plan(self, plan: "PlanConfig") -> list["TrialSpec"]: ...
    def preflight(self, specs: list["TrialSpec"]) -> None: ...
    def identity(self) -> dict[str, Any]: ...
    def run_trial(self, spec: "TrialSpec", options: "TrainOptions", *,
                  resume_from: str | os.PathLike[str] | None = None,
                  save_checkpoint: SaveCheckpoint | None = None,
                  checkpoint_root: str | os.PathLike[str] | None = None,
                  stem_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]: ...


class TrainedWorkload:
    """A workload whose trials really train: ``run_trial`` is ``flops_fit.trainer.trial.run_trial``
    with this workload's ``build_model`` and ``open_data``."""

    trial_cpus: float | None = None
    plateau_loss: float | None = None
    """A finished run whose validation loss is above this is recorded ``undertrained``
    (None: no such check; the reference GPT's preflight sets it from its text, flops_fit.data.baselines)."""

    def run_trial(self, spec: "TrialSpec", options: "TrainOptions", *,
                  resume_from: str | os.PathLike[str] | None = None,
                  save_checkpoint: SaveCheckpoint | None = None,
                  checkpoint_root: str | os.PathLike[str] | None = None,
                  stem_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        from flops_fit.trainer.trial import run_trial  # torch: only on the workers that train

        return run_trial(spec, self, options, resume_from=resume_from, save_checkpoint=save_checkpoint,
                         checkpoint_root=checkpoint_root, stem_dir=stem_dir).metrics
