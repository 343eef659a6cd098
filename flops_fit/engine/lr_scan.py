"""``flops-fit tune``: measure the learning-rate rule a sweep then uses.

Standard parametrization has no learning rate that transfers across widths, so the rule is
measured on the grid it will serve: three sizes spanning the sweep's grid (the smallest
budget's central size, the largest budget's central and largest sizes, each at its own
budget and token count, so the scan sees the step counts the sweep will), each trained at
five peak learning rates a factor of two apart around the configured rule. Each size's
optimum is the vertex of a parabola in ln lr (``flops_fit.planning.recipe.locate_optimum``); the rule
is the power law in N through the three optima (Porian et al. 2024, §4, fit the optimal
AdamW learning rate as a power law in N the same way). A second stage checks it: each size
trained at the rule's learning rate and at its best scanned one, ``CHECK_SEEDS`` seeds each
(the scan's own run is the best rate's first), so the rule is judged by its mean loss against
the best rate's, with the seed noise measured at that size.

Everything runs on the engine's backend as two small experiments in the tune directory
(``<storage_path>/<name>/scan`` and ``.../check``, resumable like a sweep), and the result
is ``<storage_path>/<name>/recipe.json``: ``flops-fit sweep --recipe <that directory>``.
Nothing here imports torch or Ray.
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
import sys
from typing import TYPE_CHECKING, Any, Sequence

from flops_fit.config import SweepConfig
from flops_fit.data.stories import setup_of
from flops_fit.engine.storage import prepare_storage
from flops_fit.engine.sweep import Backend, default_workload, resolve_config, run_experiment
from flops_fit.errors import PlanError
from flops_fit.planning.grid import TrialSpec, format_plan, plan
from flops_fit.planning.recipe import Recipe, SizeOptimum, fit_rule, locate_optimum, save
from flops_fit.results.table import TRAINED_STATUSES

if TYPE_CHECKING:
    from flops_fit.workloads.base import Workload

#: A sweep's own tune stage (``sweep(tune=True)``) lives in this subdirectory.
LR_SCAN_DIR = "tune"
#: Peak learning rates scanned, as multiples of the configured rule's (a factor of 2 apart).
LR_MULTIPLIERS = (0.25, 0.5, 1.0, 2.0, 4.0)
#: Seeds per rate in the check. One is not enough: on the tiny grid the largest size (104x2,
#: 442 steps) lands 1.28-1.48 nats across three seeds at one rate, and one unlucky seed made a
#: rule 16% off the scan's best look 0.18 nats worse (it is 0.02, over three seeds each).
CHECK_SEEDS = 3


def scan_sizes(grid: Sequence[TrialSpec]) -> list[TrialSpec]:
    """Three trials spanning the grid: the smallest budget's central size and the largest
    budget's central and largest sizes (the last is where runs stall on the plateau)."""
    low, high, seed = min(s.budget for s in grid), max(s.budget for s in grid), grid[0].seed  # replicates come last
    first = sorted((s for s in grid if s.budget == low and s.seed == seed), key=lambda s: s.n)
    last = sorted((s for s in grid if s.budget == high and s.seed == seed), key=lambda s: s.n)
    picked: dict[int, TrialSpec] = {}
    for spec in (first[len(first) // 2], last[len(last) // 2], last[-1]):
        picked.setdefault(spec.n, spec)
    for spec in (last[0], first[0], *first, *last):  # a narrow grid where those coincide: the next sizes
        if len(picked) < 3:
            picked.setdefault(spec.n, spec)
    if len(picked) < 3:
        raise PlanError("tune needs three distinct sizes; use a grid of two or more budgets")
    return sorted(picked.values(), key=lambda s: s.n)


def _with_lr(spec: TrialSpec, lr: float, tag: str, seed: int | None = None) -> TrialSpec:
    """``spec`` at another rate (and seed): a WSD branch becomes a stem of its own, trained
    from the start at that rate, as the rule it measures is a stem's constant rate."""
    trial_id = f"{spec.trial_id}_{tag}"
    stem = dict(stem=trial_id, stem_start=0, stem_tokens=spec.tokens) if spec.stem else {}
    return dataclasses.replace(spec, lr=lr, trial_id=trial_id, seed=spec.seed if seed is None else seed, **stem)


def _loss(row: dict[str, Any]) -> float | None:
    return row["loss"] if row["status"] in TRAINED_STATUSES else None


def scan_learning_rates(config: SweepConfig | None = None, *, backend: Backend, preset: str | None = None,
         workload: Workload | None = None, progress: bool = True, lr_multipliers: Sequence[float] = LR_MULTIPLIERS,
         **overrides: Any) -> Recipe:
    """Scan, fit and check the learning-rate rule for ``config``'s grid on ``backend``; writes
    and returns the recipe (``flops_fit.ray.tune`` runs it on Ray). ``lr_multipliers``: the
    scanned rates as multiples of the configured rule's."""
    cfg = resolve_config(config, preset, **overrides).replace(replicates=0, tune=False)
    workload = workload or default_workload(cfg)
    workload.prepare(cfg.plan)
    sizes = workload.size_table(cfg.plan)
    picked = scan_sizes(plan(sizes.cfg, sizes=sizes))
    scan = [_with_lr(s, s.lr * m, f"lr{m:g}") for s in picked for m in lr_multipliers]
    workload.preflight(scan)
    run_dir = prepare_storage(cfg)
    out = sys.stdout if progress else open(os.devnull, "w")
    print(f"tune {run_dir}: {len(lr_multipliers)} learning rates at each of {len(picked)} sizes\n"
          + format_plan(scan), file=out, flush=True)
    rows = run_experiment(cfg, backend, workload, scan, run_dir / "scan", progress)
    optima = []
    for spec in picked:
        mine = [(r["lr"], _loss(r)) for r in rows if r["trial_id"].startswith(spec.trial_id + "_lr")]
        lr, loss, edge = locate_optimum([lr for lr, _ in mine], [loss for _, loss in mine])
        optima.append(SizeOptimum(n=spec.n, label=spec.label, budget=spec.budget, lr_best=lr, loss_best=loss,
                                  edge=edge, batch_tokens=spec.batch_size * spec.seq_len))
    rule = fit_rule(optima, cfg.plan.lr_batch_exponent)  # the batch exponent the sweep applies (--lr-batch-exponent)
    recipe = Recipe(**rule, scan=[_scan_row(r) for r in rows], optima=optima, measured_on=setup_of(cfg),
                    command=_command())
    # The check: the rule's learning rate at each size and the best scanned one, CHECK_SEEDS
    # seeds each (the scan's run is the best's first): mean against mean, noise measured there.
    best_runs = {o.n: min((r for r in rows if r["n"] == o.n and _loss(r) is not None), key=_loss) for o in optima}
    check_specs = [_with_lr(s, recipe.lr(s.n, s.batch_size * s.seq_len), _seed_tag("rule", k), seed=s.seed + k)
                   for s in picked for k in range(CHECK_SEEDS)]
    check_specs += [_with_lr(s, best_runs[s.n]["lr"], _seed_tag("best", k), seed=s.seed + k)
                    for s in picked for k in range(1, CHECK_SEEDS)]
    checked = run_experiment(cfg, backend, workload, check_specs, run_dir / "check", progress)
    recipe = dataclasses.replace(recipe, check=_check(picked, best_runs, checked), source=str(run_dir))
    path = save(recipe, run_dir)  # the file leaves out ``source``: where it is read from says that
    print(format_recipe(recipe) + f"\nrecipe: {path} (flops-fit sweep --recipe {run_dir})", file=out, flush=True)
    return recipe


def tune_first(cfg: SweepConfig, backend: Backend, workload: Workload | None = None,
               progress: bool = True) -> SweepConfig:
    """``sweep(tune=True)``: measure the rule on this sweep's own grid as its first stage, in
    ``<sweep>/tune/`` (a rerun resumes it, so nothing trains twice and the rule, hence every
    trial's rate and the sweep's manifest, comes out the same), and return the config that
    sweeps with it."""
    run_dir = prepare_storage(cfg)
    scan_learning_rates(cfg.replace(storage_path=str(run_dir), name=LR_SCAN_DIR), backend=backend, workload=workload, progress=progress)
    return cfg.replace(recipe=str(run_dir / LR_SCAN_DIR), tune=False)


def _command() -> str:
    """The command line that measured the recipe (``flops-fit tune ...`` or ``sweep --tune``)."""
    return "flops-fit " + " ".join(sys.argv[1:]) if sys.argv[1:2] in (["tune"], ["sweep"]) else "tune()"


def _scan_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("trial_id", "n", "budget", "steps", "batch_size", "lr", "loss", "status")}


def _seed_tag(rate: str, k: int) -> str:
    """The trial-id suffix of the check's run at ``rate`` ("rule" or "best") and seed offset ``k``."""
    return rate if k == 0 else f"{rate}_s{k}"


def _check(picked: list[TrialSpec], best_runs: dict[int, dict[str, Any]],
           checked: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per size, the rule's mean loss over its seeds minus the best scanned rate's; "within
    seed noise" when that gap is at most the root-mean-square difference two seeds of one run
    show at that size (sqrt(2) times the two groups' pooled standard deviation). A rule run
    that did not train (diverged, failed) is no pass."""
    by_id = {r["trial_id"]: r for r in checked}
    rows = []
    for spec in picked:
        best = best_runs[spec.n]
        rule_losses = [_loss(by_id[f"{spec.trial_id}_{_seed_tag('rule', k)}"]) for k in range(CHECK_SEEDS)]
        best_losses = [_loss(best)] + [_loss(by_id[f"{spec.trial_id}_{_seed_tag('best', k)}"])
                                       for k in range(1, CHECK_SEEDS)]
        groups = [[x for x in g if x is not None] for g in (rule_losses, best_losses)]
        means = [statistics.fmean(g) if g else None for g in groups]
        dof = sum(len(g) - 1 for g in groups if g)
        pooled_var = sum((len(g) - 1) * statistics.variance(g) for g in groups if len(g) > 1) / dof if dof else None
        noise = math.sqrt(2 * pooled_var) if pooled_var is not None else None
        gap = means[0] - means[1] if None not in means else None
        if None in rule_losses:
            within = False
        elif gap is None or noise is None:
            within = None
        else:
            within = bool(gap <= noise)
        rows.append({"n": spec.n, "label": spec.label, "lr_rule": by_id[f"{spec.trial_id}_rule"]["lr"],
                     "loss_rule": means[0], "lr_best": best["lr"], "loss_best": means[1],
                     "losses_rule": rule_losses, "losses_best": best_losses, "gap": gap, "seed_noise": noise,
                     "within_noise": within})
    return rows


def format_recipe(recipe: Recipe) -> str:
    """The recipe's summary and its check, one size a line (losses: means over the seeds)."""
    lines = [recipe.summary(), f"{'size':>8} {'N':>9} {'lr rule':>9} {'loss rule':>9} {'lr best':>9} "
             f"{'loss best':>9} {'seeds':>5} {'gap':>7} {'noise':>7}"]
    for c in recipe.check:
        def f(v: Any, fmt: str = "9.4f") -> str:
            return format(v, fmt) if v is not None else "-".rjust(int(fmt.split(".")[0]))
        seeds = len(c.get("losses_rule", [None]))  # a recipe written before CHECK_SEEDS: one
        lines.append(f"{c['label']:>8} {c['n']:9,d} {c['lr_rule']:9.2e} {f(c['loss_rule'])} {c['lr_best']:9.2e} "
                     f"{f(c['loss_best'])} {seeds:5d} {f(c['gap'], '7.4f')} {f(c['seed_noise'], '7.4f')}")
    return "\n".join(lines)
