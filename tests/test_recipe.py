"""The learning-rate recipe: locating a scan's optimum, fitting the rule, and using it."""

import dataclasses
import json
import math

import pytest

from flops_fit.config import SweepConfig, preset
from flops_fit.data.sample import SAMPLE_VERSION
from flops_fit.errors import PlanError
from flops_fit.planning.config import PlanConfig
from flops_fit.planning.grid import plan
from flops_fit.planning.recipe import Recipe, SizeOptimum, fit_rule, load, locate_optimum, save
from flops_fit.planning.rules import TrainingRules


def test_locate_optimum_finds_the_vertex_of_a_known_parabola_in_ln_lr():
    true_lr = 7e-3
    lrs = [1.5e-3, 3e-3, 6e-3, 1.2e-2, 2.4e-2]
    losses = [2.0 + 0.3 * math.log(lr / true_lr) ** 2 for lr in lrs]
    lr, loss, edge = locate_optimum(lrs, losses)
    assert lr == pytest.approx(true_lr, rel=1e-6) and not edge
    assert loss == min(losses)  # the best measured run, not the parabola's extrapolated value


def test_locate_optimum_flags_a_scan_edge_and_treats_diverged_runs_as_worst():
    lr, loss, edge = locate_optimum([1e-3, 2e-3, 4e-3], [3.0, 2.5, 2.1])
    assert lr == pytest.approx(4e-3) and (loss, edge) == (2.1, True)
    lr, _, edge = locate_optimum([1e-3, 2e-3, 4e-3, 8e-3], [3.0, 2.5, 2.6, float("nan")])
    assert 1e-3 < lr < 4e-3 and not edge
    with pytest.raises(ValueError, match="every scanned run failed"):
        locate_optimum([1e-3, 2e-3], [None, float("inf")])


def test_fit_rule_recovers_a_known_power_law_and_the_planner_applies_it():
    truth = {"base_lr": 5e-3, "lr_exponent": 0.3}
    ns = [3e4, 1e5, 4e5]
    optima = [SizeOptimum(n=int(n), label="", budget=1e12, lr_best=truth["base_lr"] * (n / 1e5) ** -0.3,
                          loss_best=2.0, edge=False) for n in ns]
    rule = fit_rule(optima)
    assert rule["lr_exponent"] == pytest.approx(0.3, abs=1e-9)
    cfg = PlanConfig(budgets=(1e12,), **rule)
    for n in ns:
        assert TrainingRules(cfg).lr(int(n)) == pytest.approx(truth["base_lr"] * (int(n) / 1e5) ** -0.3, rel=1e-6)
    specs = plan(cfg)
    assert [s.lr for s in specs] == pytest.approx([TrainingRules(cfg).lr(s.n) for s in specs])
    assert specs[0].lr > specs[-1].lr  # smaller models take larger steps


def test_scans_at_different_batches_are_brought_to_one_by_the_square_root_rule():
    """The batch grows with the budget, so the scans' optima sit at different batches: fit_rule
    must recover the size exponent from optima that follow lr ∝ n^-0.2 · B^0.5, and the planner
    must give each budget's batch its own rate."""
    law = lambda n, b: 4e-3 * (n / 1e5) ** -0.2 * (b / 512) ** 0.5  # noqa: E731
    points = [(3e4, 256), (1e5, 256), (2e5, 1024), (4e5, 1024)]
    optima = [SizeOptimum(n=int(n), label="", budget=1e12, lr_best=law(int(n), b), loss_best=2.0, edge=False,
                          batch_tokens=b) for n, b in points]
    rule = fit_rule(optima)
    assert rule["lr_exponent"] == pytest.approx(0.2, abs=1e-9) and rule["lr_batch_ref"] == 512
    cfg = PlanConfig(budgets=(1e11, 1e13), seq_len=64, **rule)
    for n, b in points + [(1e5, 8192)]:
        assert TrainingRules(cfg).lr(int(n), b) == pytest.approx(law(int(n), b), rel=1e-6)
    specs = plan(cfg)
    assert len({s.batch_size for s in specs}) > 1  # the two budgets do get different batches
    assert [s.lr for s in specs] == pytest.approx([law(s.n, s.batch_size * 64) for s in specs], rel=1e-6)
    # without batches (recipes written before the batch term), the rule has none
    plain = fit_rule([SizeOptimum(n=o.n, label="", budget=o.budget, lr_best=o.lr_best, loss_best=2.0, edge=False)
                      for o in optima])
    assert plain["lr_batch_ref"] is None and Recipe(**plain).lr(1e5, 10**6) == Recipe(**plain).lr(1e5)
    with pytest.raises(PlanError, match="lr_batch_exponent"):
        PlanConfig(budgets=(1e12,), lr_batch_exponent=2.0)


def test_a_recipe_file_sets_the_rule_and_a_hand_given_rate_replaces_it(tmp_path):
    rec = Recipe(base_lr=4e-3, lr_exponent=0.2, lr_n_ref=5e4)
    save(rec, tmp_path)
    cfg = SweepConfig.of(budgets=[1e12], recipe=str(tmp_path))
    assert (cfg.base_lr, cfg.lr_exponent, cfg.lr_n_ref) == (4e-3, 0.2, 5e4)
    assert load(str(tmp_path / "recipe.json")).rule() == rec.rule()
    manual = cfg.replace(base_lr=1e-3)  # a rate given by hand wins over the recipe
    assert manual.recipe is None and manual.base_lr == 1e-3 and manual.lr_exponent == 0.2
    assert preset("tiny").recipe == "tiny" and load("tiny").optima  # the built-in one holds its data


def test_a_sweep_on_another_setup_than_its_recipe_was_measured_on_is_told_so(tmp_path):
    from flops_fit.data.stories import setup_of
    from flops_fit.planning.recipe import setup_mismatch
    from flops_fit.planning.rules import TrainingRules

    tiny = preset("tiny")
    assert load("tiny").measured_on == setup_of(tiny)  # the built-in recipe matches its preset: no note
    assert "note:" not in TrainingRules(tiny.plan).describe(setup_of(tiny))
    other = tiny.replace(source=str(tmp_path / "stories.txt"), seq_len=256)
    note = setup_mismatch(load("tiny"), setup_of(other))
    assert note.startswith("note: recipe tiny was measured with source='sample:synthetic-v1', seq_len=128; this sweep "
                           "has source=")
    assert "seq_len=256" in note and "not measured for this setup" in note and note in TrainingRules(other.plan).describe(setup_of(other))
    old = Recipe(base_lr=4e-3, lr_exponent=0.2, lr_n_ref=5e4)  # written before measured_on: nothing to compare
    save(old, tmp_path)
    assert setup_mismatch(load(str(tmp_path)), setup_of(other)) is None
    # The sample is named with its version: a rule measured on another version of the generator is
    # not measured on this one; a recipe that recorded plain "sample" was measured on synthetic-v1.
    older = dataclasses.replace(load("tiny"), measured_on={**setup_of(tiny), "source": "sample:synthetic-v0"})
    assert "source='sample:synthetic-v0'" in setup_mismatch(older, setup_of(tiny))
    assert f"source='sample:{SAMPLE_VERSION}'" in setup_mismatch(older, setup_of(tiny))
    legacy = {**load("tiny").to_dict(), "measured_on": {**setup_of(tiny), "source": "sample"}}
    assert Recipe.from_dict(legacy).measured_on["source"] == "sample:synthetic-v1"
    assert (setup_mismatch(Recipe.from_dict(legacy), setup_of(tiny)) is None) == (SAMPLE_VERSION == "synthetic-v1")


def test_tune_scans_the_smallest_budgets_centre_and_the_largest_budgets_centre_and_top_whatever_the_order():
    from flops_fit.engine.lr_scan import scan_sizes

    cfg = PlanConfig(budgets=(1e11, 3e11, 1e12), points_per_budget=5, vocab_size=512, seq_len=128, min_steps=100)
    grid = plan(cfg)
    by = {c: sorted(s.n for s in grid if s.budget == c) for c in cfg.budgets}
    expect = [by[1e11][2], by[1e12][2], by[1e12][-1]]
    assert [s.n for s in scan_sizes(grid)] == sorted(expect)
    # replicates of the smallest budget come last in a sweep's plan: still the largest budget's sizes
    with_replicates = plan(dataclasses.replace(cfg, replicates=2))
    assert with_replicates[-1].budget == 1e11 and [s.n for s in scan_sizes(with_replicates)] == sorted(expect)


def test_the_check_compares_mean_losses_over_seeds_with_the_noise_measured_at_each_size():
    """The tune check's verdict per size: the rule's mean loss over CHECK_SEEDS seeds minus the
    best scanned rate's, against sqrt(2) x the pooled seed spread at that size."""
    from types import SimpleNamespace

    import numpy as np

    from flops_fit.engine.lr_scan import CHECK_SEEDS, _check, _seed_tag

    assert CHECK_SEEDS == 3
    sizes = {  # rule losses at seeds 0..2, the best rate's at seeds 0 (its scan run), 1, 2
        "plateau": ([1.480, 1.316, 1.295], [1.298, 1.287, 1.442]),  # the tiny grid's 104x2, measured
        "worse": ([2.50, 2.52, 2.51], [2.30, 2.31, 2.29]),
        "diverged": ([None, 2.00, 2.01], [2.00, 2.02, 1.99]),
    }
    picked = [SimpleNamespace(trial_id=name, n=i + 1, label=name) for i, name in enumerate(sizes)]
    best_runs = {i + 1: {"lr": 1e-2, "loss": best[0], "status": "ok"} for i, (_, best) in enumerate(sizes.values())}

    def row(name, tag, loss):
        return {"trial_id": f"{name}_{tag}", "lr": 5e-3, "loss": loss, "status": "diverged" if loss is None else "ok"}

    checked = [row(name, _seed_tag("rule", k), rule[k]) for name, (rule, _) in sizes.items() for k in range(3)]
    checked += [row(name, _seed_tag("best", k), best[k]) for name, (_, best) in sizes.items() for k in (1, 2)]
    plateau, worse, diverged = _check(picked, best_runs, checked)
    rule, best = sizes["plateau"]
    pooled = (np.var(rule, ddof=1) + np.var(best, ddof=1)) / 2
    assert plateau["gap"] == pytest.approx(np.mean(rule) - np.mean(best)) and plateau["gap"] == pytest.approx(0.0213, abs=1e-4)
    assert plateau["seed_noise"] == pytest.approx(math.sqrt(2 * pooled))
    assert plateau["within_noise"] is True  # one seed each would say 0.182 worse: more than that noise
    assert rule[0] - best[0] > plateau["seed_noise"]
    assert plateau["losses_rule"] == rule and plateau["loss_best"] == pytest.approx(np.mean(best))
    assert worse["within_noise"] is False and worse["gap"] == pytest.approx(0.21)
    assert diverged["within_noise"] is False and diverged["loss_rule"] == pytest.approx(2.005)  # a failed rule run fails


def test_a_bad_recipe_is_refused_in_one_line(tmp_path):
    with pytest.raises(PlanError, match="not found.*built-in one"):
        SweepConfig.of(recipe=str(tmp_path / "missing.json"))
    (tmp_path / "recipe.json").write_text(json.dumps({"learning_rate": 1}))
    with pytest.raises(PlanError, match="not a flops-fit tune recipe"):
        SweepConfig.of(recipe=str(tmp_path))
    with pytest.raises(PlanError, match="beta2"):
        PlanConfig(budgets=(1e12,), beta2=1.0)


def test_sweep_with_tune_measures_the_rule_on_its_grid_first_and_a_rerun_trains_nothing(ray_session, tmp_path):
    """`flops-fit sweep --tune` end to end on a smoke grid: the tune stage in <sweep>/tune/ (15
    real scan runs, 15 check runs), a rule that is the least-squares power law through the
    located optima at the configured batch exponent, every swept rate the rule's, the recipe
    beside the results. Rerun, both stages resume (identical wall times); `flops-fit tune` on
    that directory resumes too and rewrites the same rule. (One test for both entry points:
    each tune costs 30 real runs.)"""
    from flops_fit.data.stories import setup_of
    from flops_fit.planning.recipe import RECIPE_FILENAME
    from flops_fit.ray import sweep, tune
    from flops_fit.results.table import read_results

    cfg = preset("smoke").replace(storage_path=str(tmp_path), cache_dir=str(tmp_path / "cache"), name="sw",
                                  budgets=(1e10, 2e10), n_boot=0, lr_batch_exponent=0.7)
    with pytest.raises(PlanError, match="no learning rate to measure"):
        sweep(cfg, progress=False, tune=True, simulate={"E": 1.8, "A": 400.0, "B": 2000.0, "alpha": 0.34, "beta": 0.28})
    result = sweep(cfg, progress=False, tune=True)
    tune_dir = tmp_path / "sw" / "tune"
    rec = load(str(tune_dir))
    assert len(rec.scan) == 15 and len({r["n"] for r in rec.scan}) == 3
    assert len(rec.check) == 3 and all(c["loss_rule"] is not None for c in rec.check)
    assert all(len(c["losses_rule"]) == len(c["losses_best"]) == 3 for c in rec.check)
    for o in rec.optima:  # each optimum lies inside its scan, at or next to its best run
        lrs = sorted(r["lr"] for r in rec.scan if r["n"] == o.n)
        assert lrs[0] <= o.lr_best <= lrs[-1]
    assert fit_rule(rec.optima, 0.7) == pytest.approx(rec.rule()) and rec.lr_batch_exponent == 0.7
    assert rec.measured_on == setup_of(cfg) and rec.measured_on["source"] == f"sample:{SAMPLE_VERSION}"
    batch = {o.n: o.batch_tokens for o in rec.optima}
    assert rec.lr_batch_ref and all(batch.values())
    assert [c["lr_rule"] for c in rec.check] == pytest.approx([rec.lr(c["n"], batch[c["n"]]) for c in rec.check])
    swept = result.results
    assert swept["lr"].tolist() == pytest.approx([rec.lr(n, b * s) for n, b, s in
                                                  zip(swept["n"], swept["batch_size"], swept["seq_len"])])
    assert load(str(tmp_path / "sw")).rule() == rec.rule()  # recipe.json kept with the results
    scan_walls = read_results(tune_dir / "scan" / "results.parquet")["wall_s"].tolist()
    again = sweep(cfg, progress=False, tune=True)
    assert again.results["wall_s"].tolist() == swept["wall_s"].tolist()
    assert read_results(tune_dir / "scan" / "results.parquet")["wall_s"].tolist() == scan_walls
    retuned = tune(cfg.replace(storage_path=str(tmp_path / "sw"), name="tune"), progress=False)
    assert retuned.rule() == pytest.approx(rec.rule()) and retuned.scan == rec.scan and retuned.check == rec.check
    assert load(str(tune_dir)).rule() == rec.rule() and (tune_dir / RECIPE_FILENAME).is_file()


def test_a_builtin_recipe_follows_the_schedule_and_an_explicit_one_is_kept():
    wsd = preset("tiny").replace(schedule="wsd")
    assert wsd.plan.recipe == "tiny-wsd" and wsd.plan.rules_valid_to == 3e12  # measured over the same range
    assert load("tiny-wsd").measured_on["schedule"] == "wsd" and load("tiny").measured_on["schedule"] == "cosine"
    assert wsd.plan.base_lr == pytest.approx(load("tiny-wsd").base_lr)
    assert wsd.replace(schedule="cosine").plan.recipe == "tiny"
    assert preset("tiny").replace(schedule="wsd", recipe="tiny").plan.recipe == "tiny"  # as asked (the plan notes it)
    assert preset("smoke").replace(schedule="wsd").plan.recipe is None  # a rule set by hand stays
