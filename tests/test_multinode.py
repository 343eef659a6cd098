"""A real two-node Ray cluster on loopback, the example submitted through the Jobs API."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from flops_fit.results import read_results

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", HF_HUB_OFFLINE="1")
    env.pop("RAY_ADDRESS", None)
    return env


@pytest.fixture
def two_node_cluster(tmp_path):
    """Head + one worker node, one CPU each, loopback only. The worker gets its own temp dir:
    on one machine a shared one lets a node garbage-collect the other's job directory."""
    gcs, dash = _free_port(), _free_port()
    env = _env()
    head = [RAY, "start", "--head", f"--port={gcs}", "--num-cpus=1", "--node-ip-address=127.0.0.1",
            "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}"]
    worker = [RAY, "start", f"--address=127.0.0.1:{gcs}", "--num-cpus=1", "--node-ip-address=127.0.0.1",
              f"--temp-dir={tmp_path / 'ray_worker'}"]
    try:
        subprocess.run(head, check=True, env=env, capture_output=True, timeout=120)
        subprocess.run(worker, check=True, env=env, capture_output=True, timeout=120)
        yield f"http://127.0.0.1:{dash}"
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(tmp_path / "ray_worker", ignore_errors=True)


@pytest.mark.slow
def test_job_submit_runs_trials_on_both_nodes(two_node_cluster, tmp_path):
    storage = tmp_path / "runs"
    job = [RAY, "job", "submit", "--address", two_node_cluster, "--working-dir", str(REPO), "--",
           "python", "examples/tinystories_sweep.py", "--smoke-test", "--storage-path", str(storage),
           "--name", "twonode", "--cache-dir", str(tmp_path / "cache")]
    done = subprocess.run(job, env=_env(), capture_output=True, text=True, timeout=900, cwd=REPO)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    table = read_results(storage / "twonode")
    assert (table["status"] == "ok").all(), table[["trial_id", "status", "error"]]
    assert table["node_id"].nunique() == 2  # trials ran on the head and on the worker node
