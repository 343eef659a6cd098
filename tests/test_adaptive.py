"""The adaptive grid (issue 11 items 3-4): the pure decisions (flops_fit.adapt), and simulated
sweeps on real Ray whose tokens-per-parameter prior is 10x off, so the first grid misses the
optimum: the adaptive sweep ends bracketed, the fixed one does not, and a driver interrupted
in the middle resumes to the same trials without training a finished one again."""

from __future__ import annotations

import json
import math

import pytest

from flops_fit.adapt import LOG, MIN_SIDE, AdaptivePlan, additions, bracketed, frontier_estimate
from flops_fit.config import preset
from flops_fit.plan import plan
from flops_fit.sizes import GPTSizes
from flops_fit.synthetic import BESIROGLU

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

    cfg = dataclasses.replace(preset("tiny").plan, budgets=(1e13, 4e13, 1.6e14), replicates=0)
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


# --- simulated sweeps on real Ray ------------------------------------------------------------

#: Budgets whose optima sit well above the smallest model, 5 sizes over a 12x span (tiny's),
#: and a prior of 2 tokens per parameter: 10x fewer than this law's optimum (~20-40).
OPTIONS = dict(budgets=(1e13, 4e13, 1.6e14), tokens_per_param=2.0, replicates=0, n_boot=0,
               simulate={**{k: getattr(BESIROGLU, k) for k in ("E", "A", "B", "alpha", "beta")}, "noise": 0.0})


def sweep_of(tmp_path, name, **options):
    from flops_fit.ray import sweep

    cfg = preset("tiny").replace(storage_path=str(tmp_path), name=name, **{**OPTIONS, **options})
    return sweep(cfg, progress=False)


def brackets(result) -> dict[float, bool]:
    rows = result.results
    return {c: bracketed(list(zip(g["n"], g["loss"]))) for c, g in rows.groupby("budget")}


@pytest.fixture(scope="module")
def adaptive(ray_session, tmp_path_factory):
    return sweep_of(tmp_path_factory.mktemp("adaptive"), "adaptive")


def test_an_adaptive_sweep_brackets_every_budget_and_recovers_a(adaptive):
    assert all(brackets(adaptive).values()), brackets(adaptive)
    assert abs(adaptive.isoflop.a - BESIROGLU.a) < 0.03
    origins = set(adaptive.results["origin"])
    assert "grid" in origins and "recentred" in origins and origins - {"grid", "recentred"}


def test_the_fixed_grid_misses_the_same_optimum(ray_session, tmp_path):
    fixed = sweep_of(tmp_path, "fixed", adapt=False)
    assert not all(brackets(fixed).values())
    assert set(fixed.results["origin"]) == {"grid"}
    assert sorted(fixed.results["trial_id"]) == sorted(s.trial_id for s in plan(
        preset("tiny").replace(**{**OPTIONS, "adapt": False}).plan))  # exactly today's grid


def test_an_interrupted_adaptive_sweep_resumes_to_the_same_trials(adaptive, tmp_path, monkeypatch):
    from flops_fit.errors import SweepInterrupted

    calls = {"n": 0}
    original = AdaptivePlan.complete

    def stop_after_seven(self, *args):
        original(self, *args)
        calls["n"] += 1
        if calls["n"] == 7:  # the first budget done and its additions decided, the second running
            raise KeyboardInterrupt

    monkeypatch.setattr(AdaptivePlan, "complete", stop_after_seven)
    with pytest.raises((SweepInterrupted, KeyboardInterrupt)):
        sweep_of(tmp_path, "resumed")
    monkeypatch.undo()
    records = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "resumed" / "finished").glob("*.json")}
    assert 0 < len(records) < len(adaptive.results)
    decided = json.loads((tmp_path / "resumed" / LOG).read_text())["events"]
    resumed = sweep_of(tmp_path, "resumed")
    assert sorted(resumed.results["trial_id"]) == sorted(adaptive.results["trial_id"])
    assert json.loads((tmp_path / "resumed" / LOG).read_text())["events"][:len(decided)] == decided
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "resumed" / "finished").glob("*.json")}
    assert {k: after[k] for k in records} == records  # no finished trial trained (and wrote its record) again
    assert MIN_SIDE == 2
