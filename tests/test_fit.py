"""Fits recover known laws; flags, summed Huber, bootstrap bookkeeping, interval calibration.

Synthetic sweeps come from `flops_fit.fitting.synthetic`: 8 budgets over 1e17..1e22 FLOPs, 9 model
sizes per budget spaced log-evenly over ±0.6 decades around the true optimum, 0.5%
multiplicative noise. Numbers the tolerances rest on (12 seeds each, measured when written):
sd of the fitted α, β ≈ 0.005, of Approach 3's a ≈ 0.007, of Approach 2's a ≈ 0.004.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import check_grad

from flops_fit.fitting.bootstrap import Bootstrap
from flops_fit.fitting.compare import compare
from flops_fit.fitting.isoflop import fit_isoflop
from flops_fit.fitting.parametric import (
    HUBER_DELTA,
    INIT_GRID,
    ParametricFit,
    _make_objective,
    fit_parametric,
    huber_objective,
)
from flops_fit.fitting.synthetic import BESIROGLU, CHINCHILLA, ScalingLaw, simulate_isoflop

BUDGETS = np.logspace(17, 22, 8)
LAWS = {"chinchilla": CHINCHILLA, "besiroglu": BESIROGLU}


def sweep(law: ScalingLaw, seed: int, noise: float = 0.005, budgets=BUDGETS, **kw):
    return simulate_isoflop(budgets, 9, noise=noise, seed=seed, law=law, span=0.6, **kw)


def logs(df):
    return tuple(np.log(np.asarray(v, dtype=float)) for v in (df.n, df.tokens, df.loss))


# --- synthetic law ------------------------------------------------------------------------
def test_law_frontier_is_the_constrained_minimum():
    law = BESIROGLU
    c = 1e21
    n = law.n_opt(c)
    assert 6 * n * law.d_opt(c) == pytest.approx(c, rel=1e-12)
    grid = n * np.logspace(-1, 1, 2001)
    assert grid[np.argmin(law.loss(grid, c / (6 * grid)))] == pytest.approx(n, rel=0.01)
    assert law.a == pytest.approx(0.3658 / (0.3478 + 0.3658))


def test_law_noise_is_multiplicative_lognormal():
    clean = CHINCHILLA.loss(1e8, 2e9)
    noisy = CHINCHILLA.loss(np.full(20000, 1e8), 2e9, rng=np.random.default_rng(0), noise=0.01)
    assert np.std(np.log(noisy / clean)) == pytest.approx(0.01, rel=0.05)
    assert CHINCHILLA.loss(1e8, 2e9, rng=0, noise=0.0) == clean


# --- Approach 3 -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", LAWS)
def test_parametric_recovers_law(name):
    law = LAWS[name]
    for seed in range(3):
        df = sweep(law, seed)
        fit = fit_parametric(df.n, df.tokens, df.loss)
        assert fit.converged
        assert abs(fit.alpha - law.alpha) < 0.02, (seed, fit)
        assert abs(fit.beta - law.beta) < 0.02, (seed, fit)
        assert abs(fit.a - law.a) < 0.02, (seed, fit)
        assert fit.E == pytest.approx(law.E, rel=0.1)
        c = 1e23  # the fitted frontier and loss agree with the law a decade past the data
        assert fit.n_opt(c) == pytest.approx(law.n_opt(c), rel=0.5)
        assert fit.loss_opt(c) == pytest.approx(law.loss_opt(c), rel=0.01)


def test_fast_objective_matches_reference_and_gradient():
    data = logs(sweep(CHINCHILLA, 0))
    fast = _make_objective(*data, HUBER_DELTA, "sum")
    rng = np.random.default_rng(1)
    for theta in INIT_GRID[rng.choice(len(INIT_GRID), 20)] + rng.normal(0, 0.1, (20, 5)):
        f_ref, g_ref = huber_objective(theta, *data)
        f, g = fast(theta)
        assert f == pytest.approx(f_ref[0], rel=1e-12)
        np.testing.assert_allclose(g, g_ref[0], rtol=1e-9, atol=1e-15)
    theta = np.array([6.0, 6.0, 0.5, 0.34, 0.28])  # smooth region: compare to finite differences
    err = check_grad(lambda t: fast(t)[0], lambda t: fast(t)[1], theta, epsilon=1e-7)
    assert err < 1e-6 * np.linalg.norm(fast(theta)[1]) + 1e-9


def test_huber_is_summed_not_averaged():
    law = CHINCHILLA
    df = sweep(law, 0)
    fit = fit_parametric(df.n, df.tokens, df.loss)
    # The objective reported is the SUM over points of Huber(log L_pred − log L), δ = 1e-3.
    r = np.log(fit.loss(df.n, df.tokens)) - np.log(df.loss)
    huber = np.where(np.abs(r) <= 1e-3, 0.5 * r**2, 1e-3 * (np.abs(r) - 0.5e-3))
    assert fit.objective == pytest.approx(huber.sum(), rel=1e-6)
    assert fit.objective == pytest.approx(len(df) * huber.mean(), rel=1e-6)
    # Why it matters (Besiroglu et al. 2024): with L-BFGS's stock stopping rule a mean makes
    # the objective ~70x smaller, L-BFGS stops early and the fit is visibly worse.
    data = logs(df)
    summed = fit_parametric(df.n, df.tokens, df.loss, lbfgs_options={})
    meaned = fit_parametric(df.n, df.tokens, df.loss, lbfgs_options={}, reduction="mean")
    f_sum = huber_objective(summed.theta, *data)[0][0]
    f_mean = huber_objective(meaned.theta, *data)[0][0]
    assert f_mean > 1.5 * f_sum
    assert abs(meaned.beta - law.beta) > 0.05 > abs(summed.beta - law.beta)


def test_top_k_starts_match_a_wider_search():
    df = sweep(BESIROGLU, 2)
    fast = fit_parametric(df.n, df.tokens, df.loss)  # best 32 of the 4500 grid points
    wide = fit_parametric(df.n, df.tokens, df.loss, top_k=400)
    assert fast.objective == pytest.approx(wide.objective, rel=1e-6)
    np.testing.assert_allclose(fast.theta, wide.theta, atol=1e-3)


@pytest.mark.slow
def test_top_k_starts_match_the_full_grid():
    """All 4500 published starts (~45 s) reach the optimum the default top-32 reaches."""
    df = sweep(CHINCHILLA, 1)
    fast = fit_parametric(df.n, df.tokens, df.loss)
    full = fit_parametric(df.n, df.tokens, df.loss, top_k=None)
    assert fast.objective <= full.objective * (1 + 1e-6)
    np.testing.assert_allclose(fast.theta, full.theta, atol=1e-3)


def test_parametric_bootstrap_and_failures_are_counted():
    df = sweep(CHINCHILLA, 4)
    fit = fit_parametric(df.n, df.tokens, df.loss, n_boot=20, seed=3)
    boot = fit.bootstrap
    assert boot.n_boot == 20 and boot.n_failed + len(boot.draws) == 20
    lo, hi = fit.interval(lambda f: f.alpha)
    assert lo < fit.alpha < hi
    # Same seed, same intervals.
    again = fit_parametric(df.n, df.tokens, df.loss, n_boot=20, seed=3)
    assert again.interval(lambda f: f.a) == fit.interval(lambda f: f.a)
    # One L-BFGS iteration converges nowhere: every refit must be reported as failed.
    broken = fit_parametric(df.n, df.tokens, df.loss, n_boot=5, lbfgs_options={"maxiter": 1})
    assert not broken.converged
    assert broken.bootstrap.n_failed == 5 and broken.bootstrap.draws == []
    assert all(math.isnan(v) for v in broken.interval(lambda f: f.a))


def test_parametric_frontier_formulas():
    fit = ParametricFit(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
    c = 5.76e23  # Chinchilla's budget
    assert fit.G == pytest.approx(CHINCHILLA.G)
    assert 6 * fit.n_opt(c) * fit.d_opt(c) == pytest.approx(c)
    assert fit.n_opt(c) == pytest.approx(CHINCHILLA.n_opt(c))
    assert fit.loss(1e9, 2e10) == pytest.approx(CHINCHILLA.loss(1e9, 2e10))
    assert fit.a + fit.b == pytest.approx(1.0)


# --- Approach 2 -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", LAWS)
def test_isoflop_recovers_frontier(name):
    law = LAWS[name]
    for seed in range(3):
        df = sweep(law, seed)
        fit = fit_isoflop(df.budget, df.n, df.loss, tokens=df.tokens)
        assert all(o.used for o in fit.optima)
        assert abs(fit.a - law.a) < 0.02 and abs(fit.b - law.b) < 0.02, (seed, fit.a, fit.b)
        assert fit.d_source == "tokens"
        # Interpolated tokens satisfy the budget: 6·N·D = C within rounding of the table.
        for o in fit.optima:
            assert 6 * o.n_opt * o.d_opt == pytest.approx(o.budget, rel=1e-3)
        # Without tokens D = C/(6N): the same answer on 6ND-budgeted data.
        no_tokens = fit_isoflop(df.budget, df.n, df.loss)
        assert no_tokens.d_source == "6ND" and no_tokens.b == pytest.approx(fit.b, abs=1e-3)


def test_edge_optimum_is_flagged_and_excluded():
    law = CHINCHILLA
    good = sweep(law, 0, budgets=BUDGETS[:6])
    # The last budget's grid sits 0.8 decades above its optimum: every size is too big.
    edge = sweep(law, 0, budgets=BUDGETS[6:7], centre_offset=0.8)
    df = pd.concat([good, edge], ignore_index=True)
    fit = fit_isoflop(df.budget, df.n, df.loss, tokens=df.tokens)
    flagged = [o for o in fit.optima if not o.used]
    assert [o.budget for o in flagged] == [BUDGETS[6]]
    assert flagged[0].flag.startswith("edge"), flagged[0].flag
    ref = fit_isoflop(good.budget, good.n, good.loss, tokens=good.tokens)
    assert fit.a == pytest.approx(ref.a, abs=1e-12)  # excluded from the exponent fit, not used
    assert abs(fit.a - law.a) < 0.02


def test_unbracketed_minimum_is_flagged_even_with_vertex_inside_the_grid():
    # Convex and rising: the parabola's vertex lands inside the grid (x ≈ 0.56), but the
    # lowest run is the smallest model, so the minimum is not bracketed by data.
    n = np.exp(np.arange(5.0)) * 1e7
    fit = fit_isoflop([1e18] * 5, n, [1.0, 1.02, 1.15, 1.45, 1.95])
    assert n[0] < fit.optima[0].n_opt < n[1]
    # Used (dropping such budgets biased a on off-centre grids), with a visible note.
    assert fit.optima[0].used and "not bracketed" in fit.optima[0].note


def test_downward_parabola_and_too_few_points_are_flagged():
    budget = [1e18] * 5 + [1e19] * 2 + [1e20] * 5
    n = [1e7, 2e7, 4e7, 8e7, 1.6e8, 1e8, 2e8, 1e8, 2e8, 4e8, 8e8, 1.6e9]
    loss = [3.0, 3.2, 3.3, 3.2, 3.0, 2.9, 2.8, 2.8, 2.7, 2.65, 2.7, 2.8]
    fit = fit_isoflop(budget, n, loss)
    flags = {o.budget: o.flag for o in fit.optima}
    assert "opens downward" in flags[1e18]
    assert flags[1e19] == "fewer than 3 distinct model sizes"
    assert flags[1e20] is None
    assert not fit.usable and math.isnan(fit.a)  # one usable budget cannot give a slope


def test_isoflop_bootstrap_counts_failures():
    df = sweep(CHINCHILLA, 5)
    fit = fit_isoflop(df.budget, df.n, df.loss, tokens=df.tokens, n_boot=100, seed=1)
    lo, hi = fit.interval(lambda f: f.a)
    assert lo < fit.a < hi and fit.bootstrap.n_failed == 0
    assert fit.bootstrap.method == "residual"
    # Three sizes per budget: each parabola passes through its runs, so there are no residuals
    # to resample and no interval is made up; with a measured seed σ the parametric bootstrap
    # still gives one, and draws without a minimum are counted, not hidden.
    thin = df.groupby("budget").nth([3, 4, 5])
    fit = fit_isoflop(thin.budget, thin.n, thin.loss, n_boot=50, seed=1)
    assert fit.bootstrap is None and math.isnan(fit.sigma)
    fit = fit_isoflop(thin.budget, thin.n, thin.loss, n_boot=50, seed=1, sigma=0.05, method="seed")
    assert fit.bootstrap.method == "seed" and fit.sigma_source == "replicates"
    assert fit.bootstrap.n_failed > 0
    assert fit.bootstrap.n_failed + len(fit.bootstrap.draws) == 50


# --- side by side ---------------------------------------------------------------------------
def test_compare_notes_agreement_and_disagreement():
    df = sweep(BESIROGLU, 6)
    iso = fit_isoflop(df.budget, df.n, df.loss, tokens=df.tokens, n_boot=100)
    par = fit_parametric(df.n, df.tokens, df.loss, n_boot=30)
    ok = compare(iso, par)
    assert ok.agree is True and "agree" in ok.note
    # A parametric fit with a = 0.25 and a tight interval must be called out.
    off = ParametricFit(E=1.8, A=400.0, B=400.0, alpha=0.6, beta=0.2)
    off.bootstrap = Bootstrap(10, 0, 0.9, 0, [off] * 10)
    bad = compare(iso, off)
    assert bad.agree is False and "DISAGREE" in bad.note
    assert compare(fit_isoflop(df.budget, df.n, df.loss), par).agree is None  # no intervals


# --- calibration ----------------------------------------------------------------------------
@pytest.mark.slow
def test_bootstrap_intervals_are_calibrated():
    """90% intervals contain the truth ~90% of the time over independent synthetic sweeps.

    Approach 2: 100 sweeps x 200 resamples. Approach 3: 60 sweeps x 100 resamples, with
    bootstrap refits warm-started from the point estimate only (``boot_top_k=0``) to fit
    the time budget; the grid starts the default adds are a safety net for resamples whose
    optimum jumps basin, which these well-posed sweeps do not have.
    """
    law = CHINCHILLA
    hits, a_hat, widths = [], [], []
    for rep in range(100):
        df = sweep(law, 1000 + rep)
        fit = fit_isoflop(df.budget, df.n, df.loss, tokens=df.tokens, n_boot=200, seed=rep)
        lo, hi = fit.interval(lambda f: f.a)
        hits.append(lo <= law.a <= hi)
        a_hat.append(fit.a)
        widths.append(hi - lo)
    coverage = np.mean(hits)
    assert 0.8 <= coverage <= 0.98, coverage
    # Width matches the spread of the estimates across sweeps (too-wide intervals fail too).
    # Measured 1.45 with runs resampled within budgets (a resample that drops the end points
    # extrapolates its vertex); 1.01 (coverage 89%) with the fixed-design bootstrap of the whole
    # estimator (pooled curvature, edge rule per draw).
    assert 0.7 < np.mean(widths) / (2 * 1.645 * np.std(a_hat)) < 2.0

    hits = []
    for rep in range(60):
        df = sweep(law, 2000 + rep)
        fit = fit_parametric(df.n, df.tokens, df.loss, n_boot=100, seed=rep, boot_top_k=0)
        for name in ("alpha", "beta", "a"):
            lo, hi = fit.interval(lambda f, name=name: getattr(f, name))
            hits.append(lo <= getattr(law, name) <= hi)
    coverage = np.mean(hits)
    assert 0.8 <= coverage <= 0.99, coverage
