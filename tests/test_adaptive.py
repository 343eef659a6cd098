"""The adaptive grid: the pure decisions (flops_fit.planning.adaptive), and simulated
sweeps on real Ray whose tokens-per-parameter prior is 10x off, so the first grid misses the
optimum: the adaptive sweep ends bracketed, the fixed one does not, and a driver interrupted
in the middle resumes to the same trials without training a finished one again."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re

import pytest

from flops_fit.config import preset
from flops_fit.fitting.synthetic import BESIROGLU
from flops_fit.planning.adaptive import LOG, AdaptivePlan, additions, bracketed, frontier_estimate
from flops_fit.planning.grid import plan
from flops_fit.planning.sizes import GPTSizes

RATIO = 2.0


def valley(xs, at):
    """A parabola in ln N with its minimum at ``at``."""
    return [(x, 3.0 + (math.log(x / at)) ** 2) for x in xs]


def test_an_edge_minimum_gets_two_sizes_past_that_edge():
    pts = valley([1e5, 2e5, 4e5, 8e5, 1.6e6], at=3e6)
    assert additions(pts, RATIO, lambda t: True) == [(3.2e6, "extend-high"), (6.4e6, "extend-high")]
    low = additions(valley([1e5, 2e5, 4e5, 8e5, 1.6e6], at=2e5), RATIO, lambda t: True)
    assert low == [(5e4, "extend-low")]  # one size below already: one more


def test_an_interior_minimum_with_two_points_each_side_gets_nothing():
    pts = valley([1e5, 2e5, 4e5, 8e5, 1.6e6], at=4e5)
    assert bracketed(pts) and additions(pts, RATIO, lambda t: True) == []


def test_an_edge_that_cannot_move_is_densified_toward_the_minimum():
    pts = valley([1e5, 2e5, 4e5, 8e5, 1.6e6], at=2e5)
    added = additions(pts, RATIO, lambda t: t >= 1e5)  # the smallest model is 1e5
    assert added == [(pytest.approx(math.sqrt(2e10)), "densify")]
    assert additions(valley([1e5, 2e5, 4e5], at=1e4), RATIO, lambda t: t >= 1e5) == []  # nothing can help


def test_the_frontier_estimate_uses_one_budget_along_a_half_then_the_fitted_frontier():
    one, how = frontier_estimate({1e12: valley([1e5, 2e5, 4e5, 8e5, 1.6e6], at=4e5)})
    assert one(4e12) == pytest.approx(8e5) and "a = 0.5" in how
    minima = {1e12: 4e5, 1e13: 4e5 * 10**0.7, 1e14: 4e5 * 100**0.7}
    pts = {c: valley([m * RATIO**k for k in range(-2, 3)], at=m) for c, m in minima.items()}
    est, how = frontier_estimate(pts)
    assert "Approach-2" in how and est(1e15) == pytest.approx(4e5 * 1000**0.7, rel=0.02)


def fake_results(plan_: AdaptivePlan, at) -> list[str]:
    """Run ``plan_`` to the end with one slot, each trial's loss a valley around ``at(budget)``."""
    ran = []
    while not plan_.finished():
        spec = plan_.next()
        assert spec is not None, "one slot, nothing running: the plan must always have a trial or be done"
        x = plan_._x(spec)
        plan_.complete(spec.trial_id, "ok", 3.0 + math.log(x / at(spec.budget)) ** 2)
        ran.append(spec.trial_id)
    return ran


def test_caps_bound_the_additions_and_the_plan_is_deterministic():
    import dataclasses

    cfg = dataclasses.replace(preset("tiny").plan, budgets=(1e13, 4e13, 1.6e14), replicates=0, rules_valid_to=None)
    base = plan(cfg)
    at = lambda c: math.sqrt(c / 6 / 25)  # noqa: E731  (the optimum at 25 tokens per parameter)

    def run(**caps):
        sizes = GPTSizes(dataclasses.replace(cfg, tokens_per_param=2.0, **caps))  # a prior 12x off
        p = AdaptivePlan(sizes, base)
        return p, fake_results(p, at)

    p1, ran1 = run()
    p2, ran2 = run()
    assert ran1 == ran2  # same results, same decisions, same order
    added = [i for i in ran1 if p1.origin[i] not in ("grid", "recentred")]
    assert len(added) == 2 and all(p1.origin[i] == "extend-low" for i in added)
    capped, _ = run(max_extra_trials=1)
    assert sum(o not in ("grid", "recentred") for o in capped.origin.values()) == 1 and capped.notes
    none, _ = run(max_extra_flops=0.0)
    assert all(o in ("grid", "recentred") for o in none.origin.values())


def test_a_free_slot_releases_the_next_budget_rather_than_idle():
    import dataclasses

    cfg = dataclasses.replace(preset("tiny").plan, budgets=(1e13, 4e13), replicates=0, rules_valid_to=None)
    p = AdaptivePlan(GPTSizes(cfg), plan(cfg))
    first = [p.next() for _ in range(5)]  # the first budget, all running, no result yet
    assert {s.budget for s in first} == {1e13}
    assert p.next(free_slot=False) is None  # every slot busy: wait for results to centre the next budget
    assert p.next(free_slot=True).budget == 4e13  # a slot free: overlap on the prior rather than idle


@pytest.mark.parametrize("change, message", [
    ({"max_extra_trials": -1}, "max_extra_trials must be a whole number >= 0"),
    ({"max_extra_flops": -1.0}, "max_extra_flops must be a fraction >= 0"),
])
def test_bad_caps_are_refused(change, message):
    from flops_fit.errors import PlanError

    with pytest.raises(PlanError, match=message):
        preset("tiny").replace(**change)


def test_a_table_written_before_the_origin_column_still_loads(tmp_path):
    import pyarrow.parquet as pq

    from flops_fit.results.result import Result
    from flops_fit.results.table import RESULTS_FILENAME, to_table
    from flops_fit.workloads.simulated import SimulatedLaw

    cfg = config(adapt=False)
    law = SimulatedLaw(cfg.simulate)
    rows = [law.run_trial(s, None) for s in law.plan(cfg.plan)]
    pq.write_table(to_table(rows).drop(["origin"]), tmp_path / RESULTS_FILENAME)
    result = Result.from_path(tmp_path, n_boot=0)
    assert len(result.results) == 15 and result.isoflop.usable


# --- simulated sweeps on real Ray ------------------------------------------------------------

#: Budgets whose optima sit well above the smallest model, the tiny preset's sizes and span,
#: and a prior of 2 tokens per parameter: about 10x fewer than this law's optimum (~33).
LAW = {**{k: getattr(BESIROGLU, k) for k in ("E", "A", "B", "alpha", "beta")}, "noise": 0.0}
OPTIONS = dict(budgets=(1e13, 4e13, 1.6e14), tokens_per_param=2.0, replicates=0, n_boot=0, simulate=LAW, rules_valid_to=None,
               max_concurrent_trials=1)  # one slot: the decisions do not depend on timing


def config(**options):
    return preset("tiny").replace(**{**OPTIONS, **options})


def brackets(rows) -> dict[float, bool]:
    return {c: bracketed(list(zip(g["n"], g["loss"]))) for c, g in rows.groupby("budget")}


def in_process(cfg):
    """The same sweep without Ray: the plan driven by the law's losses, one trial at a time."""
    from flops_fit.config import TrainOptions
    from flops_fit.workloads.simulated import SimulatedLaw

    law = SimulatedLaw(cfg.simulate)
    p = AdaptivePlan(law.size_table(cfg.plan), law.plan(cfg.plan)) if cfg.adapt else None
    specs = law.plan(cfg.plan) if p is None else []
    while p is not None and not p.finished():
        spec = p.next()
        p.complete(spec.trial_id, "ok", law.run_trial(spec, TrainOptions())["loss"])
        specs.append(spec)
    return specs, [law.run_trial(s, TrainOptions()) for s in specs]


@pytest.fixture(scope="module")
def resumed(ray_session, tmp_path_factory):
    """An adaptive sweep whose driver is interrupted after its seventh trial (the first budget done
    and its additions decided), then rerun: what was on disk at the interruption, the result and
    what the rerun printed."""
    from flops_fit.errors import SweepInterrupted
    from flops_fit.ray import sweep

    storage = tmp_path_factory.mktemp("adaptive")
    cfg = config(storage_path=str(storage), name="adaptive")
    original, calls = AdaptivePlan.complete, []

    def interrupt_at_seven(self, *args):
        original(self, *args)
        calls.append(args[0])
        if len(calls) == 7:
            raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(AdaptivePlan, "complete", interrupt_at_seven)
        with pytest.raises((SweepInterrupted, KeyboardInterrupt)):
            sweep(cfg, progress=False)
    run_dir = storage / "adaptive"
    records = {p.name: p.stat().st_mtime_ns for p in (run_dir / "finished").glob("*.json")}
    decided = json.loads((run_dir / LOG).read_text())["events"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # the resumed driver's progress lines
        result = sweep(cfg, progress=True)
    return cfg, run_dir, records, decided, result, printed.getvalue()


def test_an_adaptive_sweep_brackets_every_budget_and_recovers_a(resumed):
    *_, result, _ = resumed
    assert all(brackets(result.results).values()), brackets(result.results)
    assert abs(result.isoflop.a - BESIROGLU.a) < 0.005  # noise-free law: the fixed grid's error is 0.0098
    assert set(result.results["origin"]) == {"grid", "recentred", "extend-low"}
    assert len(result.results) > 15  # trials were added


def test_the_fixed_grid_misses_the_same_optimum():
    from flops_fit.fitting.isoflop import fit_isoflop

    specs, rows = in_process(config(adapt=False))
    assert [s.trial_id for s in specs] == [s.trial_id for s in plan(config(adapt=False).plan)]  # today's grid
    points = {c: [(r["n"], r["loss"]) for r in rows if r["budget"] == c] for c in OPTIONS["budgets"]}
    assert not all(bracketed(p) for p in points.values())
    fit = fit_isoflop([r["budget"] for r in rows], [r["n"] for r in rows], [r["loss"] for r in rows])
    assert abs(fit.a - BESIROGLU.a) > 0.005  # what adapting buys


def test_an_interrupted_adaptive_sweep_resumes_to_the_same_trials(resumed):
    cfg, run_dir, records, decided, result, _ = resumed
    assert 0 < len(records) < len(result.results)
    specs, _ = in_process(cfg)
    assert sorted(result.results["trial_id"]) == sorted(s.trial_id for s in specs)  # as if never interrupted
    assert json.loads((run_dir / LOG).read_text())["events"][:len(decided)] == decided
    after = {p.name: p.stat().st_mtime_ns for p in (run_dir / "finished").glob("*.json")}
    assert {k: after[k] for k in records} == records  # no finished trial trained (and wrote its record) again


def test_the_progress_eta_follows_the_adaptive_plan_to_zero(resumed):
    """Costed on the grid planned at the start, the ETA counted the trials the re-centred budgets
    replaced, and grew towards the end of every adaptive sweep (ETA 662s on the tiny demo's last
    trial); costed on the plan as it stands, the last line says nothing is left."""
    *_, result, printed = resumed
    lines = [line for line in printed.splitlines() if " done | " in line]
    assert lines and set(result.results["origin"]) >= {"recentred"}  # budgets were re-centred on the way
    assert lines[-1].split("|")[1].strip() == f"{len(result.results)}/{len(result.results)} done"
    assert re.search(r"\| ETA 0s\]", lines[-1]), lines[-1]


def test_the_manifest_refuses_the_fixed_grid_or_other_caps_under_an_adaptive_sweeps_name(resumed):
    from flops_fit.errors import PlanError
    from flops_fit.ray import sweep

    cfg, *_ = resumed
    for change in ({"adapt": False}, {"max_extra_trials": 1}):
        with pytest.raises(PlanError, match="holds a different sweep"):
            sweep(cfg.replace(**change), progress=False)
