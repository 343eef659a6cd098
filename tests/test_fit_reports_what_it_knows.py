"""Fits that say what they know: local Approach 2 minima, an Approach 3 that
reports what the data do not determine, agreement only when it means something, seed
noise, backtests, and no traceback on a valid table. numpy/pandas only, no Ray."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from flops_fit.fitting.compare import AGREE_MAX_WIDTH, compare
from flops_fit.fitting.frontier import frontier_label
from flops_fit.fitting.isoflop import fit_isoflop
from flops_fit.fitting.noise import seed_noise
from flops_fit.fitting.parametric import fit_parametric
from flops_fit.fitting.synthetic import (
    ASYMMETRIC,
    CHINCHILLA,
    SPAN_16X,
    ScalingLaw,
    interval_coverage,
    simulate_isoflop,
)
from flops_fit.planning.grid import plan
from flops_fit.results import table as results_io
from flops_fit.results.fits import parametric_notes
from flops_fit.results.result import Result

BUDGETS = np.logspace(18, 22, 5)


def table(law=CHINCHILLA, seed=0, noise=0.01, budgets=BUDGETS, points=7, **kw) -> pd.DataFrame:
    return simulate_isoflop(budgets, points, noise=noise, seed=seed, law=law, span=SPAN_16X, **kw)


def written(df: pd.DataFrame, tmp_path) -> Result:
    """Through the real results file, as a sweep writes it."""
    rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in df.to_dict("records")]
    results_io.write_results(rows, tmp_path / "results.parquet")
    return Result.from_path(tmp_path, n_boot=50, seed=0)


def test_a_far_undertrained_run_does_not_pull_the_minimum_below_the_best_run():
    # The tiny demo's 1e12 budget: best run 1.03, one far run at 4.09; a whole-grid parabola
    # put the minimum at 0.70. The local fit leaves the far run out, visibly.
    n = np.array([3.9e4, 6.8e4, 1.3e5, 2.4e5, 4.4e5])
    loss = np.array([1.31, 1.12, 1.03, 1.18, 4.09])
    fit = fit_isoflop([1e12] * 5, n, loss, names=[f"run{i}" for i in range(5)])
    o = fit.optima[0]
    assert o.loss_opt >= loss.min() - 0.02
    assert o.n_points == 3 and any("run4" in e and "outside the fit window" in e for e in o.excluded)
    assert n[1] < o.n_opt < n[3]


def test_the_tiny_demo_minima_stay_near_their_best_runs_with_pooled_curvature():
    # The whole `tiny` demo table (2026-12 main, offline sample): three budgets, so the
    # curvature is pooled; no minimum more than 0.02 nats below its budget's best run
    # (measured 0.016, 0.009 above and 0.0199 below; each budget's own parabola: 0.019, -0.002, -0.017).
    n = [19760, 35022, 68772, 125868, 237200, 19760, 38612, 68772, 131810, 248378,
         38612, 68772, 131810, 237200, 444164]
    loss = [2.8512, 2.6805, 2.7738, 2.9417, 4.1616, 2.5585, 2.0842, 1.9330, 2.2376, 2.8805,
            1.4947, 1.1133, 1.0295, 1.3352, 4.0907]
    fit = fit_isoflop([1e11] * 5 + [3e11] * 5 + [1e12] * 5, n, loss, n_boot=50)
    assert fit.curvature == "pooled" and all(o.used for o in fit.optima)
    for o in fit.optima:
        assert o.loss_opt >= o.best_loss - 0.02, (o.budget, o.loss_opt, o.best_loss)
        assert o.n_range[0] <= o.n_opt <= o.n_range[1]
    assert 0.3 < fit.a < 0.5


def test_pooled_curvature_locates_a_budget_whose_own_parabola_opens_downward():
    # 3% noise on a shallow valley: one budget's own parabola opens downward (no minimum). With
    # the curvature pooled across budgets it is still located, with a note; alone it is not.
    df = table(CHINCHILLA, seed=3, noise=0.03)
    fit = fit_isoflop(df.budget, df.n, df.loss, df.tokens, n_boot=50)
    rescued = [o for o in fit.optima if "opens downward" in o.note]
    assert fit.curvature == "pooled" and len(rescued) == 1 and rescued[0].used
    assert rescued[0].coeffs[0] > 0 and math.isfinite(rescued[0].n_opt)
    alone = df[df.budget == rescued[0].budget]
    own = fit_isoflop(alone.budget, alone.n, alone.loss, alone.tokens).optima[0]
    assert own.flag is not None and "opens downward" in own.flag
    # The pooled curvatures lie on one line in ln C (what "pooled" means).
    c2 = np.array([o.coeffs[0] for o in fit.optima])
    u = np.log([o.budget for o in fit.optima])
    assert np.allclose(np.polyval(np.polyfit(u, c2, 1), u), c2, rtol=1e-9, atol=1e-12)


def test_d_opt_follows_the_runs_own_tokens_under_any_convention():
    # D = C / f(N) with a non-power f (attention-like): the straight-line rule missed by 0.1
    # in ln D; piecewise interpolation is exact at every run.
    n = np.exp(np.linspace(15, 18, 7))
    d = 1e18 / (6 * n + 5e6 * np.sqrt(n) / 1e2)
    loss = 2 + 1e3 / n**0.3 + 1e4 / d**0.3
    fit = fit_isoflop([1e18] * 7, n, loss, tokens=d)
    o = fit.optima[0]
    i = int(np.argmin(np.abs(np.log(n) - np.log(o.n_opt))))
    j = i + (1 if n[i] < o.n_opt else -1)
    assert min(d[i], d[j]) <= o.d_opt <= max(d[i], d[j])


def test_parametric_e_stays_below_the_least_loss_and_unidentified_parameters_are_named():
    # No floor in the data (E = 0): E cannot be pinned, and must be said to be so.
    law = ScalingLaw(E=1e-6, A=50.0, B=200.0, alpha=0.3, beta=0.3)
    df = table(law, noise=0.01, budgets=[1e12, 3e12, 1e13], points=5)
    fit = fit_parametric(df.n, df.tokens, df.loss, n_boot=40, seed=0)
    assert fit.E < df.loss.min()
    assert all(d.E < df.loss.min() for d in fit.bootstrap.draws)
    assert fit.determined is False and "E" in fit.undetermined()
    text = Result(df, n_boot=40).format_table()
    assert "NOT determined" in text and "E undetermined" in text
    # every resample on the bound: said so, with no bracket of rounding noise ([1.3e-11, 1.3e-11])
    assert "E undetermined (at its bound 0)" in text and "E undetermined [" not in text
    assert "do not determine E (its 90% interval lies on the bound E = 0)" in text


def test_a_fit_with_no_optimum_prints_no_law_and_a_bootstrap_with_no_interval_determines_nothing(monkeypatch):
    # One L-BFGS iteration stops everywhere short of an optimum (as the smoke preset's five
    # runs do for real): where it stopped is no law, and no number of it is printed as one.
    import flops_fit.fitting.parametric as fit_module
    from flops_fit.fitting.bootstrap import Bootstrap

    df = table(CHINCHILLA, noise=0.003)
    monkeypatch.setattr(fit_module, "LBFGS_OPTIONS", {"maxiter": 1})
    result = Result(df, n_boot=20)
    p = result.parametric
    assert not p.converged and p.determined is False
    assert set(p.undetermined()) == {"E", "A", "B", "alpha", "beta"}
    assert p.bootstrap.n_failed == 20 and p.bootstrap.draws == []
    assert not result.law_known and result.primary == "isoflop"
    text = result.format_table()
    line = next(x for x in text.splitlines() if x.startswith("Approach 3:"))
    assert "no fit" in line and not any(k in line for k in ("E=", "alpha=", "C^")), line
    assert "L-BFGS converged from none of its starts; no law" in text
    assert "Approach 3 n/a; cannot compare" in text and "nan" not in text, text
    monkeypatch.undo()
    # A converged fit whose bootstrap ran but left fewer than two converged refits has no
    # interval to judge by: undetermined, not "untested" (that is n_boot=0 alone).
    fit = fit_parametric(df.n, df.tokens, df.loss)
    assert fit.converged and fit.determined is None and fit.undetermined() == {}
    fit.bootstrap = Bootstrap(20, 19, 0.9, 0, [fit])
    assert fit.determined is False
    assert fit.undetermined()["E"] == "1 of 20 bootstrap refits converged: no interval"
    result = Result(df, n_boot=20)
    result.parametric.bootstrap = Bootstrap(20, 19, 0.9, 0, [result.parametric])
    line = next(x for x in result.format_table().splitlines() if x.startswith("Approach 3:"))
    assert "NOT determined" in line and "E undetermined, A undetermined" in line and "nan" not in line, line
    notes = parametric_notes(result.parametric)  # the notes were written from the real bootstrap: again from this one
    assert ("the data do not determine E, A, B, alpha, beta (1 of 20 bootstrap refits converged: no interval); "
            "its law, frontier and irreducible loss are not reported as known") in notes[-1]


def test_a_well_posed_law_is_determined():
    fit = fit_parametric(*(table(CHINCHILLA, noise=0.003)[k] for k in ("n", "tokens", "loss")), n_boot=40)
    assert fit.determined is True and fit.undetermined() == {}


def test_agreement_needs_narrow_intervals_and_mutual_containment():
    df = table(CHINCHILLA, noise=0.01)
    iso = fit_isoflop(df.budget, df.n, df.loss, df.tokens, n_boot=100)
    par = fit_parametric(df.n, df.tokens, df.loss, n_boot=60)
    c = compare(iso, par)
    widths = [iv[1] - iv[0] for iv in (c.interval_isoflop, c.interval_parametric)]
    if max(widths) > AGREE_MAX_WIDTH:
        assert c.agree is None and "undetermined" in c.note
    else:
        assert c.agree is True
    # Same fits with Approach 3's exponent shifted far: disagreement, not agreement.
    shifted = compare(iso, par, lambda f: f.a + 0.3)
    assert shifted.agree is False and "DISAGREE" in shifted.note
    # Wide intervals that overlap are not agreement (the old rule said "agree" here).
    few = table(CHINCHILLA, noise=0.05, budgets=BUDGETS[:3], points=5)
    wide = compare(fit_isoflop(few.budget, few.n, few.loss, few.tokens, n_boot=100),
                   fit_parametric(few.n, few.tokens, few.loss, n_boot=40))
    assert wide.agree is not True


# A plot of one budget alone has one x value: laid out by hand, not by matplotlib expanding a
# singular axis with a warning (it did, at set_xscale, before the limits were set first).
@pytest.mark.filterwarnings("error::UserWarning")
@pytest.mark.parametrize("case", ["near_zero_losses", "one_usable_budget", "all_edges", "e_at_zero",
                                  "no_local_fit"])
def test_a_valid_table_never_raises_and_everything_is_written(case, tmp_path):
    df = table(CHINCHILLA, noise=0.01)
    if case == "near_zero_losses":  # the GRU that learnt its data: best losses 0.005-0.2 nats
        df["loss"] = 1e-3 + 0.2 * (df["loss"] - df["loss"].min()) / (df["loss"].max() - df["loss"].min())
    elif case == "one_usable_budget":
        df = df[df.budget == BUDGETS[0]]
    elif case == "all_edges":  # every grid far off its optimum
        df = table(CHINCHILLA, noise=0.01, centre_offset=1.5)
    elif case == "e_at_zero":
        df = table(ScalingLaw(E=1e-9, A=5.0, B=5.0, alpha=0.3, beta=0.3), noise=0.01)
    elif case == "no_local_fit":  # two sizes a budget (a smoke sweep whose largest runs were undertrained)
        df = df.groupby("budget").head(2)
    result = written(df, tmp_path)
    paths = {p.name for p in result.save()}
    assert {"table.txt", "fits.json", "isoflop.png"} <= paths
    fits = json.loads((tmp_path / "fits.json").read_text())
    assert {"isoflop", "parametric", "comparison", "notes", "seed_noise", "backtest"} <= set(fits)
    if case == "all_edges":
        assert result.primary != "isoflop" and any("edge" in n for n in result.notes)


def test_seed_noise_from_replicates_is_measured_and_used(tmp_path):
    df = table(CHINCHILLA, noise=0.01)
    first = df[df.budget == BUDGETS[0]].iloc[2:5]
    reps = pd.concat([first.assign(seed=s, trial_id=first.trial_id + f"_s{s}") for s in range(1, 9)])
    rng = np.random.default_rng(5)
    reps["loss"] = reps["loss"] * np.exp(0.01 * rng.standard_normal(len(reps)))
    full = pd.concat([df, reps], ignore_index=True)
    noise = seed_noise(full)
    assert noise.dof == len(reps) and 0.007 < noise.sigma < 0.013
    assert noise.budgets == (BUDGETS[0],) and noise.to_dict()["budgets"] == [BUDGETS[0]]
    result = written(full, tmp_path)
    assert result.isoflop.sigma_source == "replicates"
    line = next(x for x in result.format_table().splitlines() if x.startswith("seed noise:"))
    assert line.startswith("seed noise: σ = 0.0") and f"replicated size(s) at C={BUDGETS[0]:.3g}," in line


def test_replicates_plan_seed_varied_copies_of_the_smallest_budgets_centre():
    base = plan([1e12, 3e12], 5)
    specs = plan([1e12, 3e12], 5, replicates=2)
    extra = specs[len(base):]
    assert len(extra) == 6 and {s.budget for s in extra} == {1e12}
    assert {s.n for s in extra} == {s.n for s in base[1:4]}
    assert len({s.trial_id for s in specs}) == len(specs) and {s.seed for s in extra} == {1, 2}
    with pytest.raises(Exception, match="replicates"):
        plan([1e12], 5, replicates=-1)


def test_backtest_predicts_the_held_out_budget():
    result = Result(table(CHINCHILLA, noise=0.005), n_boot=40)
    bt = result.backtest()
    assert bt["budget"] == BUDGETS[-1]
    assert 0.6 < bt["ratios"]["n"] < 1.6 and 0.98 < bt["ratios"]["loss"] < 1.02
    assert "backtest (refit without C=1e+22" in result.format_table()


def test_backtest_without_a_determined_law_predicts_the_loss_by_the_frontier():
    # E ~ 0: the law has no floor, so Approach 3 leaves E undetermined (on its bound) and the
    # compute-optimal loss is a power law in C, which the frontier of the other budgets'
    # minima extrapolates: the held-out budget's best loss must come out right
    law = ScalingLaw(E=1e-6, A=CHINCHILLA.A, B=CHINCHILLA.B, alpha=CHINCHILLA.alpha, beta=CHINCHILLA.beta)
    result = Result(table(law, noise=0.002), n_boot=40)
    held = Result(result.fit_data[result.fit_data["budget"] < BUDGETS[-1]], n_boot=40)
    assert not held.law_known  # the path under test: no law to predict the loss with
    bt = result.backtest()
    assert bt["predicted"]["loss_source"] == frontier_label(None) and bt["predicted"]["loss_interval"]
    assert 0.98 < bt["ratios"]["loss"] < 1.02
    assert f"best loss ({frontier_label(None)}) predicted" in result.format_table()


def test_an_undetermined_law_plots_the_loss_frontier_the_predictions_come_from(tmp_path):
    # loss_frontier.png draws no undetermined law; it draws the minima's frontier instead,
    # the curve --verify and the backtest read their loss from (here E = 0: the power law)
    from flops_fit.fitting.frontier import frontier_loss
    from flops_fit.results.plots import loss_frontier_curve, plot_loss_frontier

    law = ScalingLaw(E=1e-6, A=CHINCHILLA.A, B=CHINCHILLA.B, alpha=CHINCHILLA.alpha, beta=CHINCHILLA.beta)
    result = Result(table(law, noise=0.002), n_boot=40)
    assert not result.law_known and result.parametric.floor() is None
    cs = np.array([BUDGETS[0], 3 * BUDGETS[-1]])
    mean, (lo, hi), label = loss_frontier_curve(result, cs)
    at_3x = frontier_loss(result.isoflop, 3 * BUDGETS[-1], result.level, result.noise)
    assert mean[-1] == pytest.approx(at_3x[0]) and (lo[-1], hi[-1]) == pytest.approx(at_3x[1])
    assert abs(mean[-1] / law.loss_opt(3 * BUDGETS[-1]) - 1) < 0.01 and label == f"loss frontier: {frontier_label(None)}"
    assert plot_loss_frontier(result, tmp_path / "lf.png").stat().st_size > 10_000


def test_exponents_by_parameter_count_side_by_side():
    df = table(CHINCHILLA, noise=0.002)
    df["n_non_embedding"] = (df["n"] ** 1.1 / 10).round()
    by = Result(df, n_boot=0).exponents_by_count()
    assert set(by) >= {"n", "n_non_embedding"}
    assert by["n_non_embedding"] == pytest.approx(by["n"] * 1.1, rel=0.05)


def test_the_count_line_leaves_out_the_outliers_the_main_fit_leaves_out():
    # one run 8% high at the largest budget, seed noise measured by replicates: the main fit
    # excludes it as an outlier, and the by-count line's a under n must be that same a
    df = table(CHINCHILLA, noise=0.01, seed=1, budgets=(1e18, 3e18, 1e19, 3e19, 1e20))
    rng = np.random.default_rng(5)
    first = df[df.budget == 1e18].iloc[2:5]
    reps = [first.assign(seed=s, trial_id=first.trial_id + f"_s{s}",
                         loss=[CHINCHILLA.loss(n, t, rng=rng, noise=0.01) for n, t in zip(first.n, first.tokens)])
            for s in (1, 2)]
    df = pd.concat([df, *reps], ignore_index=True)
    df.loc[df.index[df.budget == 1e20][4], "loss"] *= 1.08
    result = Result(df, n_boot=0)
    assert any("outlier" in note for note in result.notes)
    assert result.exponents_by_count()["n"] == pytest.approx(result.isoflop.a, abs=1e-12)


def test_the_backtest_refits_with_the_resamples_the_report_states():
    result = Result(table(CHINCHILLA, noise=0.01, budgets=BUDGETS[:4]), n_boot=150)
    bt = result.backtest()
    held = Result(result.fit_data[result.fit_data.budget < BUDGETS[3]], n_boot=150)
    assert bt["predicted"]["n_interval"] == pytest.approx(held.predict(BUDGETS[3]).n_interval, rel=1e-12)


def test_an_undetermined_law_predicts_no_loss_in_any_field():
    result = Result(table(CHINCHILLA, noise=0.01, budgets=BUDGETS[:3]), n_boot=100)
    assert not result.law_known  # three budgets at 1% noise: A and B undetermined
    p = result.predict(10 * BUDGETS[2])
    assert p.loss is None and "loss" not in (p.parametric or {})


def test_both_fits_with_200_resamples_take_seconds():
    import time

    df = table(CHINCHILLA, noise=0.01)
    t = time.perf_counter()
    Result(df, n_boot=200)
    print(f"\nResult with 200 resamples of each approach: {time.perf_counter() - t:.1f} s")


def _print_calibration(name, c):
    print(f"\n{name}: {c.summary()}")


#: Every design of the calibration target: two laws with α ≠ β, 5 and 7 budgets, grids centred
#: and 3x off-centre (the optimum an eighth of a decade inside the smallest size).
DESIGNS = [(law_name, law, k, off) for law_name, law in (("Chinchilla", CHINCHILLA), ("asymmetric", ASYMMETRIC))
           for k in (5, 7) for off in (0.0, math.log10(3))]


@pytest.mark.slow
def test_approach2_intervals_are_calibrated_on_asymmetric_laws():
    """100 seeds of each of the 8 designs, 16x grids of 7 sizes, 1% noise, 200 resamples:
    |bias| < 0.01, coverage 85-95%, width <= 1.3x the seeds' spread (the targets in docs/fitting.md).
    Before the curvature was pooled, the 3x off-centre designs had bias up to +0.016 and
    widths 1.4-1.6x; ~25 s."""
    def estimate(t):
        f = fit_isoflop(t.budget, t.n, t.loss, t.tokens, n_boot=200)
        return f.a, f.interval(lambda g: g.a)

    failures = []
    for law_name, law, k, off in DESIGNS:
        c = interval_coverage(estimate, law, np.logspace(18, 22, k), seeds=100, centre_offset=off)
        name = f"Approach 2, {law_name}, {k} budgets, {'3x off-centre' if off else 'centred'}"
        _print_calibration(name, c)
        if not (abs(c.bias) < 0.01 and 0.85 <= c.coverage <= 0.95 and c.width_ratio <= 1.3):
            failures.append(f"{name}: {c.summary()}")
    assert not failures, failures


@pytest.mark.slow
def test_approach3_intervals_are_calibrated_off_centre():
    """Approach 3 on an off-centre asymmetric design (40 seeds x 100 resamples, ~35 s; every
    design at 100 seeds is ``bench_fit.py --calibration``). Resampling the Huber fit's
    residuals gave 82% coverage at 0.89x here; Gaussian noise at their σ is the default."""
    def estimate(t):
        f = fit_parametric(t.n, t.tokens, t.loss, n_boot=100)
        return f.a, f.interval(lambda g: g.a)

    c = interval_coverage(estimate, ASYMMETRIC, np.logspace(18, 22, 7), seeds=40, centre_offset=math.log10(3))
    _print_calibration("Approach 3, asymmetric, 7 budgets, 3x off-centre", c)
    assert abs(c.bias) < 0.01
    assert 0.85 <= c.coverage <= 0.95
    assert c.width_ratio <= 1.3
