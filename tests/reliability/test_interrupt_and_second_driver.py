"""Faults with real processes: Ctrl-C to the real CLI writes partial results; a second driver on
one sweep directory is refused."""

from __future__ import annotations

import signal
import subprocess

import pytest
from rel_helpers import LineReader, start_smoke_sweep, subprocess_env, sweep_cli

from flops_fit.results.table import read_results


@pytest.mark.slow
def test_ctrl_c_writes_partial_results_and_exits_130(tmp_path, smoke_cache, ray_tmp):
    with start_smoke_sweep(tmp_path / "runs", smoke_cache, "intr", ray_tmp) as driver:
        driver.signal_after(1, signal.SIGINT)  # what Ctrl-C sends; Tune catches it and returns early
        rc = driver.proc.wait(120)
        text = driver.out.text()
    assert rc == 130, text[-3000:]  # was rc 1 with TypeError: 'NoneType' object is not subscriptable
    assert "Traceback" not in text
    assert "flops-fit: interrupted; rerun the same command to resume" in text
    rows = read_results(tmp_path / "runs" / "intr")
    assert len(rows) >= 1 and set(rows["status"]) <= {"ok", "diverged"}


@pytest.mark.slow
def test_second_driver_on_one_sweep_is_refused(tmp_path, ray_tmp):
    env = subprocess_env(ray_tmp)
    cmd = sweep_cli(tmp_path / "runs", tmp_path / "cache", "dup", "--simulate")
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = LineReader(first)
    try:
        assert out.wait_for(lambda lines: any("starting sweep" in x for x in lines), timeout=120), out.text()
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert first.poll() is None, "first driver ended before the second started; the test proves nothing"
        assert second.returncode == 2, second.stdout + second.stderr  # was 0, training all 9 trials again
        assert "is in use by another driver (pid" in second.stderr and str(first.pid) in second.stderr
        assert first.wait(180) == 0, out.text()[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
    # the lock went with its driver: a rerun resumes instead of being refused
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
