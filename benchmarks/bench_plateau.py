"""When does a trial leave the initial loss plateau?

Takes the largest model of chosen budgets of a preset's plan (the runs the tiny demo recorded
``undertrained``), and trains each at its planned step count and at longer ones, with the
planned peak learning rate and multiples of it. Prints the final validation loss, the first
logged step whose training loss is below the plateau level (``flops_fit.data.baselines``),
and the status the sweep would record. In-process, one thread per run, no Ray.

    python benchmarks/bench_plateau.py [--preset tiny] [--lr-mult 0.33 1 3] [--step-mult 1 3]
    python benchmarks/bench_plateau.py --quick   # the smoke preset's smallest budget, once: seconds
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, load, table  # noqa: E402

from flops_fit.config import TrainOptions, preset  # noqa: E402
from flops_fit.engine.sweep import default_workload  # noqa: E402
from flops_fit.planning.rules import TrainingRules  # noqa: E402


def first_below(curve: list[dict], level: float) -> int | None:
    return next((p["step"] for p in curve if p["train_loss"] < level), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--budgets", type=float, nargs="+", default=None, help="default: every budget of the preset")
    ap.add_argument("--lr-mult", type=float, nargs="+", default=[0.33, 1.0, 3.0])
    ap.add_argument("--step-mult", type=float, nargs="+", default=[1.0, 3.0])
    ap.add_argument("--beta2", type=float, nargs="+", default=[None], help="AdamW beta2 values (default: the plan's)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[None], help="seeds (default: the plan's)")
    ap.add_argument("--quick", action="store_true", help="smoke preset, smallest budget, planned LR and steps")
    args = ap.parse_args()
    if args.quick:
        args.preset, args.budgets, args.lr_mult, args.step_mult = "smoke", [1e10], [1.0], [1.0]

    from flops_fit.trainer.trial import run_trial

    cfg = preset(args.preset).replace(replicates=0)
    workload = default_workload(cfg)
    workload.prepare(cfg.plan)
    specs = workload.plan(cfg.plan)
    workload.preflight(specs)  # sets the plateau level
    budgets = args.budgets or sorted({s.budget for s in specs})
    largest = [max((s for s in specs if s.budget == b), key=lambda s: s.n) for b in budgets]
    rows = []
    for base in largest:
        for sm, lm, b2, seed in itertools.product(args.step_mult, args.lr_mult, args.beta2, args.seeds):
            steps = max(base.warmup_steps + 1, round(base.steps * sm))
            spec = dataclasses.replace(base, trial_id=f"{base.trial_id}_x{sm:g}_lr{lm:g}_b{b2}_s{seed}", steps=steps,
                                       lr=base.lr * lm, beta2=b2 or base.beta2,
                                       seed=base.seed if seed is None else seed,
                                       warmup_steps=TrainingRules(cfg.plan).warmup(base.n, base.batch_size, steps))
            t0 = time.perf_counter()
            m = run_trial(spec, workload, TrainOptions(threads=1, checkpoint_every_s=1e9)).metrics
            curve = json.loads(m["curve"])
            rows.append({"trial": base.trial_id, "size": base.label, "batch": base.batch_size, "steps": steps,
                         "lr": spec.lr, "beta2": spec.beta2, "seed": spec.seed, "val_loss": m["loss"], "left_plateau_at": first_below(
                             curve, workload.plateau_loss), "status": m["status"],
                         "wall_s": round(time.perf_counter() - t0, 1)})
            print(rows[-1], flush=True)
    text = (f"plateau level {workload.plateau_loss:.3f} nats ({args.preset} preset's text), load {load()}\n"
            + table(rows, ["trial", "size", "batch", "steps", "lr", "beta2", "seed", "val_loss", "left_plateau_at", "status",
                           "wall_s"]))
    emit({"quick": args.quick, "preset": args.preset, "plateau_loss": workload.plateau_loss, "rows": rows}, text)


if __name__ == "__main__":
    main()
