"""``--verify``: one more trial above the largest swept budget, its loss set beside the prediction.

The check a team makes before spending a large budget: at C_v = factor x the
largest swept budget, train one model at the fitted N_opt (``Result.predict``), planned over the
workload's own size table like every other trial (``flops_fit.planning.grid.plan_trial``, the batch from
``TrainingRules.batch``), and compare its validation loss with the loss the fits predict at the
trial's real (N, D) (whole optimizer steps, a real shape):

- Approach 3's law L(N, D) when it is determined (``Result.law_known``), its bootstrap interval;
- else the Approach 2 frontier of the budgets' IsoFLOP minimum losses, ln(L* - E) = u + v ln C
  (``flops_fit.fitting.frontier.frontier_loss``: E is Approach 3's irreducible loss when the data
  determine E even though the law as a whole is not, else 0, Kaplan et al. 2020's pure power
  law), with a prediction interval from its residuals (the seed noise, when measured, as a
  floor) that spans E's interval;
- else nothing: the loss is reported undetermined, never as a number.

The trial runs through the sweep's backend as its own experiment under
``<sweep>/verify/<trial_id>/`` (the main experiment's resume is untouched); its results row is
kept there as ``results.parquet``, so a rerun reuses a finished one instead of training it again.
The record (``verify/verification.json``, ``flops_fit.results.verification``) is what
``Result.verification`` and fits.json hold. Free of Ray and torch: the engine hands in the
function that runs one trial.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from flops_fit.atomic import atomic_write_text
from flops_fit.errors import PlanError
from flops_fit.planning.grid import TrialSpec, grid_targets, plan_trial
from flops_fit.planning.rules import TrainingRules
from flops_fit.results.table import FINISHED_STATUSES, RESULTS_FILENAME, read_results, write_results
from flops_fit.results.verification import RECORD, RECORD_KEYS, VERIFY_DIR, make_record

if TYPE_CHECKING:
    from flops_fit.config import SweepConfig
    from flops_fit.planning.sizes import SizeTable
    from flops_fit.results.result import Result
    from flops_fit.workloads.base import Workload

RunTrial = Callable[[TrialSpec, Path], dict[str, Any]]
"""Runs one trial as its own experiment in the given directory; returns its results row."""


def plan_verification(result: Result, cfg: SweepConfig, sizes: SizeTable) -> tuple[TrialSpec, str]:
    """The verification trial at C_v and the fitted N_opt, and where its N came from. With no
    usable fit N is the plan's tokens-per-parameter prior (the size the grid is centred on)."""
    budget = cfg.verify * max(cfg.plan.budgets)
    try:
        p = result.predict(budget)
        target, n_source = _in_size_count(sizes, p.n), p.primary_label
    except ValueError:  # no usable fit: the centre a grid at this budget would have (its geometric mean)
        targets = grid_targets(budget, sizes.cfg, sizes)
        target = math.exp(sum(math.log(t) for t in targets) / len(targets))
        n_source = "the plan's prior (no fit determined N_opt)"
    # The batch a grid at C_v centred here would give all its sizes (its largest model sets it,
    # flops_fit.planning.rules.TrainingRules.batch): the run must train as the swept points did, or it tests
    # the recipe's batch rule instead of the fitted law (a 4x larger batch, 4x fewer steps).
    largest = max(grid_targets(budget, sizes.cfg, sizes, center=target))
    batch = TrainingRules(sizes.cfg).batch(budget, budget / sizes.flops_per_token(sizes.pick(largest)))
    spec = plan_trial(budget, target, batch, sizes.cfg, sizes)
    return dataclasses.replace(spec, trial_id="verify_" + spec.trial_id), n_source


def _in_size_count(sizes: SizeTable, n_total: float) -> float:
    """The fits speak N = all parameters; ``pick`` takes a target in the plan's ``size_count``."""
    count, target = sizes.cfg.size_count, n_total
    for _ in range(3 if count != "n" else 0):  # the count's share of N changes slowly with size
        key = sizes.pick(target)
        share = sizes.entry(key, target).params.get(count) or sizes.n(key)
        target = n_total * share / sizes.n(key)
    return target


def run_verification(result: Result, cfg: SweepConfig, workload: Workload, run_dir: Path,
                     run_trial: RunTrial) -> dict[str, Any]:
    """Plan, run (or reuse) and record the verification trial; sets ``result.verification``."""
    budget = cfg.verify * max(cfg.plan.budgets)
    try:
        spec, n_source = plan_verification(result, cfg, workload.size_table(cfg.plan))
        workload.preflight([spec])  # data, epochs: refused in one line before it trains
    except PlanError as exc:
        record = {**dict.fromkeys(RECORD_KEYS), "budget": budget, "factor": cfg.verify, "status": "not run",
                  "error": str(exc)}
    else:
        exp_dir = run_dir / VERIFY_DIR / spec.trial_id
        row = recorded_row(exp_dir)
        if row is None:
            row = run_trial(spec, exp_dir)
            write_results([row], exp_dir / RESULTS_FILENAME)
        record = make_record(result, spec, row, n_source, cfg.verify)
    atomic_write_text(run_dir / VERIFY_DIR / RECORD, json.dumps(record, indent=2) + "\n")
    result.verification = record
    return record


def recorded_row(exp_dir: Path) -> dict[str, Any] | None:
    """A finished verification trial's row from an earlier run; a failed one is run again."""
    path = exp_dir / RESULTS_FILENAME
    if not path.is_file():
        return None
    row = read_results(path).iloc[0].to_dict()
    return row if row.get("status") in FINISHED_STATUSES else None


