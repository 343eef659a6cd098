"""``sweep()``: budgets in, a trained IsoFLOP grid, a results table and the fits out.

Flow (DESIGN.md): config -> tokenizer (once, on the driver) -> plan -> Ray Tune (one trial
per spec, largest first) -> results.parquet -> Result (fits, table, plots).

Resume: a sweep directory records its plan in ``sweep.json``. Running the same sweep again
restores the Tune experiment (finished trials are not re-run; errored ones restart from
their last checkpoint); a different plan under the same name is refused.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from flops_fit.config import SweepConfig, TrainOptions, preset as get_preset
from flops_fit.plan import PlanError, TrialSpec, format_plan, plan
from flops_fit.examples.tokenizer import default_cache_dir
from flops_fit.ray.preflight import check_cache_writable, preflight
from flops_fit.results import RESULTS_FILENAME, SCHEMA, atomic_write_text, write_results

RESULT_COLUMNS = frozenset(SCHEMA.names)

MANIFEST = "sweep.json"
#: Finished trials' final records (trainable.run_trial_on_worker): a resumed sweep replays them.
FINISHED_DIR = "finished"


def resolve_config(config: SweepConfig | None = None, preset: str | None = None, **overrides: Any) -> SweepConfig:
    if config is not None and preset is not None:
        raise PlanError("pass either config= or preset=, not both")
    base = config or (get_preset(preset) if preset else SweepConfig())
    return base.replace(**overrides) if overrides else base


def prepare_storage(cfg: SweepConfig) -> Path:
    """The sweep directory, created and proven writable now rather than after hours."""
    if "://" in cfg.storage_path:
        raise PlanError(
            f"storage_path {cfg.storage_path!r}: remote URIs are for Tune checkpoints only; "
            "mount the bucket or NFS share and pass its local path"
        )
    run_dir = Path(cfg.storage_path).expanduser().resolve() / cfg.name
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-probe-{uuid.uuid4().hex}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise PlanError(f"storage_path {cfg.storage_path!r} is not writable ({exc.strerror}); choose another --storage-path") from exc
    return run_dir


def prepare_tokenizer(cfg: SweepConfig) -> tuple[str | None, int, str | None]:
    """Train or load the tokenizer once on the driver: (serialised json, vocab size, fingerprint)."""
    if cfg.simulate is not None:
        return None, cfg.vocab_size, None
    from flops_fit.examples.tinystories import load_tokenizer, tokenizer_fingerprint, tokenizer_json

    tok = load_tokenizer(cfg.source, cfg.cache_dir, tokenizer_name=cfg.tokenizer_name, vocab_size=cfg.vocab_size)
    return tokenizer_json(tok), len(tok), tokenizer_fingerprint(tok)


def _fingerprint(tokenizer_json: str | None) -> str | None:
    if tokenizer_json is None:
        return None
    from flops_fit.examples.tinystories import tokenizer_fingerprint

    return tokenizer_fingerprint(tokenizer_json)


def _manifest(cfg: SweepConfig, specs: list[TrialSpec], fingerprint: str | None) -> dict[str, Any]:
    return {
        "plan": [s.to_dict() for s in specs],
        "source": cfg.source,
        "tokenizer": fingerprint,
        "val_tokens": cfg.val_tokens,
        "simulate": cfg.simulate,
    }


def check_manifest(run_dir: Path, manifest: dict[str, Any]) -> bool:
    """True when resuming the same sweep; refuses a different one under the same name."""
    path = run_dir / MANIFEST
    if not path.exists():
        atomic_write_text(path, json.dumps(manifest, indent=1, sort_keys=True))
        return False
    stored = json.loads(path.read_text())
    if stored != json.loads(json.dumps(manifest)):
        changed = [k for k in manifest if stored.get(k) != json.loads(json.dumps(manifest[k]))]
        raise PlanError(
            f"{run_dir} holds a different sweep (changed: {', '.join(changed)}); "
            "use a new --name, or delete that directory to start over"
        )
    return True


#: Fixed cost of one optimizer step (Python, optimizer, launch overheads) in FLOP-equivalents:
#: ~2 ms at the ~50 GFLOP/s a tiny CPU model reaches (benchmarks/RESULTS.md), so step count
#: matters as much as FLOPs for the tiny models of a CPU sweep.
STEP_OVERHEAD_FLOPS = 1e8


def expected_cost(spec: TrialSpec) -> float:
    """A trial's expected run time in FLOP-equivalents: the compute it really spends (all
    matmuls incl. attention, not the budget's convention) plus its per-step overhead."""
    per_token = spec.flops_per_token_all().get("flops_attention", 6.0 * spec.n)
    return per_token * spec.tokens + spec.steps * STEP_OVERHEAD_FLOPS


def launch_order(specs: list[TrialSpec]) -> list[TrialSpec]:
    """Longest expected run first: the classic LPT rule keeps slots busy at the end of the
    sweep instead of waiting on one long straggler."""
    return sorted(specs, key=lambda s: (-expected_cost(s), s.trial_id))


def _ensure_ray(cfg: SweepConfig) -> bool:
    """Attach to a cluster (address= or $RAY_ADDRESS; "auto" is the one `ray start` runs on
    this machine, as under `ray submit`) or start a private Ray in-process on loopback.

    A private runtime is the default even when some cluster runs on this machine: a sweep
    must not land on a stale or foreign cluster by accident.
    """
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        start_private_ray()
    return True


def start_private_ray(num_cpus: int | None = None) -> None:
    """A Ray runtime of this process alone: loopback only, no dashboard."""
    import ray

    # Embedded runtime: loopback only, no dashboard (DESIGN.md security basics).
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Ray 2.60 rewrites _node_ip_address="127.0.0.1" to the machine's routable address
    # (services.resolve_ip_for_localhost) unless ray_constants.ENABLE_RAY_CLUSTER is false,
    # and its C++ servers bind loopback only when their node IP is exactly 127.0.0.1
    # (GcsServer: node_ip_address == "127.0.0.1"), else 0.0.0.0/::. The flag is what
    # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 sets at import; it is flipped for this call only
    # (the node IP is fixed once the node runs), so a later ray.init(address=<cluster>) in
    # this process still resolves its routable IP. tests/reliability/test_security.py
    # checks every listening socket of the runtime's processes.
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        # address="local": never Ray's default of joining the last `ray start` cluster here.
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                 log_to_driver=False)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


def collect_rows(result_grid: Any, specs: list[TrialSpec]) -> list[dict[str, Any]]:
    """One row per planned trial, failed and diverged ones included."""
    from flops_fit.ray.trainable import SPEC_ID

    by_id: dict[str, dict[str, Any]] = {}
    for result in result_grid:
        spec = TrialSpec.from_dict(result.config["spec"])
        metrics = dict(result.metrics or {})
        if result.error is not None or metrics.get("status") not in ("ok", "diverged"):
            row = spec.record()
            row.update(status="failed", loss=None, tokens=0, flops=0.0,
                       error=str(result.error or "trial ended without a final report")[:4000],
                       node_id=metrics.get("node_id"))
        else:
            row = {**spec.record(), "loss": None, "error": None}  # reported metrics omit None values
            row.update((k, v) for k, v in metrics.items() if k in RESULT_COLUMNS)
            row["trial_id"] = metrics.get(SPEC_ID, spec.trial_id)
        by_id[spec.trial_id] = row
    rows = []
    for spec in specs:
        rows.append(by_id.get(spec.trial_id) or {**spec.record(), "status": "failed", "loss": None,
                                                  "tokens": 0, "flops": 0.0, "error": "trial never ran"})
    return rows


def sweep(config: SweepConfig | None = None, *, preset: str | None = None, progress: bool = True,
          specs: list[TrialSpec] | None = None, workload: Any = None, **overrides: Any):
    """Run an IsoFLOP sweep on Ray and fit it; returns a :class:`flops_fit.report.Result`.

    ``sweep(preset="tiny")``, ``sweep(budgets=[1e12, 3e12, 1e13], points_per_budget=5)`` or
    ``sweep(config)``; any :class:`~flops_fit.config.SweepConfig` field is a keyword.
    ``specs`` and ``workload`` come from ``flops_fit.find_optimal`` (a user's model).
    """
    cfg = resolve_config(config, preset, **overrides)
    run_dir = prepare_storage(cfg)
    if workload is None:
        if cfg.simulate is None:  # before the tokenizer is trained into it
            check_cache_writable(default_cache_dir(cfg.cache_dir).resolve())
        tokenizer_json, vocab_size, fingerprint = prepare_tokenizer(cfg)
        specs = plan(cfg.plan_config(vocab_size))
        preflight(cfg, specs, tokenizer_json)  # data size, cache, source: before any trial starts
    else:
        tokenizer_json = workload.data.tokenizer_json
        fingerprint = _fingerprint(tokenizer_json)
    resuming = check_manifest(run_dir, _manifest(cfg, specs, fingerprint))
    out = sys.stdout if progress else open(os.devnull, "w")
    print(format_plan(specs), file=out)
    print(f"{'resuming' if resuming else 'starting'} sweep {run_dir}", file=out, flush=True)

    started_ray = _ensure_ray(cfg)
    try:
        grid = _run_tuner(cfg, specs, run_dir, tokenizer_json, resuming, out if progress else None, workload)
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    rows = collect_rows(grid, specs)
    write_results(rows, run_dir / RESULTS_FILENAME)
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "diverged", "failed")}
    print(f"results: {run_dir / RESULTS_FILENAME} ({counts})", file=out, flush=True)
    return _finish(run_dir, cfg, out)


def _run_tuner(cfg: SweepConfig, specs: list[TrialSpec], run_dir: Path, tokenizer_json: str | None,
               resuming: bool, stream, workload: Any = None) -> Any:
    from ray import tune

    from flops_fit.ray.progress import SweepProgress
    from flops_fit.ray.trainable import run_trial_on_worker

    data = cfg.data_options(tokenizer_json)
    options = TrainOptions(threads=max(1, int(cfg.cpus_per_trial)), checkpoint_every_s=cfg.checkpoint_every_s,
                           compile=cfg.compile, faults=cfg.faults)
    trainable = tune.with_resources(
        tune.with_parameters(run_trial_on_worker, data=data, train_options=options, simulate=cfg.simulate,
                             workload=workload, record_dir=str(run_dir / FINISHED_DIR)),
        {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial},
    )
    callbacks = [SweepProgress(len(specs))] if stream is not None else []
    tune_dir = str(run_dir)
    if resuming and tune.Tuner.can_restore(tune_dir):
        tuner = tune.Tuner.restore(tune_dir, trainable=trainable, resume_errored=True)
        # Tuner.restore takes no callbacks: the pickled ones would count from the old run,
        # so fresh progress is attached here (private attribute; no public setter exists).
        local = getattr(tuner, "_local_tuner", None)
        if local is not None:
            local._run_config.callbacks = callbacks
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={"spec": tune.grid_search([s.to_dict() for s in launch_order(specs)])},
            # reuse_actors: a fresh worker per trial pays torch + dynamo imports and actor start
            # (18 s -> 4.5 s fixed cost per trial; efficiency 0.88 -> 0.97, benchmarks/RESULTS.md).
            tune_config=tune.TuneConfig(max_concurrent_trials=cfg.max_concurrent_trials, reuse_actors=True),
            run_config=tune.RunConfig(
                name=cfg.name,
                storage_path=str(run_dir.parent),
                failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                callbacks=callbacks,
                verbose=0,
            ),
        )
    return tuner.fit()


def _finish(run_dir: Path, cfg: SweepConfig, out) -> Any:
    """Fit, print the compute-optimal table, write table/fits/plots beside the results."""
    from flops_fit.report import Result

    result = Result.from_path(run_dir, n_boot=cfg.n_boot, seed=cfg.seed)
    result.save(run_dir)
    print(result.format_table(), file=out, flush=True)
    return result
