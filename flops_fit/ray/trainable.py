"""The Ray Tune function trainable: one IsoFLOP trial wherever Ray places it.

Tune calls ``run_trial_on_worker(config, workload=..., train_options=..., record_dir=...)``
with ``config = {"spec": TrialSpec.to_dict()}``; the workload (pickled after the driver
prepared it) and the options come through ``tune.with_parameters``, so they travel once
through the object store. Every kind of trial takes this one path: the workload runs it
(``flops_fit.workloads``). Checkpoints are reported with ``tune.report`` so a trial whose
worker dies is rescheduled from its last one (``FailureConfig``).

A diverged trial returns normally with ``status="diverged"``: retrying a non-finite loss
with the same seed would diverge again, so it is recorded, not retried. Any exception
propagates and Tune retries the trial up to ``max_failures`` times.

A finished trial writes its final record to ``<record_dir>/<trial_id>.json`` (atomically,
before reporting it) and reports only a summary of it (``REPORTED``): the driver reads the row
from the record. Tune snapshots its experiment state at most every ~10 s, so a driver
killed shortly after a trial finished restores that trial as unfinished and starts it again;
the trial then finds its record and reports it instead of training again.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray import tune

from flops_fit.atomic import atomic_write_text
from flops_fit.engine.sweep import SPEC_ID
from flops_fit.planning.grid import TrialSpec
from flops_fit.results.table import FINISHED_STATUSES

if TYPE_CHECKING:
    from flops_fit.config import TrainOptions
    from flops_fit.planning.resources import ResourceRule
    from flops_fit.workloads.base import Workload


def _clean(metrics: dict[str, Any]) -> dict[str, Any]:
    """Tune wants plain, non-null values; map ``trial_id`` to ``spec_id`` (Tune owns trial_id)."""
    out = {k: v for k, v in metrics.items() if v is not None}
    if "trial_id" in out:
        out[SPEC_ID] = out.pop("trial_id")
    return out


#: What a finished trial reports to Tune: what the progress lines, the trackers and the searcher
#: read. The full row (some 45 columns and the curve) is the trial's record in the sweep
#: directory, which the driver reads; Tune keeps statistics of every numeric key it is sent in
#: its experiment state, rewritten at each snapshot (15 KB a trial for the full row).
REPORTED = (SPEC_ID, "status", "loss", "train_loss", "wall_s", "tokens_per_s", "n", "tokens", "flops", "budget",
            "resumed", "replayed", "error", "node_id")


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record[k] for k in REPORTED if k in record}


def read_record(record: Path, trial_id: str) -> dict[str, Any] | None:
    """A finished trial's record, or None when it is missing or damaged.

    A record that does not parse, or names another trial or no final status, is moved aside
    to ``<trial>.json.bad`` (kept for inspection) and the trial retrains, like a damaged shard.
    """
    if not record.is_file():
        return None
    try:
        data = json.loads(record.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get(SPEC_ID, trial_id) != trial_id or data.get("status") not in FINISHED_STATUSES:
            raise ValueError(f"does not match trial {trial_id}")
        return data
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        print(f"damaged finished-trial record {record} ({exc}); moved to {record.name}.bad, retraining",
              flush=True)
        record.replace(record.with_name(record.name + ".bad"))
        return None


def run_trial_on_worker(config: dict[str, Any], workload: "Workload", train_options: "TrainOptions",
                        record_dir: str, resources: "ResourceRule | None" = None, stem_dir: str | None = None) -> None:
    import ray

    spec = TrialSpec.from_dict(config["spec"])
    if resources is not None:
        from flops_fit.trainer.accelerator import cap_gpu_memory

        cap_gpu_memory(resources.gpus_for(spec))
    record = Path(record_dir) / f"{spec.trial_id}.json"
    replay = read_record(record, spec.trial_id)
    if replay is not None:  # finished before the driver restarted: no training
        tune.report(_summary({**replay, "replayed": True}))
        return
    checkpoint = tune.get_checkpoint()
    scratch = tempfile.mkdtemp(prefix="flops_fit_ckpt_")

    def save(directory, progress: dict[str, Any]) -> None:
        # tune.report copies the directory into the run's storage; then ours can go.
        tune.report(_clean({**progress, "status": "running"}), checkpoint=tune.Checkpoint.from_directory(str(directory)))
        shutil.rmtree(directory, ignore_errors=True)

    try:
        with checkpoint.as_directory() if checkpoint is not None else contextlib.nullcontext() as resume_dir:
            metrics = workload.run_trial(spec, train_options, resume_from=resume_dir, save_checkpoint=save,
                                         checkpoint_root=scratch, stem_dir=stem_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    context = ray.get_runtime_context()
    metrics["node_id"] = context.get_node_id()
    metrics["gpus"] = context.get_assigned_resources().get("GPU", 0.0)
    metrics["resumed"] = checkpoint is not None
    if metrics.get("loss") is not None and not math.isfinite(metrics["loss"]):
        metrics["loss"] = None
    final = _clean(metrics)
    atomic_write_text(record, json.dumps(final))
    tune.report(_summary(final))

