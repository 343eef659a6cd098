"""A trial on k data-parallel workers: Ray Train's ``TorchTrainer`` run from inside the Tune
trial (Ray 2.60's pattern for Train inside Tune, Train V2; the old ``Tuner(trainer)`` form is
deprecated), each worker one process with the rule's CPUs and GPUs, across nodes if need be.

Ray Train starts the workers and their process group (gloo on CPU, NCCL on GPU); each runs
the same trainer as a one-process trial (``flops_fit.trainer.distributed`` splits every step's
batch, and shards the model over the workers, FSDP2, where the rule says so: a model one GPU
cannot hold, or ``--shard-model``). Rank 0 hands checkpoints to Ray Train, which keeps the latest in
``<sweep>/train/<trial id>/`` (shared storage on a cluster): a dead worker makes Ray Train
restart the whole group from it (``FailureConfig``), and a trial restarted by Tune (its
driver or node lost) finds the same run directory and continues from it too. Rank 0 also
writes the trial's final record, which the Tune trial then reports. Progress reaches Tune
through ``TuneReportCallback``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flops_fit.planning.grid import TrialSpec

if TYPE_CHECKING:
    from flops_fit.config import TrainOptions
    from flops_fit.planning.resources import ResourceRule
    from flops_fit.workloads.base import Workload

#: What the Tune trial itself holds while its workers train: one byte of memory. Any CPU share
#: would be missing from the workers' (two 1-CPU workers never start beside a 0.001-CPU trial
#: on a 2-CPU machine), and Tune refuses an empty request.
TRIAL_DRIVER_REQUEST = {"memory": 1.0}


def _train_worker(config: dict[str, Any]) -> None:
    """One worker's loop (Ray Train calls it on every rank)."""
    import torch

    from flops_fit.ray.compat import train_v2
    from flops_fit.ray.records import clean, finish_record
    from flops_fit.trainer.accelerator import cap_gpu_memory

    train = train_v2()
    spec: TrialSpec = TrialSpec.from_dict(config["spec"])
    rule: ResourceRule = config["resources"]
    # This worker's own GPU: the workers of one node may all see the node's GPUs, so a bare
    # "cuda" would put every rank on the first.
    device = train.get_device()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    options = dataclasses.replace(config["options"], device=str(device))
    cap_gpu_memory(rule.gpus_for(spec))
    resume = train.get_checkpoint()
    scratch = tempfile.mkdtemp(prefix="flops_fit_ckpt_")

    def save(directory: Path | None, progress: dict[str, Any]) -> None:
        # every rank reports; rank 0 with the checkpoint, the others with none (flops_fit.trainer.checkpoint.CheckpointTurns)
        train.report(clean({**progress, "status": "running"}),
                     checkpoint=train.Checkpoint.from_directory(str(directory)) if directory is not None else None)
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)

    try:
        with resume.as_directory() if resume is not None else contextlib.nullcontext() as resume_dir:
            metrics = config["workload"].run_trial(spec, options, resume_from=resume_dir,
                                                   save_checkpoint=save, checkpoint_root=scratch,
                                                   stem_dir=config["stem_dir"])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if train.get_context().get_world_rank() == 0:
        finish_record(Path(config["record_dir"]) / f"{spec.trial_id}.json", metrics, resumed=resume is not None,
                      gpus=rule.gpus_for(spec) * rule.workers_for(spec))


def train_on_workers(spec: TrialSpec, workload: Workload, options: TrainOptions, rule: ResourceRule,
                     record_dir: str, stem_dir: str | None, train_dir: str, max_failures: int) -> None:
    """Train ``spec`` on ``rule.workers_for(spec)`` workers; rank 0 writes its record in ``record_dir``."""
    from flops_fit.ray.compat import train_v2

    train = train_v2()
    request = rule.for_spec(spec)
    options = dataclasses.replace(options, shard_model=rule.shards_for(spec) > 1)  # FSDP2, else DDP
    trainer = train.TorchTrainer(
        _train_worker,
        train_loop_config={"spec": spec.to_dict(), "workload": workload, "options": options, "resources": rule,
                           "record_dir": record_dir, "stem_dir": stem_dir},
        scaling_config=train.ScalingConfig(num_workers=rule.workers_for(spec), use_gpu="GPU" in request,
                                           resources_per_worker=request),
        run_config=train.RunConfig(
            name=spec.trial_id,  # the same run directory on every attempt: a new one resumes from it
            storage_path=train_dir,
            failure_config=train.FailureConfig(max_failures=max_failures),
            checkpoint_config=train.CheckpointConfig(num_to_keep=1),
            callbacks=[train.TuneReportCallback()],
        ),
    )
    trainer.fit()
