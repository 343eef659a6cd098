"""The driver at scale: N simulated trials through the public ``sweep()`` on a loopback Ray
with logical GPUs (simulated trials never touch one), as a GPU sweep is designed in seconds.

Prints, as JSON: trials, wall seconds of the ``sweep()`` call and per trial (and of the fits
alone, which ``sweep()`` runs at its end), the Tune experiment state's bytes per trial, the
driver's peak RSS, how many trainable actors the cluster created, and (``--resume``) the time
a rerun takes to finish the sweep after its driver was SIGKILLed halfway, with the number of
finished trials it trained again (the target is none).

    python benchmarks/bench_scale.py [--trials 1000] [--gpus-per-trial 1] [--cpus-per-trial C] [--resume] [--quick]
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, load, table  # noqa: E402


def budgets_for(trials: int, points: int) -> list[float]:
    """Enough budgets for ``trials`` grid points at ``points`` a budget, log-spaced over
    1e17-1e21 (the GPU preset's reach; spaced by a constant factor, a thousand trials would
    plan budgets to 1e42 and token counts past int64, which Tune's TensorBoard logger rejects)."""
    count = math.ceil(trials / points)
    return [1e17 * 1e4 ** (i / max(1, count - 1)) for i in range(count)]


def run_sweep(args: argparse.Namespace, storage: str):
    """The measured call: ``sweep()`` of the GPU preset's design, simulated, on 64 logical GPUs."""
    from flops_fit.fitting.synthetic import DEFAULT_SIMULATED_LAW
    from flops_fit.ray import sweep
    from flops_fit.ray.backend import start_private_ray

    start_private_ray(num_gpus=args.logical_gpus)
    return sweep(preset="tinystories-gpu", simulate=dict(DEFAULT_SIMULATED_LAW),
                 budgets=budgets_for(args.trials, args.points), points_per_budget=args.points, span=10.0,
                 replicates=0, adapt=False, gpus_per_trial=args.gpus_per_trial, cpus_per_trial=args.cpus_per_trial,
                 storage_path=storage, name="scale", n_boot=0, progress=False)


def records(storage: str) -> dict[str, int]:
    """Finished trials' records and their modification times (a retrained trial rewrites its own)."""
    return {os.path.basename(p): os.stat(p).st_mtime_ns for p in glob.glob(os.path.join(storage, "scale", "finished", "*.json"))}


def resume_after_kill(args: argparse.Namespace) -> dict[str, float | int]:
    """Start the sweep in a child process, SIGKILL its whole process group (driver and its
    private Ray) once half the trials have finished, then time a rerun to the end."""
    storage = tempfile.mkdtemp(prefix="bench_scale_resume")
    child = [sys.executable, os.path.abspath(__file__), "--child", storage, "--trials", str(args.trials),
             "--points", str(args.points), "--gpus-per-trial", str(args.gpus_per_trial),
             "--cpus-per-trial", str(args.cpus_per_trial), "--logical-gpus", str(args.logical_gpus)]
    proc = subprocess.Popen(child, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 1800
    while len(records(storage)) < args.trials // 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = records(storage)
    t0 = time.perf_counter()
    rerun = subprocess.run(child, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if rerun.returncode != 0:
        raise SystemExit(f"the resumed sweep failed:\n{rerun.stderr[-3000:]}")
    after = records(storage)
    return {"resume_s": round(wall, 2), "finished_at_kill": len(before),
            "redone_after_resume": sum(after.get(k) != v for k, v in before.items()), "trials_after_resume": len(after)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--points", type=int, default=7, help="sizes per budget")
    ap.add_argument("--gpus-per-trial", type=float, default=1.0, help="what the real sweep would ask for")
    ap.add_argument("--cpus-per-trial", type=float, default=4.0, help="what the real sweep would ask for")
    ap.add_argument("--logical-gpus", type=int, default=64)
    ap.add_argument("--resume", action="store_true", help="also kill a second sweep's driver halfway and time the rerun")
    ap.add_argument("--quick", action="store_true", help="7 trials (the test suite's check)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)  # one sweep in this storage, nothing printed
    args = ap.parse_args()
    if args.quick:
        args.trials = 7
    if args.child:
        run_sweep(args, args.child)
        return

    import ray

    storage = tempfile.mkdtemp(prefix="bench_scale")
    t0 = time.perf_counter()
    result = run_sweep(args, storage)
    wall = time.perf_counter() - t0
    from ray._private.state import actors  # every actor ever made, dead ones too (no dashboard here)

    made = sum(a.get("ActorClassName") == "ImplicitFunc" for a in actors().values())
    ray.shutdown()
    from flops_fit.results.result import Result

    t1 = time.perf_counter()
    Result.from_path(os.path.join(storage, "scale"), n_boot=0)
    fit_s = time.perf_counter() - t1
    n = len(result.results)
    state = sum(os.path.getsize(p) for p in glob.glob(os.path.join(storage, "scale", "experiment_state*.json")))
    out = {"quick": args.quick, "trials": n, "ok": int((result.results["status"] == "ok").sum()),
           "wall_s": round(wall, 2), "s_per_trial": round(wall / n, 3), "fit_s": round(fit_s, 2),
           "s_per_trial_without_fit": round((wall - fit_s) / n, 3),
           "tune_state_bytes_per_trial": round(state / n), "driver_peak_rss_mb":
           round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "trainable_actors": made,
           "gpus_per_trial_real": args.gpus_per_trial, "logical_gpus": args.logical_gpus, "load_start": load()}
    if args.resume:
        out.update(resume_after_kill(args))
    columns = ["trials", "ok", "wall_s", "s_per_trial", "fit_s", "tune_state_bytes_per_trial", "driver_peak_rss_mb",
               "trainable_actors"] + (["resume_s", "finished_at_kill", "redone_after_resume"] if args.resume else [])
    emit(out, table([out], columns))


if __name__ == "__main__":
    main()
