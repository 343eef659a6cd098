"""``sweep()`` on Ray: the engine (``flops_fit.engine.sweep``) with Ray Tune as its backend.

This module is only the Tune adapter: attach to (or start) Ray, turn the launch-ordered
specs into a Tune grid of the one trainable (``flops_fit.ray.trainable``), restore a
previous experiment on resume, and hand back what each trial reported. Planning,
storage, the manifest, row collection and the fits live in the engine.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flops_fit.config import SweepConfig, TrainOptions
from flops_fit.engine.estimate import expected_cost
from flops_fit.engine.storage import FINISHED_DIR, STEMS_DIR, TRAIN_DIR
from flops_fit.engine.sweep import SPEC_ID, TrialReport, resolve_config, run_sweep
from flops_fit.errors import PlanError, SweepInterrupted
from flops_fit.planning.grid import TrialSpec
from flops_fit.planning.resources import AUTO, ResourceRule
from flops_fit.ray.compat import (
    autoscaler_running,
    init_loopback_only,
    set_restored_callbacks,
    ship_by_value,
    shutdown_private_ray,
)
from flops_fit.ray.placement import ensure_placeable
from flops_fit.results.table import FINISHED_STATUSES
from flops_fit.trainer.throughput import local_gpu_bytes

if TYPE_CHECKING:
    from flops_fit.planning.recipe import Recipe
    from flops_fit.results.result import Result
    from flops_fit.workloads.base import Workload


def _ensure_ray(cfg: SweepConfig) -> str | None:
    """Attach to a cluster (address= or $RAY_ADDRESS; "auto" is the one `ray start` runs on
    this machine, as under `ray submit`) or start a private Ray in-process on loopback.

    A private runtime is the default even when some cluster runs on this machine: a sweep
    must not land on a stale or foreign cluster by accident. Returns what it started:
    "private", "attached", or None when Ray was already running.
    """
    import ray

    if ray.is_initialized():
        return None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
        return "attached"
    start_private_ray()
    return "private"


def start_private_ray(num_cpus: int | None = None, num_gpus: int | None = None) -> None:
    """A Ray runtime of this process alone: loopback only, no dashboard. ``num_gpus``
    declares logical GPUs (the tests schedule fractional-GPU trials on a CPU machine)."""
    init_loopback_only(num_cpus, num_gpus)


def placement_for(rule: ResourceRule, config: dict[str, Any]) -> Any:
    """Tune's per-trial resource request: the rule applied to this trial's spec; a trial on
    several workers holds almost nothing itself (its Ray Train workers hold the resources)."""
    from ray import tune

    from flops_fit.ray.workers import TRIAL_DRIVER_REQUEST

    spec = TrialSpec.from_dict(config["spec"])
    return tune.PlacementGroupFactory([TRIAL_DRIVER_REQUEST if rule.workers_for(spec) > 1 else rule.for_spec(spec)])


def _cluster_gpus() -> float:
    import ray

    return ray.cluster_resources().get("GPU", 0.0)


def cluster_gpu_bytes() -> int:
    """One GPU worker's device memory, for ``gpus_per_trial="auto"`` on a driver without a GPU
    (a CPU head node under ``ray job submit``)."""
    import ray

    if not ray.cluster_resources().get("GPU"):
        raise PlanError("--gpus-per-trial auto, but the Ray cluster has no GPU node up: pass --gpu-memory-gb "
                        "for the GPUs it will start, or --gpus-per-trial 0 to train on CPUs")

    @ray.remote(num_gpus=1)
    def device_memory() -> int:
        import torch

        return torch.cuda.get_device_properties(0).total_memory

    return int(ray.get(device_memory.remote(), timeout=600))


def describe_shares(rule: ResourceRule, specs: list[TrialSpec]) -> str:
    """``gpus per trial (auto, 80 GB GPUs): 0.25 x 21, 0.5 x 4, 1 x 3``."""
    counts = collections.Counter(rule.gpus_for(s) for s in specs)
    shares = ", ".join(f"{g:g} x {n}" for g, n in sorted(counts.items()))
    return f"gpus per trial (auto, {rule.gpu_bytes / 1e9:.0f} GB GPUs): {shares}"


def finished_row(run_dir: Path, reported: dict[str, Any] | None) -> dict[str, Any]:
    """A trial's metrics: the full row its record in the sweep directory holds (a trial reports
    Tune only a summary, ``flops_fit.ray.records.REPORTED``), else what it reported."""
    reported = dict(reported or {})
    if reported.get("status") in FINISHED_STATUSES and reported.get(SPEC_ID):
        path = run_dir / FINISHED_DIR / f"{reported[SPEC_ID]}.json"
        try:
            return {**reported, **json.loads(path.read_text())}
        except (OSError, ValueError):
            pass  # read by the trainable, which moves a damaged one aside; the summary stands
    return reported


def trial_name(trial: Any) -> str:
    """A trial's name and directory is its trial id (C1.00e12_N237200 ...), not Tune's
    ``run_trial_on_worker_<hash>_00000_0_spec=...`` that spells out the whole config."""
    return str(trial.config["spec"]["trial_id"])


class TuneBackend:
    """Runs a sweep's trials as one Tune experiment under ``<storage_path>/<name>``."""

    def run(self, cfg: SweepConfig, specs: list[TrialSpec], workload: Workload, run_dir: Path, resuming: bool,
            progress: bool) -> list[TrialReport]:
        ship_by_value(*cfg.train.step_hooks)
        started_ray = _ensure_ray(cfg)
        self.adaptive = None
        try:
            rule = trial_request(cfg, workload).for_sweep(specs, cfg.cluster_gpus or _cluster_gpus())
            if progress and workload.trial_cpus is None and cfg.gpus_per_trial == AUTO:
                print(describe_shares(rule, specs), flush=True)
            ensure_placeable(rule, specs, cfg.placement_timeout, say=lambda line: print(line, flush=True),
                             autoscaling=(lambda: False) if started_ray == "private" else autoscaler_running)
            grid = self._run_tuner(cfg, rule, specs, workload, run_dir, resuming, progress)
        finally:
            if started_ray == "private":  # and its /tmp/ray/session_* directory with it
                shutdown_private_ray()
            elif started_ray:
                import ray

                ray.shutdown()
        # A trial Tune never started has no config; one still running when Ctrl-C came has no
        # final status. Either means Tune caught SIGINT and returned early.
        reports = [TrialReport(spec=r.config["spec"], metrics=finished_row(run_dir, r.metrics),
                               error=None if r.error is None else str(r.error)) for r in grid if r.config]
        planned = len(specs) if self.adaptive is None else len(self.adaptive.planned())
        unfinished = len(reports) < planned or (self.adaptive is not None and not self.adaptive.finished()) or any(
            r.error is None and r.metrics.get("status") not in FINISHED_STATUSES for r in reports)
        if unfinished:
            raise SweepInterrupted(reports)
        return reports

    def _run_tuner(self, cfg: SweepConfig, rule: ResourceRule, specs: list[TrialSpec], workload: Workload, run_dir: Path, resuming: bool,
             progress: bool) -> Any:
        from ray import tune

        from flops_fit.ray.progress import SweepProgress
        from flops_fit.ray.searcher import cluster_slots
        from flops_fit.ray.trainable import run_trial_on_worker

        # Tune's newer console output prints a configuration box and a TensorBoard hint into
        # /tmp/ray/session_* even at verbose=0; the legacy output honours verbose=0. Our own
        # progress lines say what happens, and TensorBoard reads the sweep directory itself
        # (tensorboard --logdir <storage_path>/<name>). An explicit setting is left alone.
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        # With num_to_keep=1 every checkpoint forces an experiment-state snapshot, and Tune
        # warns (in the sweep's output) when two come within 5 s; for a grid of a few dozen
        # trials a snapshot is milliseconds, so the warning is noise.
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
        options: TrainOptions = dataclasses.replace(cfg.train, threads=max(1, int(cfg.cpus_per_trial)))
        trainable = tune.with_resources(
            tune.with_parameters(run_trial_on_worker, workload=workload, train_options=options,
                                 record_dir=str(run_dir / FINISHED_DIR), resources=rule,
                                 stem_dir=str(run_dir / STEMS_DIR), train_dir=str(run_dir / TRAIN_DIR),
                                 max_failures=cfg.max_failures),
            functools.partial(placement_for, rule),
        )
        from flops_fit.ray.trackers import tracker_callbacks

        tune_dir = str(run_dir)
        # A trial on several workers holds almost nothing itself: without a cap Tune would start
        # every one, and their worker groups would queue for the same resources.
        concurrent = cfg.max_concurrent_trials or (cluster_slots(cfg) if rule.several_workers else None)
        tune_config = dict(max_concurrent_trials=concurrent, reuse_actors=reuse_actors_for(rule),
                           trial_name_creator=trial_name, trial_dirname_creator=trial_name)
        if cfg.plan.adapt or cfg.plan.schedule == "wsd":
            # Not Tuner.restore: the plan replays its decision log (adaptive.json) and finished
            # trials replay their records, so a resumed adaptive sweep is the same sweep (and a
            # WSD branch continues its stem's state in the sweep directory).
            from flops_fit.ray.searcher import adaptive_tune_config

            search, self.adaptive = adaptive_tune_config(cfg, specs, workload, run_dir, progress)
            tune_config.update(search)
            param_space = {}
        else:
            param_space = {"spec": tune.grid_search([s.to_dict() for s in specs])}
        expected = (lambda: specs) if self.adaptive is None else self.adaptive.expected
        # a trial on k workers takes a k-th of the wall time (ideal data-parallel scaling)
        costs = lambda: {s.trial_id: expected_cost(s) / rule.workers_for(s) for s in expected()}  # noqa: E731
        callbacks = ([SweepProgress(costs)] if progress else []) + tracker_callbacks(cfg, run_dir)
        if resuming and self.adaptive is None and tune.Tuner.can_restore(tune_dir):
            tuner = tune.Tuner.restore(tune_dir, trainable=trainable, resume_errored=True)
            set_restored_callbacks(tuner, callbacks)
        else:
            tuner = tune.Tuner(
                trainable,
                param_space=param_space,
                tune_config=tune.TuneConfig(**tune_config),
                run_config=tune.RunConfig(
                    name=cfg.name,
                    storage_path=str(run_dir.parent),
                    failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=1),  # the latest: a retry resumes from it
                    callbacks=callbacks,
                    verbose=0,
                ),
            )
        if workload.trial_cpus is None or "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS" in os.environ:
            return tuner.fit()
        # A simulated trial has no curve to log: Tune's per-trial CSV, JSON and TensorBoard
        # files cost a tenth of the driver's time and a third of its memory at a thousand
        # trials (benchmarks/RESULTS.md, item 6). Tune reads the switch when fit() starts.
        os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
        try:
            return tuner.fit()
        finally:
            del os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"]


def sweep(config: SweepConfig | None = None, *, preset: str | None = None, progress: bool = True,
          workload: Workload | None = None, **overrides: Any) -> Result:
    """Run an IsoFLOP sweep on Ray and fit it; returns a :class:`flops_fit.results.result.Result`.

    ``sweep(preset="tiny")``, ``sweep(budgets=[1e12, 3e12, 1e13], points_per_budget=5)`` or
    ``sweep(config)``; any :class:`~flops_fit.config.SweepConfig` field is a keyword, by its
    flat name. ``workload`` replaces the default one (the reference GPT, or the known law of
    ``simulate``): ``flops_fit.find_optimal`` passes a user's model this way.
    """
    from flops_fit.ray.trackers import log_sweep, require_tracker

    cfg = resolve_config(config, preset, **overrides)
    if cfg.tracker is not None:
        require_tracker(cfg.tracker)  # a missing extra fails now, in one line, before any trial
    if cfg.tune:  # the learning-rate rule measured on this grid first, then the sweep with it
        from flops_fit.engine.lr_scan import tune_first

        cfg = tune_first(cfg, TuneBackend(), workload, progress)
    result = run_sweep(cfg, TuneBackend(), workload, progress)
    log_sweep(cfg, result.path.parent, result)
    return result


def tune(config: SweepConfig | None = None, *, preset: str | None = None, progress: bool = True,
         workload: Workload | None = None, **overrides: Any) -> Recipe:
    """``flops-fit tune`` on Ray: scan, fit and check the learning-rate rule on the grid's sizes
    (:func:`flops_fit.engine.lr_scan.scan_learning_rates`); returns the recipe, written to the tune directory."""
    from flops_fit.engine.lr_scan import scan_learning_rates

    return scan_learning_rates(config, backend=TuneBackend(), preset=preset, workload=workload, progress=progress, **overrides)


def trial_request(cfg: SweepConfig, workload: Workload) -> ResourceRule:
    """What each trial asks Ray for: the sweep's resources, or a simulated workload's small
    CPU share and no GPU (``Workload.trial_cpus``)."""
    if workload.trial_cpus is not None:
        return ResourceRule(cpus=workload.trial_cpus)
    return cfg.resource_rule(local_gpu_bytes, cluster_gpu_bytes)


def reuse_actors_for(rule: ResourceRule) -> bool:
    """Reuse workers on CPU: a fresh one per trial pays torch + dynamo imports and actor start
    (18 s -> 4.5 s fixed cost per trial; efficiency 0.88 -> 0.97, benchmarks/RESULTS.md). Not
    on GPU: Ray's docs warn GPU tasks may not release device memory (why Ray does not reuse
    GPU workers by default), and each trial is a new shape, so Dynamo's compiled graphs pile
    up per actor past its recompile limit and fall back to eager. A few seconds of actor
    start is small next to a GPU trial's minutes."""
    return not rule.gpus
