"""Every script in examples/ runs with --smoke-test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flops_fit.results.table import TRAINED_STATUSES, read_results

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_smoke_test(script, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run(
        [sys.executable, str(script), "--smoke-test", "--storage-path", str(tmp_path / "runs"),
         "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=900, env=env,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = read_results(tmp_path / "runs" / "smoke")
    assert len(table) >= 9 and table["status"].isin(TRAINED_STATUSES).all()
