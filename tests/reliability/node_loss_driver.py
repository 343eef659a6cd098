"""Driver for test_fault_node_loss.py (run as its own process): a real two-node Ray cluster
on loopback (ray.cluster_utils.Cluster: separate GCS/raylet processes, one CPU per node), a
smoke sweep on it, and the worker node SIGKILLed while one of its trials is training.

Prints one JSON line: the head and worker node ids and the trial that was running there.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

storage, cache = Path(sys.argv[1]), sys.argv[2]
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1"})
worker = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
ray.init(address=cluster.address, log_to_driver=False)
cluster.wait_for_nodes()
head_id, worker_id = cluster.head_node.node_id, worker.node_id
info: dict = {"head": head_id, "worker": worker_id}


def worker_pids() -> set[int]:
    import psutil

    pids = set()
    for proc in worker.all_processes.get("raylet", []):
        try:
            pids |= {p.pid for p in psutil.Process(proc.process.pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            pass
    return pids


def kill_worker_when_it_trains() -> None:
    run_dir = storage / "node"
    end = time.monotonic() + 300
    while time.monotonic() < end:
        pids = worker_pids()
        for result in run_dir.glob("*/result.json"):
            lines = [json.loads(x) for x in result.read_text().splitlines() if x.strip()]
            if any(r.get("pid") in pids and r.get("status") == "running" for r in lines):
                params = json.loads((result.parent / "params.json").read_text())
                info["killed_trial"] = params["spec"]["trial_id"]
                cluster.remove_node(worker, allow_graceful=False)  # SIGKILL raylet, store, workers
                info["killed_at"] = time.time()
                return
        time.sleep(0.2)


from flops_fit.config import preset  # noqa: E402
from flops_fit.ray import sweep  # noqa: E402

watcher = threading.Thread(target=kill_worker_when_it_trains, daemon=True)
watcher.start()
cfg = preset("smoke").replace(storage_path=str(storage), cache_dir=cache, name="node", checkpoint_every_s=0.5)
try:
    sweep(cfg, progress=False)
except Exception as exc:  # noqa: BLE001 - the fit after the table is report.py's; see the test
    info["sweep_error"] = f"{type(exc).__name__}: {exc}"[:500]
print(json.dumps(info), flush=True)
ray.shutdown()
cluster.shutdown()
