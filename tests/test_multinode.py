"""A real two-node Ray cluster on loopback, the example submitted through the Jobs API."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from flops_fit.results.table import TRAINED_STATUSES, read_results

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


# `ray start` cannot put a second node on loopback: Ray rewrites 127.0.0.1 to the machine's
# address (and listens on all interfaces) unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, and with
# that set the CLI refuses worker nodes. ray.cluster_utils.Cluster starts the same processes
# (GCS, raylet, object store, agents, dashboard) per node without that check, so both nodes
# stay on 127.0.0.1. It runs in its own process, which the test ends when done.
# Agent ports are chosen free: Ray's fixed defaults (e.g. the dashboard agent's 52365) are
# already taken by the test session's own Ray, and the head's job agent would never start.
CLUSTER = """
import sys, time
from ray.cluster_utils import Cluster
head_tmp, worker_tmp, dash = sys.argv[1], sys.argv[2], int(sys.argv[3])
head_ports, worker_ports = (dict(zip(("dashboard_agent_listen_port", "metrics_export_port", "runtime_env_agent_port"),
                                     map(int, ports.split(",")))) for ports in sys.argv[4:6])
cluster = Cluster(initialize_head=True, head_node_args=dict(
    num_cpus=1, node_ip_address="127.0.0.1", temp_dir=head_tmp, include_dashboard=True,
    dashboard_host="127.0.0.1", dashboard_port=dash, **head_ports))
cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1", temp_dir=worker_tmp, **worker_ports)
cluster.wait_for_nodes()
print("ready", flush=True)
sys.stdin.read()  # until the test closes it
"""


@pytest.fixture
def no_session_ray():
    """Two Ray clusters of one machine on 127.0.0.1 trip over each other (the worker node's
    runtime-env downloads failed against the session's runtime), so the test session's own Ray
    is stopped for this test and started again after it."""
    import ray

    from flops_fit.ray.backend import start_private_ray

    was_running = ray.is_initialized()
    ray.shutdown()
    yield
    if was_running:
        start_private_ray(num_cpus=2)


@pytest.fixture
def two_node_cluster(no_session_ray):
    """Head + one worker node, one CPU each, on 127.0.0.1, each with its own temp dir (on one
    machine a shared one lets a node garbage-collect the other's job directory)."""
    dash = _free_port()
    env = {**_env(), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    # Short paths: Ray's unix sockets live under the temp dir and must fit in 107 bytes.
    head_tmp, worker_tmp = (tempfile.mkdtemp(prefix=f"ff{role}", dir="/tmp") for role in ("h", "w"))
    ports = [",".join(str(_free_port()) for _ in range(3)) for _node in ("head", "worker")]
    proc = subprocess.Popen([sys.executable, "-c", CLUSTER, head_tmp, worker_tmp, str(dash), *ports], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready", "the two-node cluster did not start"
        yield f"http://127.0.0.1:{dash}"
    finally:
        proc.kill()
        for temp in (worker_tmp, head_tmp):
            stop_cluster(temp)
            shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_job_submit_runs_trials_on_both_nodes(two_node_cluster, tmp_path):
    storage = tmp_path / "runs"
    job = [RAY, "job", "submit", "--address", two_node_cluster, "--working-dir", str(REPO), "--",
           "python", "examples/tinystories_sweep.py", "--smoke-test", "--storage-path", str(storage),
           "--name", "twonode", "--cache-dir", str(tmp_path / "cache")]
    for _ in range(20):  # the head's job agent registers a few seconds after the node is up
        done = subprocess.run(job, env=_env(), capture_output=True, text=True, timeout=900, cwd=REPO)
        if "No available agent" not in done.stderr:
            break
        time.sleep(3)
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
    table = read_results(storage / "twonode")
    assert table["status"].isin(TRAINED_STATUSES).all(), table[["trial_id", "status", "error"]]
    assert table["node_id"].nunique() == 2  # trials ran on the head and on the worker node
