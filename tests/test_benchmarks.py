"""Every benchmark script runs with --quick and prints one JSON object (its last stdout line)
with the keys RESULTS.md quotes. Timings are printed, never asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"

CASES = {
    "bench_train.py": ["rows", "device", "compile"],
    "bench_data.py": ["prepare_tokens_per_s", "tokenize_only_tokens_per_s", "reopen_tokenize_calls", "loader", "loader_frac_max"],
    "bench_fit.py": ["grid_fit_s", "bootstrap_fit_s", "n_boot", "rows"],
    "bench_plateau.py": ["plateau_loss", "rows"],
    "bench_batch_lr.py": ["rows", "best", "batch_exponent"],
    "bench_sweep.py": ["efficiency", "efficiency_tune_span", "fixed_cost_per_trial_s", "driver_s", "sum_wall_s", "estimate"],
    "bench_cost.py": ["estimate_total_flops", "estimate_makespan_s", "actual_total_flops", "actual_driver_s"],
    "bench_wsd.py": ["cosine", "wsd_f0.2", "budgets"],
    "bench_scale.py": ["trials", "wall_s", "s_per_trial", "tune_state_bytes_per_trial", "driver_peak_rss_mb",
                       "trainable_actors"],
}


_CACHE: dict[str, dict] = {}


def run_quick(script: str, tmp_path_factory) -> dict:
    """Run ``script --quick`` once per session (subprocess, offline) and parse its JSON line."""
    if script not in _CACHE:
        tmp = tmp_path_factory.mktemp(script.replace(".py", ""))
        # TMPDIR short: Ray puts unix sockets under it, and their paths must fit in 107 bytes.
        short_tmp = tempfile.mkdtemp(prefix="ffb", dir="/tmp")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
               "TMPDIR": short_tmp, "FLOPS_FIT_CACHE": str(tmp / "cache")}
        proc = subprocess.run([sys.executable, str(BENCH / script), "--quick"], capture_output=True, text=True,
                              env=env, timeout=600, cwd=tmp)
        assert proc.returncode == 0, proc.stderr[-3000:]
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        assert len(lines) >= 2, "a human table, then the JSON line"
        _CACHE[script] = json.loads(lines[-1])
    return _CACHE[script]


@pytest.mark.parametrize("script", [
    "bench_train.py", "bench_data.py", "bench_fit.py", "bench_plateau.py", "bench_batch_lr.py",
    # These two start Ray and run 3 real smoke trials each: ~20 s idle, minutes on a busy box.
    pytest.param("bench_sweep.py", marks=pytest.mark.slow),
    pytest.param("bench_cost.py", marks=pytest.mark.slow),
    pytest.param("bench_scale.py", marks=pytest.mark.slow),  # 20 simulated trials on its own Ray
    pytest.param("bench_wsd.py", marks=pytest.mark.slow),  # a cosine and a WSD smoke sweep, 6 trials each
])
def test_quick_benchmark_prints_json_with_its_keys(script, tmp_path_factory):
    result = run_quick(script, tmp_path_factory)
    assert result["quick"] is True
    assert {"machine", "load_end"} <= set(result)
    assert set(CASES[script]) <= set(result)


def test_train_rows_carry_throughput_and_mfu(tmp_path_factory):
    row = run_quick("bench_train.py", tmp_path_factory)["rows"][0]
    assert {"tokens_per_s", "mfu", "peak_gflops", "flops_per_token", "threads"} <= set(row)
    assert row["tokens_per_s"] > 0 and row["peak_gflops"] > 0


def test_second_open_of_the_cache_tokenizes_nothing(tmp_path_factory):
    assert run_quick("bench_data.py", tmp_path_factory)["reopen_tokenize_calls"] == 0  # behaviour, not timing
