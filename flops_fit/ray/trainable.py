"""The Ray Tune function trainable: one IsoFLOP trial wherever Ray places it.

Tune calls ``run_trial_on_worker(config, workload=..., train_options=..., record_dir=...)``
with ``config = {"spec": TrialSpec.to_dict()}``; the workload (pickled after the driver
prepared it) and the options come through ``tune.with_parameters``, so they travel once
through the object store. Every kind of trial takes this one path: the workload runs it
(``flops_fit.workloads``). Checkpoints are reported with ``tune.report`` so a trial whose
worker dies is rescheduled from its last one (``FailureConfig``). A trial on several
data-parallel workers (``--workers-per-trial``) runs them through Ray Train from here
(``flops_fit.ray.workers``).

A diverged trial returns normally with ``status="diverged"``: retrying a non-finite loss
with the same seed would diverge again, so it is recorded, not retried. Any exception
propagates and Tune retries the trial up to ``max_failures`` times.

A finished trial writes its final record (``flops_fit.ray.records``) and reports Tune only a
summary of it; the driver reads the row from the record. Tune snapshots its experiment state
at most every ~10 s, so a driver killed shortly after a trial finished restores that trial as
unfinished and starts it again; the trial then finds its record and reports it instead of
training again.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray import tune

from flops_fit.planning.grid import TrialSpec
from flops_fit.ray.records import clean, finish_record, read_record, summary

if TYPE_CHECKING:
    from flops_fit.config import TrainOptions
    from flops_fit.planning.resources import ResourceRule
    from flops_fit.workloads.base import Workload


def run_trial_on_worker(config: dict[str, Any], workload: "Workload", train_options: "TrainOptions",
                        record_dir: str, resources: "ResourceRule | None" = None, stem_dir: str | None = None,
                        train_dir: str | None = None, max_failures: int = 0) -> None:
    import ray

    spec = TrialSpec.from_dict(config["spec"])
    record = Path(record_dir) / f"{spec.trial_id}.json"
    replay = read_record(record, spec.trial_id)
    if replay is not None:  # finished before the driver restarted: no training
        tune.report(summary({**replay, "replayed": True}))
        return
    if resources is not None and resources.workers_for(spec) > 1:
        from flops_fit.ray.workers import train_on_workers

        train_on_workers(spec, workload, train_options, resources, record_dir, stem_dir, str(train_dir), max_failures)
        final = read_record(record, spec.trial_id)
        if final is None:
            raise RuntimeError(f"trial {spec.trial_id}: its workers finished without writing {record}")
        tune.report(summary(final))
        return
    if resources is not None:
        from flops_fit.trainer.accelerator import cap_gpu_memory

        cap_gpu_memory(resources.gpus_for(spec))
    checkpoint = tune.get_checkpoint()
    scratch = tempfile.mkdtemp(prefix="flops_fit_ckpt_")

    def save(directory, progress: dict[str, Any]) -> None:
        # tune.report copies the directory into the run's storage; then ours can go.
        tune.report(clean({**progress, "status": "running"}), checkpoint=tune.Checkpoint.from_directory(str(directory)))
        shutil.rmtree(directory, ignore_errors=True)

    try:
        with checkpoint.as_directory() if checkpoint is not None else contextlib.nullcontext() as resume_dir:
            metrics = workload.run_trial(spec, train_options, resume_from=resume_dir, save_checkpoint=save,
                                         checkpoint_root=scratch, stem_dir=stem_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    gpus = ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0)
    tune.report(summary(finish_record(record, metrics, resumed=checkpoint is not None, gpus=gpus)))
