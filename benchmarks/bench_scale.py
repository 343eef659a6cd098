"""The driver at scale: N simulated trials through the public ``sweep()`` on a loopback Ray
with logical GPUs (simulated trials never touch one), as a GPU sweep is designed in seconds.

Prints, as JSON: trials, wall seconds of the ``sweep()`` call and per trial, the Tune
experiment state's bytes per trial, the driver's peak RSS, and how many trainable actors the
cluster created (a fresh process per trial, or a few reused ones).

    python benchmarks/bench_scale.py [--trials 200] [--gpus-per-trial 1] [--cpus-per-trial C] [--quick]
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, load, table  # noqa: E402


def budgets_for(trials: int, points: int) -> list[float]:
    """Budgets 1.5x apart from 1e17, enough for ``trials`` grid points at ``points`` a budget."""
    return [1e17 * 1.5**i for i in range(math.ceil(trials / points))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--points", type=int, default=7, help="sizes per budget")
    ap.add_argument("--gpus-per-trial", type=float, default=1.0, help="what the real sweep would ask for")
    ap.add_argument("--cpus-per-trial", type=float, default=4.0, help="what the real sweep would ask for")
    ap.add_argument("--logical-gpus", type=int, default=64)
    ap.add_argument("--quick", action="store_true", help="7 trials (the test suite's check)")
    args = ap.parse_args()
    trials = 7 if args.quick else args.trials

    import ray

    from flops_fit.fitting.synthetic import DEFAULT_SIMULATED_LAW
    from flops_fit.ray import sweep
    from flops_fit.ray.backend import start_private_ray

    start_private_ray(num_gpus=args.logical_gpus)
    storage = tempfile.mkdtemp(prefix="bench_scale")
    t0 = time.perf_counter()
    result = sweep(preset="tinystories-gpu", simulate=dict(DEFAULT_SIMULATED_LAW),
                   budgets=budgets_for(trials, args.points), points_per_budget=args.points, span=10.0,
                   replicates=0, adapt=False, gpus_per_trial=args.gpus_per_trial, cpus_per_trial=args.cpus_per_trial,
                   storage_path=storage, name="scale", n_boot=0, progress=False)
    wall = time.perf_counter() - t0
    from ray._private.state import actors  # every actor ever made, dead ones too (no dashboard here)

    made = sum(a.get("ActorClassName") == "ImplicitFunc" for a in actors().values())
    ray.shutdown()
    n = len(result.results)
    state = sum(os.path.getsize(p) for p in glob.glob(os.path.join(storage, "scale", "experiment_state*.json")))
    out = {"quick": args.quick, "trials": n, "ok": int((result.results["status"] == "ok").sum()),
           "wall_s": round(wall, 2), "s_per_trial": round(wall / n, 3),
           "tune_state_bytes_per_trial": round(state / n), "driver_peak_rss_mb":
           round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "trainable_actors": made,
           "gpus_per_trial_real": args.gpus_per_trial, "logical_gpus": args.logical_gpus, "load_start": load()}
    emit(out, table([out], ["trials", "ok", "wall_s", "s_per_trial", "tune_state_bytes_per_trial",
                            "driver_peak_rss_mb", "trainable_actors"]))


if __name__ == "__main__":
    main()
