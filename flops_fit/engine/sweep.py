"""The sweep engine: config in, a results table and the fits out, on any backend.

Flow: config -> workload (``prepare`` on the driver: tokenizer, sizes) -> plan ->
``preflight`` -> sweep directory and resume manifest -> backend runs every trial (longest
first) -> one row per planned trial -> ``results.parquet`` -> Result (fits, table, plots)
-> with ``verify``, one more trial above the largest budget (``flops_fit.engine.verify``).

Nothing here imports Ray: the backend (``flops_fit.ray.backend.TuneBackend``) only
runs trials and hands back what each reported. Resume: a sweep directory records its plan
and its workload's identity in ``sweep.json``; running the same sweep again resumes it
(the backend restores finished trials and restarts the rest from their checkpoints), and a
different sweep under the same name is refused.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from flops_fit.config import SweepConfig
from flops_fit.config import preset as get_preset
from flops_fit.data.stories import setup_of
from flops_fit.engine.estimate import launch_order
from flops_fit.engine.storage import STEMS_DIR, check_manifest, driver_lock, manifest, prepare_storage
from flops_fit.errors import PlanError, SweepInterrupted
from flops_fit.planning import recipe
from flops_fit.planning.grid import TrialSpec, format_plan
from flops_fit.planning.rules import TrainingRules
from flops_fit.results.table import FINISHED_STATUSES, RESULTS_FILENAME, SCHEMA, STATUSES, write_results
from flops_fit.workloads.base import Workload

if TYPE_CHECKING:
    from flops_fit.engine.verify import RunTrial
    from flops_fit.results.result import Result

RESULT_COLUMNS = frozenset(SCHEMA.names)
ADAPTIVE_NOTE = ("adaptive grid: the first budget runs as above; each later budget is re-centred on the frontier "
                 "of the budgets finished before it, and trials are added where a budget's best run lacks two "
                 "sizes on a side (--no-adapt: the fixed grid above)")
#: Under a simulated design's plan: what its trials ask Ray for, and what the column shows.
SIMULATED_RESOURCES = ("simulated: each trial asks Ray for {cpus:g} CPU and no GPU (it evaluates the law); the "
                       "'real sweep' column is what each trial would take if it trained")
#: Key under which a trial reports its id (Tune, like other backends, owns ``trial_id``).
SPEC_ID = "spec_id"


@dataclass
class TrialReport:
    """What the backend saw of one trial: its spec, its last reported metrics, any error."""

    spec: dict[str, Any]
    metrics: dict[str, Any]
    error: str | None = None


class Backend(Protocol):
    def run(self, cfg: SweepConfig, specs: list[TrialSpec], workload: Workload, run_dir: Path,
            resuming: bool, progress: bool) -> list[TrialReport]: ...


def resolve_config(config: SweepConfig | None = None, preset: str | None = None, **overrides: Any) -> SweepConfig:
    if config is not None and preset is not None:
        raise PlanError("pass either config= or preset=, not both")
    base = config or (get_preset(preset) if preset else SweepConfig())
    return base.replace(**overrides) if overrides else base


def default_workload(cfg: SweepConfig) -> Workload:
    """The reference GPT on the config's data, or the known law of ``simulate``."""
    if cfg.simulate is not None:
        from flops_fit.workloads.simulated import SimulatedLaw

        return SimulatedLaw(cfg.simulate)
    from flops_fit.workloads.gpt import ReferenceGPT

    return ReferenceGPT.on(cfg.data)


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # Ray colours its tracebacks; the table stores plain text


def _failed(spec: TrialSpec, error: str, node_id: Any = None) -> dict[str, Any]:
    return {**spec.record(), "status": "failed", "loss": None, "tokens": 0, "flops": 0.0, "flops_trained": 0.0,
            "error": _ANSI.sub("", error)[:4000], "node_id": node_id}


def collect_rows(reports: list[TrialReport], specs: list[TrialSpec],
                 origins: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One row per planned trial, failed and diverged ones included; ``origins`` says why
    each is in the sweep (flops_fit.planning.adaptive; default "grid")."""
    by_id: dict[str, dict[str, Any]] = {}
    for report in reports:
        spec = TrialSpec.from_dict(report.spec)
        metrics = dict(report.metrics or {})
        if report.error is not None or metrics.get("status") not in FINISHED_STATUSES:
            row = _failed(spec, str(report.error or "trial ended without a final report"), metrics.get("node_id"))
        else:
            row = {**spec.record(), "loss": None, "error": None}  # reported metrics omit None values
            row.update((k, v) for k, v in metrics.items() if k in RESULT_COLUMNS)
            row["trial_id"] = metrics.get(SPEC_ID, spec.trial_id)
        by_id[spec.trial_id] = row
    rows = [by_id.get(spec.trial_id) or _failed(spec, "trial never ran") for spec in specs]
    return [{**row, "origin": (origins or {}).get(spec.trial_id, "grid")} for row, spec in zip(rows, specs)]


def planned(cfg: SweepConfig, run_dir: Path, specs: list[TrialSpec]) -> tuple[list[TrialSpec], dict[str, str], list]:
    """The trials a sweep ran: the fixed grid, or what an adaptive one released (its log)."""
    from flops_fit.planning.adaptive import read_log

    log = read_log(run_dir) if cfg.plan.adapt else None
    return log if log is not None else (specs if not cfg.plan.adapt else [], {}, [])


def run_sweep(cfg: SweepConfig, backend: Backend, workload: Workload | None = None, progress: bool = True) -> Result:
    """Plan, check, run on ``backend``, record and fit; returns a :class:`flops_fit.results.result.Result`."""
    workload = workload or default_workload(cfg)
    workload.prepare(cfg.plan)
    specs = workload.plan(cfg.plan)
    workload.preflight(specs)  # data size, cache, source, a probe batch: before any trial starts
    run_dir = prepare_storage(cfg)  # a refused request leaves no sweep directory behind
    with driver_lock(run_dir):  # a second driver on this sweep is refused, not run twice
        return _run_locked(cfg, backend, workload, specs, run_dir, progress)


def _run_locked(cfg: SweepConfig, backend: Backend, workload: Workload, specs: list[TrialSpec], run_dir: Path,
                progress: bool):
    resuming = check_manifest(run_dir, manifest(specs, workload, cfg), extendable=cfg.plan.schedule == "wsd")
    out = sys.stdout if progress else open(os.devnull, "w")
    if workload.trial_cpus is None:
        print(format_plan(specs), file=out)
    else:  # a design: the resources the real sweep's trials would take, and what these take
        try:
            real = cfg.resource_rule().describe
        except PlanError:  # --gpus-per-trial auto without --gpu-memory-gb: no GPU to size by
            real = None
        print(format_plan(specs, resources=real, resources_label="real sweep"), file=out)
        print(SIMULATED_RESOURCES.format(cpus=workload.trial_cpus), file=out)
    print(TrainingRules(cfg.plan).describe(setup_of(cfg)), file=out)
    if cfg.plan.recipe is not None:  # the rule, its scan and its fit travel with the results
        recipe.save(recipe.load(cfg.plan.recipe), run_dir)
    if cfg.plan.adapt:
        print(ADAPTIVE_NOTE, file=out)
    print(f"{'resuming' if resuming else 'starting'} sweep {run_dir}", file=out, flush=True)
    try:
        reports = backend.run(cfg, launch_order(specs), workload, run_dir, resuming, progress)
    except SweepInterrupted as exc:  # keep what finished; a rerun resumes the rest
        ran, origins, _ = planned(cfg, run_dir, specs)
        done = [r for r in collect_rows(exc.reports, ran, origins) if r["status"] in FINISHED_STATUSES]
        write_results(done, run_dir / RESULTS_FILENAME)
        print(f"partial results: {run_dir / RESULTS_FILENAME} ({len(done)} of {len(ran)} trials finished)",
              file=sys.stderr, flush=True)
        raise
    ran, origins, events = planned(cfg, run_dir, specs)
    rows = collect_rows(reports, ran, origins)
    write_results(rows, run_dir / RESULTS_FILENAME)
    if cfg.plan.adapt:
        from flops_fit.planning.adaptive import summary

        print("\n".join(summary(events)) or "adaptive: no trials added (every budget bracketed or capped)",
              file=out, flush=True)
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    print(f"results: {run_dir / RESULTS_FILENAME} ({counts})", file=out, flush=True)
    kept = sorted((run_dir / STEMS_DIR).glob("*/step_*.pt"))
    if kept:  # what a budget added later continues from, and what it costs on disk
        size = sum(p.stat().st_size for p in kept)
        print(f"stems: {len(kept)} kept states, {size / 1e6:.1f} MB in {run_dir / STEMS_DIR} (a budget added later "
              "continues them; delete the directory to free the space)", file=out, flush=True)
    return finish(run_dir, cfg, out, workload,
                  lambda spec, exp_dir: run_experiment(cfg, backend, workload, [spec], exp_dir, progress)[0])


def run_experiment(cfg: SweepConfig, backend: Backend, workload: Workload, specs: list[TrialSpec], run_dir: Path,
                   progress: bool) -> list[dict[str, Any]]:
    """Exactly ``specs`` as their own resumable experiment in ``run_dir`` (the ``--verify`` run,
    ``flops-fit tune``'s scans): same backend, its own lock, manifest and results table; one
    row per spec, in order."""
    run_dir.mkdir(parents=True, exist_ok=True)
    # adapt=False: the experiment is exactly these trials, not a replay of the sweep's adaptive plan
    sub = cfg.replace(storage_path=str(run_dir.parent), name=run_dir.name, adapt=False)
    with driver_lock(run_dir):
        resuming = check_manifest(run_dir, manifest(specs, workload))
        reports = backend.run(sub, launch_order(specs), workload, run_dir, resuming, progress)
    rows = collect_rows(reports, specs)
    write_results(rows, run_dir / RESULTS_FILENAME)
    return rows


def finish(run_dir: Path, cfg: SweepConfig, out, workload: Workload | None = None,
           run_trial: RunTrial | None = None) -> Result:
    """Fit, print the compute-optimal table, run the ``--verify`` trial when asked (the
    workload's, with ``run_trial``: flops_fit.engine.verify), write table/fits/plots beside the results."""
    from flops_fit.results.result import Result

    result = Result.from_path(run_dir, n_boot=cfg.n_boot, seed=cfg.plan.seed)
    verifying = cfg.verify is not None and run_trial is not None and workload is not None
    if verifying:  # an earlier run's record is replaced by this one's, printed after the table
        result.verification = None
    print(result.format_table(), file=out, flush=True)
    try:
        if verifying:
            from flops_fit.engine.verify import run_verification
            from flops_fit.results.verification import verification_lines

            record = run_verification(result, cfg, workload, run_dir, run_trial)
            print("\n".join(verification_lines(record)), file=out, flush=True)
    finally:  # an interrupted verification keeps the sweep's fits
        result.save(run_dir)
    return result
