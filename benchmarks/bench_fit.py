"""Item 4: Approach 3 fit speed. The fit from the full 4,500-point initialisation grid
(Hoffmann et al. 2022, App. D.2), then the same with a 200-sample bootstrap; wall time on
this machine's cores. Data: an IsoFLOP sweep drawn from the Chinchilla law with 0.5% noise
(5 budgets x 9 sizes = 45 runs, the size of a real sweep). Bars: grid fit < 2 s, bootstrap < 60 s.

``--exhaustive`` also times L-BFGS from every one of the 4,500 starts (``top_k=None``).

``--calibration`` instead measures both approaches' bias, 90% coverage and interval width
against the truth on synthetic laws with α ≠ β: two laws x 5 or 7 budgets x grids centred
or 3x off-centre (docs/fitting.md, "Measured calibration"). ``--approach 2`` or ``3`` runs
one (Approach 2 takes ~30 s, Approach 3 ~20 min on 2 shared cores); ``--a3-method`` picks
Approach 3's bootstrap (``residual`` reproduces the rows before the default became ``normal``).

    python benchmarks/bench_fit.py [--quick] [--exhaustive]
    python benchmarks/bench_fit.py --calibration [--seeds 100] [--approach 2|3] [--a3-method normal]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, load, median, table  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one repeat, 20 bootstrap samples")
    p.add_argument("--exhaustive", action="store_true")
    p.add_argument("--n-boot", type=int, default=None)
    p.add_argument("--calibration", action="store_true", help="bias/coverage/width of both approaches")
    p.add_argument("--seeds", type=int, default=100)
    p.add_argument("--approach", choices=("2", "3", "both"), default="both")
    p.add_argument("--a3-method", default="normal", choices=("normal", "residual", "resample"))
    args = p.parse_args(argv)
    if args.calibration:
        return calibration(args.seeds, args.n_boot or 200, args.approach, args.a3_method)
    repeats = 1 if args.quick else 3
    n_boot = args.n_boot or (20 if args.quick else 200)

    from flops_fit.fitting.parametric import INIT_GRID, fit_parametric
    from flops_fit.fitting.synthetic import CHINCHILLA, simulate_isoflop

    df = simulate_isoflop([1e18, 3e18, 1e19, 3e19, 1e20], points_per_budget=9, noise=0.005, seed=0)
    n, d, loss = df["n"].to_numpy(float), df["tokens"].to_numpy(float), df["loss"].to_numpy(float)
    load_start = load()
    rows = []

    def timed(label: str, reps: int, **kw) -> None:
        times, fit = [], None
        for _ in range(reps):
            t0 = time.perf_counter()
            fit = fit_parametric(n, d, loss, **kw)
            times.append(time.perf_counter() - t0)
        row = {"fit": label, "wall_s": median(times), "runs_s": [round(t, 3) for t in times],
               "alpha": float(fit.alpha), "beta": float(fit.beta), "E": float(fit.E), "load": load()}
        boot = getattr(fit, "bootstrap", None)
        if boot is not None:
            row.update(n_boot=boot.n_boot, n_failed=boot.n_failed,
                       alpha_interval=[float(v) for v in fit.interval(lambda f: f.alpha)])
        rows.append(row)
        print(f"  {label}: {row['wall_s']:.3f} s", file=sys.stderr)

    timed("grid (4500 starts scored, default top_k)", repeats)
    timed(f"grid + bootstrap n_boot={n_boot}", repeats, n_boot=n_boot)
    if args.exhaustive:
        timed("L-BFGS from all 4500 starts (top_k=None)", 1, top_k=None)
    result = {"benchmark": "fit", "quick": args.quick, "points": int(len(n)), "grid_points": int(len(INIT_GRID)),
              "true": {"alpha": CHINCHILLA.alpha, "beta": CHINCHILLA.beta, "E": CHINCHILLA.E},
              "load_start": load_start, "rows": rows,
              "grid_fit_s": rows[0]["wall_s"], "bootstrap_fit_s": rows[1]["wall_s"], "n_boot": n_boot}
    emit(result, table(rows, ["fit", "wall_s", "alpha", "beta", "E", "load"]))
    return result


def calibration(seeds: int, n_boot: int, which: str = "both", a3_method: str = "normal") -> dict:
    import math

    import numpy as np

    from flops_fit.fitting.isoflop import fit_isoflop
    from flops_fit.fitting.parametric import fit_parametric
    from flops_fit.fitting.synthetic import ASYMMETRIC, CHINCHILLA, interval_coverage

    def approach2(t):
        f = fit_isoflop(t.budget, t.n, t.loss, t.tokens, n_boot=n_boot)
        return f.a, f.interval(lambda g: g.a)

    def approach3(t):
        f = fit_parametric(t.n, t.tokens, t.loss, n_boot=n_boot, method=a3_method)
        return f.a, f.interval(lambda g: g.a)

    rows = []
    chosen = {"2": ("Approach 2",), "3": ("Approach 3",)}.get(which, ("Approach 2", "Approach 3"))
    for name, est in (("Approach 2", approach2), ("Approach 3", approach3)):
        if name not in chosen:
            continue
        for law_name, law in (("Chinchilla", CHINCHILLA), ("asymmetric", ASYMMETRIC)):
            for budgets in (5, 7):
                for off in (0.0, math.log10(3)):
                    c = interval_coverage(est, law, np.logspace(18, 22, budgets), seeds, centre_offset=off)
                    rows.append({"approach": name, "law": law_name, "budgets": budgets,
                                 "grid": "3x off-centre" if off else "centred", "bias": round(c.bias, 4),
                                 "coverage": round(c.coverage, 3), "width_ratio": round(c.width_ratio, 3)})
                    print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    result = {"benchmark": "fit_calibration", "seeds": seeds, "n_boot": n_boot, "a3_method": a3_method,
              "rows": rows}
    emit(result, table(rows, ["approach", "law", "budgets", "grid", "bias", "coverage", "width_ratio"]))
    return result


if __name__ == "__main__":
    main()
