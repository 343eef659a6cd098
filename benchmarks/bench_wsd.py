"""Warmup-stable-decay against cosine on the same budgets: FLOPs spent, wall time, the
loss of every (N, D) point both trained, and Approach 2's exponent from each.

    python benchmarks/bench_wsd.py                       # tiny settings, 5 budgets 2x apart, f 0.2 and 0.1
    python benchmarks/bench_wsd.py --fractions 0.2       # one cooldown fraction
    python benchmarks/bench_wsd.py --quick               # the smoke preset, f 0.2, a minute (tests/test_benchmarks.py)

Every sweep is a fixed grid (``adapt=False``) with the same seeds, run one after another
on this machine (2 cores: never two timings at once). A point both schedules trained has the
same trial id (budget and model); its token counts differ only by the rounding to whole
steps of each one's batch. Agreement is read in ln L against the seed noise each sweep
measures from its replicates: two runs of one point differ by about sqrt(2)·σ from seeds
alone. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (offline, quiet: set before Ray is imported)

from flops_fit.config import preset
from flops_fit.ray import sweep

BUDGETS = (1e11, 2e11, 4e11, 8e11, 1.6e12)


def run(base, storage: Path, name: str, **changes) -> tuple[object, float]:
    cfg = base.replace(storage_path=str(storage), name=name, adapt=False, **changes)
    t0 = time.perf_counter()
    result = sweep(cfg, progress=False)
    return result, time.perf_counter() - t0


def summary(result, wall: float) -> dict:
    fit = result.isoflop
    return {"wall_s": round(wall, 1), "trials": len(result.results), **result.compute(),
            "a": None if fit is None or not fit.usable else round(float(fit.a), 4),
            "a_interval": None if fit is None or not fit.usable or fit.interval(lambda f: f.a) is None
            else [round(float(v), 4) for v in fit.interval(lambda f: f.a)],
            "sigma_lnL": None if not result.noise.measured else round(float(result.noise.sigma), 4)}


def agreement(cosine, wsd) -> dict:
    """Branch minus cosine run, for every point both trained with a finite loss."""
    c = cosine.results.set_index("trial_id")
    w = wsd.results.set_index("trial_id")
    both = [t for t in w.index if t in c.index and c.loc[t, "status"] == "ok" and w.loc[t, "status"] == "ok"]
    diffs = [float(w.loc[t, "loss"] - c.loc[t, "loss"]) for t in both]
    ln = [math.log(w.loc[t, "loss"] / c.loc[t, "loss"]) for t in both]
    return {"points": len(both),
            "loss_diff_mean": round(sum(diffs) / len(diffs), 4) if diffs else None,
            "loss_diff_max_abs": round(max(map(abs, diffs)), 4) if diffs else None,
            "lnL_diff_mean": round(sum(ln) / len(ln), 4) if ln else None,
            "lnL_diff_rms": round(math.sqrt(sum(v * v for v in ln) / len(ln)), 4) if ln else None,
            "by_point": {t: round(d, 4) for t, d in zip(both, diffs)}}


def cosine_floor_control(base, storage: Path, floor: float, budgets: tuple[float, ...]) -> dict:
    """The cosine sweep's points of ``budgets`` trained again in this process with cosine
    decaying to ``floor`` x the peak instead of a tenth: does the rate a run ends at explain a
    difference? (One thread, as a sweep's trial: at floor 0.1 this reproduces its losses.)"""
    import flops_fit.planning.schedule as schedule
    import flops_fit.trainer.trial as trial
    from flops_fit.config import TrainOptions
    from flops_fit.workloads.gpt import ReferenceGPT

    cfg = base.replace(adapt=False, replicates=0)
    workload = ReferenceGPT.on(cfg.data)
    workload.prepare(cfg.plan)
    specs = [s for s in workload.plan(cfg.plan) if s.budget in budgets]
    workload.preflight(specs)
    shape = schedule.lr_multiplier
    trial.lr_multiplier = lambda spec, step: shape(spec, step, min_ratio=floor)
    try:
        losses = {s.trial_id: trial.run_trial(s, workload, TrainOptions(threads=1, checkpoint_every_s=1e9)).metrics["loss"]
                  for s in specs}
    finally:
        trial.lr_multiplier = shape
    swept = __import__("pandas").read_parquet(storage / "cosine" / "results.parquet").set_index("trial_id")["loss"]
    return {t: {"floor": round(v, 4), "sweep": round(float(swept[t]), 4)} for t, v in losses.items() if t in swept}


def wsd_rates_control(base, storage: Path, budgets: tuple[float, ...]) -> dict:
    """The WSD sweep's branches of ``budgets`` trained again in this process, each alone from
    step 0 (bit for bit what continuing its stem gives), at the *cosine* recipe's rates: is it
    the two recipes or the schedule's shape that separates the two sweeps?"""
    from flops_fit.config import TrainOptions
    from flops_fit.trainer.trial import run_trial
    from flops_fit.workloads.gpt import ReferenceGPT

    cfg = base.replace(adapt=False, replicates=0, schedule="wsd", recipe="tiny")
    workload = ReferenceGPT.on(cfg.data)
    workload.prepare(cfg.plan)
    specs = [s for s in workload.plan(cfg.plan) if s.budget in budgets and not s.trial_id.endswith("_x")]
    workload.preflight(specs)
    wsd = __import__("pandas").read_parquet(storage / "wsd_f0.2" / "results.parquet").set_index("trial_id")["loss"]
    cosine = __import__("pandas").read_parquet(storage / "cosine" / "results.parquet").set_index("trial_id")["loss"]
    out = {}
    for s in specs:
        loss = run_trial(s, workload, TrainOptions(threads=1, checkpoint_every_s=1e9)).metrics["loss"]
        out[s.trial_id] = {"wsd_cosine_rates": round(loss, 4), "wsd": round(float(wsd.get(s.trial_id, float("nan"))), 4),
                           "cosine": round(float(cosine.get(s.trial_id, float("nan"))), 4)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the smoke preset's two budgets (seconds)")
    parser.add_argument("--fractions", type=float, nargs="+", default=None, help="cooldown fractions (0.2 0.1)")
    parser.add_argument("--budgets", type=float, nargs="+", default=None)
    parser.add_argument("--storage", default=None, help="sweep directories (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=0, help="the sweeps' seed (replicates take the next ones)")
    parser.add_argument("--wsd-rates-control", action="store_true",
                        help="also train the two smallest budgets' WSD branches at the cosine recipe's rates")
    parser.add_argument("--cosine-floor", type=float, default=None,
                        help="also train the two smallest budgets' cosine points ending at this fraction of the peak")
    args = parser.parse_args()
    base = preset("smoke") if args.quick else preset("tiny")
    budgets = tuple(args.budgets or ((1e10, 2e10) if args.quick else BUDGETS))
    storage = Path(args.storage or tempfile.mkdtemp(prefix="bench_wsd_"))
    base = base.replace(budgets=budgets, cache_dir=str(storage / "cache"), seed=args.seed)
    cosine, wall = run(base, storage, "cosine", schedule="cosine")
    out = {"quick": args.quick, "seed": args.seed, "budgets": list(budgets), "preset": "smoke" if args.quick else "tiny",
           "cosine": summary(cosine, wall)}
    for f in args.fractions or ([0.2] if args.quick else [0.2, 0.1]):
        wsd, wall = run(base, storage, f"wsd_f{f:g}", schedule="wsd", cooldown_fraction=f)
        key = f"wsd_f{f:g}"
        out[key] = summary(wsd, wall)
        out[key]["flops_vs_cosine_grid"] = round(out[key]["flops_spent"] / out["cosine"]["flops_spent"], 4)
        out[key]["agreement"] = agreement(cosine, wsd)
        a, b = out["cosine"]["a"], out[key]["a"]
        out[key]["a_minus_cosine_a"] = None if a is None or b is None else round(b - a, 4)
    if args.cosine_floor is not None:
        out["cosine_floor_control"] = cosine_floor_control(base, storage, args.cosine_floor, budgets[:2])
    if args.wsd_rates_control:
        out["wsd_rates_control"] = wsd_rates_control(base, storage, budgets[:2])
    out["machine"], out["load_end"] = _common.machine(), _common.load()
    print(f"{'sweep':>10} {'trials':>6} {'FLOPs spent':>12} {'vs cosine':>9} {'wall s':>7} {'a':>7} "
          f"{'mean dL':>8} {'max |dL|':>8}")
    for key in [k for k in out if k == "cosine" or k.startswith("wsd_f")]:
        r, agree = out[key], out[key].get("agreement", {})
        print(f"{key:>10} {r['trials']:6d} {r['flops_spent']:12.3e} {r.get('flops_vs_cosine_grid', 1.0):9.3f} "
              f"{r['wall_s']:7.1f} {r['a'] if r['a'] is not None else float('nan'):7.3f} "
              f"{agree.get('loss_diff_mean') or 0.0:8.4f} {agree.get('loss_diff_max_abs') or 0.0:8.4f}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
