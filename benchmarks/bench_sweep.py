"""Item 3: orchestration. A real sweep through ``flops_fit.ray.sweep`` on this machine's CPUs.

    efficiency = sum of trial times / (slots x makespan)

reported three ways: trial time = ``wall_s`` (the whole ``run_trial``: data open, model,
training, eval, checkpoints) or training only (tokens / tokens_per_s); makespan = the
driver's wall time (``sweep()`` call: Ray start, tokenizer, plan, trials, results, fit) or the
Tune span (first trial start to last trial end, from each trial's result.json). The fixed cost
per trial is split into: inside ``run_trial`` but not training (data open, build, eval,
checkpoint: wall_s - train_s), the worker around it (torch import, tune.report:
time_total_s - wall_s), and the slot time no trial used (actor start-up, scheduling gaps,
idle slots at the end). The sweep's cost is estimated up front with
``flops_fit.engine.estimate.estimate_sweep_seconds`` and compared with what it took.

    python benchmarks/bench_sweep.py [--quick] [--budgets 6e11 1e12] [--points 6]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, load, table  # noqa: E402


def tune_times(run_dir: str) -> dict[str, dict[str, float]]:
    """spec_id -> {start, end, trainable_s} from each trial's last result.json line."""
    out = {}
    for path in glob.glob(os.path.join(run_dir, "*", "result.json")):
        last = None
        with open(path) as f:
            for line in f:
                if line.strip():
                    last = json.loads(line)
        if last and last.get("spec_id") and last.get("status") in ("ok", "diverged"):
            end = float(last["timestamp"])
            out[last["spec_id"]] = {"start": end - float(last["time_total_s"]), "end": end,
                                    "trainable_s": float(last["time_total_s"])}
    return out


def run(preset: str, slots: int, quick: bool, reuse_actors: bool = False, **overrides: Any) -> dict[str, Any]:
    import functools

    import pandas as pd
    from ray import tune

    from flops_fit.config import preset as get_preset
    from flops_fit.engine.estimate import estimate_sweep_seconds
    from flops_fit.planning.grid import plan
    from flops_fit.ray import sweep

    cfg = get_preset(preset).replace(**overrides)
    specs = plan(cfg.plan)
    t0 = time.perf_counter()
    est = estimate_sweep_seconds(specs, cfg.cpus_per_trial, slots)
    probe_s = time.perf_counter() - t0
    load_start = load()
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        import ray

        ray.init(num_cpus=slots * int(cfg.cpus_per_trial), include_dashboard=False, log_to_driver=False,
                 _node_ip_address="127.0.0.1")
        original = tune.TuneConfig
        if reuse_actors:  # the experiment proposed for flops_fit/ray/backend.py (RESULTS.md, item 3)
            tune.TuneConfig = functools.partial(original, reuse_actors=True)
        try:
            t0 = time.perf_counter()
            try:
                sweep(cfg, storage_path=tmp, name="bench", progress=False, cache_dir=os.path.join(tmp, "cache"))
                finish_error = None
            except Exception as exc:  # noqa: BLE001 - the fit/report step failing leaves the trials to measure
                finish_error = f"{type(exc).__name__}: {exc}"[:300]
                if not os.path.exists(os.path.join(tmp, "bench", "results.parquet")):
                    raise
            driver_s = time.perf_counter() - t0
        finally:
            tune.TuneConfig = original
            ray.shutdown()
        run_dir = os.path.join(tmp, "bench")
        df = pd.read_parquet(os.path.join(run_dir, "results.parquet"))
        times = tune_times(run_dir)
    ok = df[df["status"] == "ok"]
    wall = ok["wall_s"].astype(float)
    train = ok["tokens"].astype(float) / ok["tokens_per_s"].astype(float)
    starts = [t["start"] for t in times.values()]
    ends = [t["end"] for t in times.values()]
    tune_span = (max(ends) - min(starts)) if times else float("nan")
    trainable = sum(t["trainable_s"] for t in times.values())
    n = len(ok)
    rows = [{"trial": r.trial_id, "d x L": f"{r.d_model}x{r.num_layers}", "tokens": int(r.tokens),
             "wall_s": float(r.wall_s), "train_s": float(r.tokens / r.tokens_per_s),
             "trainable_s": times.get(r.trial_id, {}).get("trainable_s", float("nan")),
             "start_s": times.get(r.trial_id, {}).get("start", float("nan")) - (min(starts) if starts else 0.0)}
            for r in ok.itertuples()]
    rows.sort(key=lambda r: r["start_s"])
    return {
        "preset": preset, "reuse_actors": reuse_actors, "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
        "trials": int(len(df)), "ok": n, "slots": slots, "cpus_per_trial": cfg.cpus_per_trial,
        "driver_s": driver_s, "tune_span_s": tune_span,
        "sum_wall_s": float(wall.sum()), "sum_train_s": float(train.sum()), "sum_trainable_s": trainable,
        "min_trial_wall_s": float(wall.min()),
        "efficiency": float(wall.sum()) / (slots * driver_s),
        "efficiency_tune_span": float(wall.sum()) / (slots * tune_span),
        "efficiency_training_only": float(train.sum()) / (slots * driver_s),
        "fixed_cost_per_trial_s": (slots * driver_s - float(train.sum())) / max(1, n),
        "fixed_in_run_trial_s": float((wall - train).mean()),
        "fixed_worker_around_run_trial_s": (trainable - float(wall.sum())) / max(1, n),
        "fixed_driver_and_idle_s": (slots * driver_s - trainable) / max(1, n),
        "estimate": {k: v for k, v in est.items() if k != "per_trial_s"}, "estimate_probe_s": probe_s,
        "estimate_error": est["makespan_s"] / driver_s - 1.0,
        "actual_flops": float(ok["flops"].sum()),
        "load_start": load_start, "load_end": load(), "trial_rows": rows, "finish_error": finish_error,
    }


def report(result: dict[str, Any]) -> str:
    keys = ["trials", "slots", "driver_s", "tune_span_s", "sum_wall_s", "sum_train_s", "efficiency",
            "efficiency_tune_span", "efficiency_training_only", "fixed_cost_per_trial_s", "fixed_in_run_trial_s",
            "fixed_worker_around_run_trial_s", "fixed_driver_and_idle_s"]
    text = table([{k: result[k] for k in keys}], keys[:7]) + "\n" + table([{k: result[k] for k in keys}], keys[7:])
    text += "\n\n" + table(result["trial_rows"], ["trial", "d x L", "tokens", "start_s", "trainable_s", "wall_s", "train_s"])
    est = result["estimate"]
    text += (f"\n\nestimate before running: {est['total_flops']:.3e} FLOPs, {est['makespan_s']:.0f} s on {est['slots']} slots; "
             f"actual: {result['actual_flops']:.3e} FLOPs, {result['driver_s']:.0f} s (error {result['estimate_error']:+.0%})")
    return text


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="3 smoke-preset trials (CI)")
    p.add_argument("--preset", default=None)
    p.add_argument("--budgets", type=float, nargs="+", default=None)
    p.add_argument("--points", type=int, default=None)
    p.add_argument("--slots", type=int, default=2)
    p.add_argument("--reuse-actors", action="store_true", help="run with TuneConfig(reuse_actors=True)")
    args = p.parse_args(argv)
    if args.quick:
        preset, budgets, points = args.preset or "smoke", args.budgets or [1e10], args.points or 3
    else:  # 12 tiny-preset trials that last 20 s or more each on this machine
        preset, budgets, points = args.preset or "tiny", args.budgets or [6e11, 1e12], args.points or 6
    result = {"benchmark": "sweep", "quick": args.quick,
              **run(preset, args.slots, args.quick, args.reuse_actors, budgets=tuple(budgets), points_per_budget=points, n_boot=0)}
    emit(result, report(result))
    return result


if __name__ == "__main__":
    main()
