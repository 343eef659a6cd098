"""A real two-node Ray cluster on loopback, the example submitted through the Jobs API."""

from __future__ import annotations

import os
import shutil
import signal
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


def stop_cluster(marker: str) -> None:
    """Kill this cluster's processes only: ``ray stop`` would kill every Ray process on the
    machine, including the test session's own runtime. Every process of a node started with
    ``--temp-dir=D`` names D on its command line."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker in (proc / "cmdline").read_bytes().decode(errors="replace"):
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


@pytest.fixture
def two_node_cluster(tmp_path):
    """Head + one worker node, one CPU each, loopback only, each with its own temp dir: on one
    machine a shared one lets a node garbage-collect the other's job directory."""
    gcs, dash = _free_port(), _free_port()
    env = {**_env(), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # keep 127.0.0.1 (see sweep.start_private_ray)
    head_tmp, worker_tmp = tmp_path / "ray_head", tmp_path / "ray_worker"
    head = [RAY, "start", "--head", f"--port={gcs}", "--num-cpus=1", "--node-ip-address=127.0.0.1",
            "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
            f"--temp-dir={head_tmp}"]
    worker = [RAY, "start", f"--address=127.0.0.1:{gcs}", "--num-cpus=1", "--node-ip-address=127.0.0.1",
              f"--temp-dir={worker_tmp}"]
    try:
        subprocess.run(head, check=True, env=env, capture_output=True, timeout=120)
        subprocess.run(worker, check=True, env=env, capture_output=True, timeout=120)
        yield f"http://127.0.0.1:{dash}"
    finally:
        for temp in (worker_tmp, head_tmp):
            stop_cluster(str(temp))
            shutil.rmtree(temp, ignore_errors=True)


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
