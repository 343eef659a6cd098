"""Driver for test_fault_node_loss.py, run as its own process: a real two-node Ray cluster on
127.0.0.1 (``ray.cluster_utils.Cluster``, the harness Ray's own node-failure tests use:
separate GCS, raylet, object store and agent processes per node, one CPU each, each node
with its own temp dir), and ``sweep()`` attached to it.

``ray start`` cannot add a second node on loopback: with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
(what keeps 127.0.0.1 from being rewritten to the machine's address) it refuses to start a
worker node at all. Cluster starts the same node processes without that CLI check.

argv: storage path, cache dir. The two temp dirs come in $NODE_LOSS_HEAD_TMP and
$NODE_LOSS_WORKER_TMP, not argv: the test finds a node's processes by its temp dir on their
command line, and this process must not be one of them.

Prints one JSON line ``{"nodes": {"head": id, "worker": id}}`` once both nodes are up, then
the sweep's progress lines, then ``{"done": ...}``. The fault itself (the worker node's
processes SIGKILLed) is injected by the test, not here: this process is what must survive it.
"""

from __future__ import annotations

import json
import os
import sys
import time

import ray
from ray.cluster_utils import Cluster

storage, cache = sys.argv[1:3]
head_tmp, worker_tmp = os.environ["NODE_LOSS_HEAD_TMP"], os.environ["NODE_LOSS_WORKER_TMP"]
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1",
                                                        "temp_dir": head_tmp, "include_dashboard": False})
cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1", temp_dir=worker_tmp)
# The head is preferred when several nodes share this host (services.get_node_to_connect_for_driver),
# so this driver hangs off the head's raylet and outlives the worker node.
ray.init(address=cluster.address, log_to_driver=False)
end = time.monotonic() + 60
while time.monotonic() < end:
    alive = [n for n in ray.nodes() if n["Alive"]]
    if len(alive) == 2:
        break
    time.sleep(0.2)
else:
    raise SystemExit(f"cluster never had two live nodes: {ray.nodes()}")
worker = [n["NodeID"] for n in alive if worker_tmp in n["RayletSocketName"]]
head = [n["NodeID"] for n in alive if worker_tmp not in n["RayletSocketName"]]
assert len(worker) == 1 and len(head) == 1, alive
me = ray.get_runtime_context().get_node_id()
print(json.dumps({"nodes": {"head": head[0], "worker": worker[0], "driver": me}}), flush=True)

from flops_fit.config import preset  # noqa: E402
from flops_fit.ray import sweep  # noqa: E402

# Two budgets (6 trials) keep it short; both start with a 519-step trial, one per node (one
# CPU per trial and per node).
cfg = preset("smoke").replace(storage_path=storage, cache_dir=cache, name="node", budgets=(2e10, 4e10),
                              checkpoint_every_s=0.3)
result = sweep(cfg, progress=True)
print(json.dumps({"done": True, "notes": list(result.notes)}), flush=True)
ray.shutdown()
# The worker node's processes are gone (the test killed them); the head's are ended here or
# by the test, which kills every process naming either temp dir.
