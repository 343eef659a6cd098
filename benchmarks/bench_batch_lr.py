"""How does the best learning rate move with the batch? (the recipe's batch term)

Takes one size of one budget of a preset's plan (default: the largest budget's central size)
and trains it on the same tokens at several batches and several peak learning rates, each a
multiple of the rule's rate *without* its batch term (so the multiples read directly). Prints
each run's validation loss, each batch's best rate (parabola in ln lr, as ``flops-fit tune``
locates it) and the exponent of a power law through them: Adam's square-root rule (Malladi et
al. 2022) says 0.5, and the recipe applies 0.5. In-process, no Ray.

    python benchmarks/bench_batch_lr.py [--preset tiny] [--batches 2 4 8 16] [--lr-mult 0.5 1 2 4]
        [--source stories.txt --recipe runs/<sweep>/tune]   # on other text, with the rule tuned there
    python benchmarks/bench_batch_lr.py --quick   # the smoke preset, two batches, two rates: seconds
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, load, table  # noqa: E402

from flops_fit.config import TrainOptions, preset  # noqa: E402
from flops_fit.engine.sweep import default_workload  # noqa: E402
from flops_fit.planning.grid import plan_trial
from flops_fit.planning.recipe import locate_optimum  # noqa: E402
from flops_fit.planning.rules import TrainingRules  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--budget", type=float, default=None, help="default: the preset's largest budget")
    ap.add_argument("--n", type=float, default=None, help="model size target (default: the budget's central size)")
    ap.add_argument("--batches", type=int, nargs="+", default=[2, 4, 8, 16])
    ap.add_argument("--lr-mult", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0])
    ap.add_argument("--source", default=None, help="the text to train on (default: the preset's; a local file: real text)")
    ap.add_argument("--recipe", default=None, help="a tune directory whose rule the rates are multiples of")
    ap.add_argument("--quick", action="store_true", help="smoke preset, batches 4 and 8, two rates")
    args = ap.parse_args()
    if args.quick:
        args.preset, args.batches, args.lr_mult = "smoke", [4, 8], [1.0, 2.0]

    from flops_fit.trainer.trial import run_trial

    cfg = preset(args.preset).replace(replicates=0, **{k: v for k, v in (("source", args.source),
                                                                         ("recipe", args.recipe)) if v})
    workload = default_workload(cfg)
    workload.prepare(cfg.plan)
    sizes = workload.size_table(cfg.plan)
    specs = workload.plan(cfg.plan)
    budget = args.budget or max(s.budget for s in specs)
    if args.n is None:
        mine = sorted((s for s in specs if s.budget == budget), key=lambda s: s.n)
        args.n = mine[len(mine) // 2].n
    rows = []
    for batch, mult in itertools.product(args.batches, args.lr_mult):
        spec = plan_trial(budget, args.n, batch, sizes.cfg, sizes)
        spec = dataclasses.replace(spec, lr=TrainingRules(sizes.cfg).lr(spec.n) * mult)  # the rule at no batch term
        workload.preflight([spec])
        t0 = time.perf_counter()
        m = run_trial(spec, workload, TrainOptions(threads=1, checkpoint_every_s=1e9)).metrics
        rows.append({"n": spec.n, "batch": batch, "batch_tokens": batch * spec.seq_len, "steps": spec.steps,
                     "lr_mult": mult, "lr": spec.lr, "val_loss": m["loss"], "status": m["status"],
                     "wall_s": round(time.perf_counter() - t0, 1)})
        print(rows[-1], flush=True)
    best = []
    for batch in args.batches:
        scan = [r for r in rows if r["batch"] == batch]
        lr, loss, edge = locate_optimum([r["lr"] for r in scan], [r["val_loss"] for r in scan])
        best.append({"batch": batch, "lr_best": lr, "loss_best": loss, "scan_edge": edge})
    xs, ys = [math.log(b["batch"]) for b in best], [math.log(b["lr_best"]) for b in best]
    xm, ym = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - xm) ** 2 for x in xs)  # one batch (a learning-rate scan only): no exponent
    exponent = sum((x - xm) * (y - ym) for x, y in zip(xs, ys)) / spread if spread else math.nan
    text = (f"{args.preset}: budget {budget:.3g}, N {rows[0]['n']:,}, same tokens at every batch; load {load()}\n"
            + table(rows, ["batch", "steps", "lr_mult", "lr", "val_loss", "status", "wall_s"]) + "\n"
            + table(best, ["batch", "lr_best", "loss_best", "scan_edge"])
            + (f"\nbest lr ∝ batch^{exponent:.2f} (square-root rule: 0.5)" if spread else ""))
    emit({"quick": args.quick, "preset": args.preset, "source": args.source, "recipe": args.recipe, "budget": budget,
          "rows": rows, "best": best, "batch_exponent": exponent if spread else None}, text)


if __name__ == "__main__":
    main()
