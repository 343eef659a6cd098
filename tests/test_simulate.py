"""Simulation mode: trials return a known law's losses through the same Ray path, and the
fit of the gathered table recovers that law."""

from __future__ import annotations

import glob
import subprocess
import sys

import pytest

from flops_fit.config import SweepConfig
from flops_fit.fitting.synthetic import ScalingLaw

LAW = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}  # Chinchilla (Hoffmann et al. 2022)


def test_a_simulated_sweep_through_ray_recovers_the_law(ray_session, tmp_path):
    from flops_fit.ray import sweep

    cfg = SweepConfig.of(
        budgets=(1e18, 1e19, 1e20, 1e21), points_per_budget=9, span=12.0, vocab_size=32000, seq_len=1024,
        simulate={**LAW, "noise": 0.003}, storage_path=str(tmp_path), name="sim", n_boot=50,
    )
    result = sweep(cfg, progress=False)
    truth = ScalingLaw(**LAW)
    assert (result.results["status"] == "ok").all() and len(result.results) >= 30
    p = result.parametric
    assert abs(p.alpha - truth.alpha) < 0.03 and abs(p.beta - truth.beta) < 0.03
    assert abs(p.a - truth.a) < 0.02
    assert abs(result.isoflop.a - truth.a) < 0.03
    # the files a sweep promises sit beside the table
    for name in ("results.parquet", "fits.json", "table.txt", "isoflop.png", "frontier.png"):
        assert (tmp_path / "sim" / name).stat().st_size > 0


def test_a_simulated_wsd_sweep_gives_branch_rows_and_approach_1_recovers_the_law(ray_session, tmp_path):
    from flops_fit.ray import sweep

    cfg = SweepConfig.of(
        budgets=(1e18, 2e18, 4e18, 8e18, 1.6e19), points_per_budget=7, span=12.0, vocab_size=32000, seq_len=1024,
        simulate={**LAW, "noise": 0.003}, storage_path=str(tmp_path), name="simwsd", n_boot=50, schedule="wsd",
        adapt=False,  # a fixed grid: an adaptive one centres later budgets on whatever finished first
    )
    result = sweep(cfg, progress=False)
    table = result.results
    assert (table["status"] == "ok").all() and (table["schedule"] == "wsd").all()
    assert table.groupby("stem")["tokens"].nunique().max() >= 3  # stems serve several budgets
    compute = result.compute()
    assert compute["flops_spent"] < 0.75 * compute["flops_as_cosine_runs"]
    assert compute["flops_spent"] == table["flops_trained"].sum()
    truth = ScalingLaw(**LAW).a
    assert abs(result.isoflop.a - truth) < 0.02
    # Approach 1 is there, and on this narrow design (16x in compute, the GPT's own snapped
    # sizes) it reads low (0.388 [0.330, 0.440], docs/fitting.md): the sweep does not claim the
    # two approaches agree
    assert result.envelope is not None and result.envelope.a < truth
    assert result.envelope_agreement["agree"] is not True


def test_cli_simulate_then_fit_and_predict_from_the_saved_table(tmp_path):
    run = [sys.executable, "-m", "flops_fit.cli"]
    common = ["--storage-path", str(tmp_path), "--name", "cli", "--budgets", "1e18", "1e19", "1e20",
              "--points-per-budget", "7", "--vocab-size", "32000", "--seq-len", "1024", "--n-boot", "20",
              "--simulate", "--simulate-noise", "0.003"]
    sessions = lambda: set(glob.glob("/tmp/ray/session_2*"))  # noqa: E731
    before = sessions()
    done = subprocess.run(run + ["sweep", "--preset", "tinystories-gpu", *common], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Compute-optimal" in done.stdout
    # The private runtime removes its /tmp/ray/session_* directory (about 3 MB each) at exit.
    assert not sessions() - before, f"left behind: {sessions() - before}"
    fit = subprocess.run(run + ["fit", str(tmp_path / "cli"), "--n-boot", "20"], capture_output=True, text=True,
                         timeout=300)
    assert fit.returncode == 0, fit.stderr[-3000:]
    pred = subprocess.run(run + ["predict", str(tmp_path / "cli" / "results.parquet"), "--flops", "1e21", "1e24",
                                 "--n-boot", "20"], capture_output=True, text=True, timeout=300)
    assert pred.returncode == 0, pred.stderr[-3000:]
    lines = [l for l in pred.stdout.splitlines() if l.startswith("C=")]
    assert len(lines) == 2 and "N=" in lines[0] and "D=" in lines[0]
    assert "extrapolat" in lines[1].lower()  # 1e24 is four decades past the largest budget


@pytest.mark.parametrize("argv, message", [
    (["fit", "/nonexistent/sweep"], "no results table"),
    (["predict", "/nonexistent/sweep", "--flops", "1e21"], "no results table"),
    (["sweep", "--preset", "huge"], "unknown preset 'huge'"),
    (["plan", "--budgets", "1e12", "-1"], "positive finite"),
])
def test_cli_errors_are_one_line(argv, message):
    done = subprocess.run([sys.executable, "-m", "flops_fit.cli", *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
