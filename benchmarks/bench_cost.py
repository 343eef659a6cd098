"""Item 5: sweep cost. Total FLOPs and wall time of the ``tiny`` preset, estimated before it
runs (``flops_fit.engine.estimate.estimate_sweep_seconds``: a quick throughput probe of each
distinct model shape + the measured fixed cost per trial, packed longest-first onto the
slots), then compared with what the real sweep took (``--no-run`` prints the estimate only,
as ``flops-fit plan`` does).

    python benchmarks/bench_cost.py [--quick] [--no-run] [--reuse-actors]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, load, table  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke preset, 3 trials")
    p.add_argument("--preset", default=None)
    p.add_argument("--no-run", action="store_true")
    p.add_argument("--reuse-actors", action="store_true")
    p.add_argument("--slots", type=int, default=2)
    args = p.parse_args(argv)

    from flops_fit.config import preset as get_preset
    from flops_fit.engine.estimate import estimate_sweep_seconds, format_estimate
    from flops_fit.planning.grid import plan

    name = args.preset or ("smoke" if args.quick else "tiny")
    overrides = {"budgets": (1e10,), "points_per_budget": 3} if args.quick else {}
    cfg = get_preset(name).replace(**overrides)
    specs = plan(cfg.plan)
    load_start = load()
    t0 = time.perf_counter()
    est = estimate_sweep_seconds(specs, cfg.cpus_per_trial, args.slots)
    probe_s = time.perf_counter() - t0
    result = {"benchmark": "cost", "quick": args.quick, "preset": name, "trials": len(specs),
              "estimate_total_flops": est["total_flops"], "estimate_trial_seconds": est["trial_seconds"],
              "estimate_makespan_s": est["makespan_s"], "estimate_probe_s": probe_s, "slots": est["slots"],
              "load_start": load_start, "estimate_line": format_estimate(est)}
    rows = [{"what": "estimate (before running)", "FLOPs": est["total_flops"], "trial_s": est["trial_seconds"],
             "wall_s": est["makespan_s"], "load": load_start}]
    if not args.no_run:
        import bench_sweep

        real = bench_sweep.run(name, args.slots, args.quick, args.reuse_actors, n_boot=0, **overrides)
        result.update(actual_total_flops=real["actual_flops"], actual_sum_wall_s=real["sum_wall_s"],
                      actual_driver_s=real["driver_s"], actual_tune_span_s=real["tune_span_s"],
                      wall_error=est["makespan_s"] / real["driver_s"] - 1.0, reuse_actors=args.reuse_actors,
                      load_run_end=real["load_end"])
        rows.append({"what": "actual sweep", "FLOPs": real["actual_flops"], "trial_s": real["sum_wall_s"],
                     "wall_s": real["driver_s"], "load": real["load_end"]})
    emit(result, result["estimate_line"] + "\n" + table(rows, ["what", "FLOPs", "trial_s", "wall_s", "load"]))
    return result


if __name__ == "__main__":
    main()
