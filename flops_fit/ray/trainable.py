"""The Ray Tune function trainable: one IsoFLOP trial wherever Ray places it.

Tune calls ``run_trial_on_worker(config, data=..., train_options=..., simulate=...)`` with
``config = {"spec": TrialSpec.to_dict()}``; the large or shared objects come through
``tune.with_parameters`` (NOTES-ray-hf.md). Checkpoints are reported with ``tune.report``
so a trial whose worker dies is rescheduled from its last one (``FailureConfig``).

A diverged trial returns normally with ``status="diverged"``: retrying a non-finite loss
with the same seed would diverge again, so it is recorded, not retried. Any exception
propagates and Tune retries the trial up to ``max_failures`` times.

A finished trial writes its final record to ``<record_dir>/<trial_id>.json`` (atomically,
before reporting it). Tune snapshots its experiment state at most every ~10 s, so a driver
killed shortly after a trial finished restores that trial as unfinished and starts it again;
the trial then finds its record and reports it instead of training again.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray import tune

if TYPE_CHECKING:
    from flops_fit.config import DataOptions, TrainOptions

from flops_fit.plan import TrialSpec

# flops_fit.train (torch) is imported inside the functions that need it: a simulated trial
# never pays torch's import time, and the driver can build the trainable without it.

#: Key under which a trial reports its record (Tune reserves ``trial_id`` and others).
SPEC_ID = "spec_id"


def _clean(metrics: dict[str, Any]) -> dict[str, Any]:
    """Tune wants plain, non-null values; map ``trial_id`` to ``spec_id`` (Tune owns trial_id)."""
    out = {k: v for k, v in metrics.items() if v is not None}
    if "trial_id" in out:
        out[SPEC_ID] = out.pop("trial_id")
    return out


def simulate_trial(spec: TrialSpec, law: dict[str, float]) -> dict[str, Any]:
    """The loss a known law gives this trial's (N, D), with seeded multiplicative noise."""
    import numpy as np

    from flops_fit.synthetic import ScalingLaw

    params = {k: law[k] for k in ("E", "A", "B", "alpha", "beta")}
    # The seed mixes the sweep seed with the trial's identity so repeats are reproducible.
    rng = np.random.default_rng([spec.seed, spec.n, spec.tokens])
    loss = ScalingLaw(**params).loss(spec.n, spec.tokens, rng=rng, noise=float(law.get("noise", 0.0)))
    record = spec.record()
    record.update(loss=float(loss), train_loss=float(loss), status="ok", wall_s=0.0, tokens_per_s=0.0)
    return record


def run_trial_on_worker(
    config: dict[str, Any],
    data: "DataOptions",
    train_options: "TrainOptions",
    simulate: dict[str, float] | None = None,
    workload: Any = None,
    record_dir: str | None = None,
) -> None:
    import ray

    spec = TrialSpec.from_dict(config["spec"])
    node_id = ray.get_runtime_context().get_node_id()
    if simulate is not None:
        tune.report(_clean({**simulate_trial(spec, simulate), "node_id": node_id}))
        return
    record = Path(record_dir) / f"{spec.trial_id}.json" if record_dir else None
    if record is not None and record.is_file():  # finished before the driver restarted: no training
        tune.report({**json.loads(record.read_text()), "replayed": True})
        return

    from flops_fit.train import run_trial

    checkpoint = tune.get_checkpoint()
    scratch = tempfile.mkdtemp(prefix="flops_fit_ckpt_")

    def save(directory, progress: dict[str, Any]) -> None:
        # tune.report copies the directory into the run's storage; then ours can go.
        tune.report(_clean({**progress, "status": "running"}), checkpoint=tune.Checkpoint.from_directory(str(directory)))
        shutil.rmtree(directory, ignore_errors=True)

    try:
        if checkpoint is not None:
            with checkpoint.as_directory() as resume_dir:
                outcome = run_trial(spec, data, train_options, resume_from=resume_dir,
                                    save_checkpoint=save, checkpoint_root=scratch, workload=workload)
        else:
            outcome = run_trial(spec, data, train_options, save_checkpoint=save, checkpoint_root=scratch,
                                workload=workload)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    metrics = outcome.metrics
    metrics["node_id"] = node_id
    metrics["resumed"] = checkpoint is not None
    if metrics.get("loss") is not None and not math.isfinite(metrics["loss"]):
        metrics["loss"] = None
    final = _clean(metrics)
    if record is not None:
        from flops_fit.results import atomic_write_text

        atomic_write_text(record, json.dumps(final))
    tune.report(final)
