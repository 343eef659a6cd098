"""Fault 3: on a two-node loopback cluster the worker node dies mid-sweep. Every process of
that node (raylet, object store, agents, the trial worker training on it) is SIGKILLed while
one of its trials trains. Tune reschedules that trial, from its last checkpoint, on the head;
the sweep completes with a full table.

The cluster is two real nodes on 127.0.0.1 (ray.cluster_utils.Cluster in the driver process,
node_loss_driver.py), one CPU each, each with its own temp dir (on one machine a shared one
lets a node clean up the other's files). The worker node's processes are found by that
directory on their command line, plus their descendants (trial workers retitle themselves
``ray::ImplicitFunc.train``); nothing else on the machine is touched. The driver runs
``sweep()`` attached to the head.
The ``ray job submit`` path on two nodes is tests/test_multinode.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rel_helpers import LineReader, descendants, kill_pids, marked_pids, psutil, stop_node, subprocess_env

from flops_fit.results.table import TRAINED_STATUSES, read_results

DRIVER = Path(__file__).with_name("node_loss_driver.py")


def _reports(run_dir: Path, steps: dict | None = None) -> dict[str, list[dict]]:
    """Tune's result.json lines per planned trial id (what the driver has logged so far);
    ``steps`` collects each trial's planned step count."""
    out = {}
    for params in run_dir.glob("*/params.json"):
        try:
            spec = json.loads(params.read_text())["spec"]
            trial = spec["trial_id"]
            if steps is not None:
                steps[trial] = spec["steps"]
            text = (params.parent / "result.json").read_text()
        except (OSError, ValueError, KeyError):
            continue
        rows = []
        for line in text.splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:  # the line being written
                pass
        out[trial] = rows
    return out


def _worker_node_pids(worker_tmp: str) -> set[int]:
    ps = psutil()
    pids = set()
    for pid in marked_pids(worker_tmp):
        try:
            if ps.Process(pid).name() == "raylet":
                pids |= {p.pid for p in descendants(pid)}
        except ps.NoSuchProcess:
            pass
    return pids


@pytest.mark.slow
def test_lost_worker_node_trials_finish_on_the_head(tmp_path, smoke_cache, ray_tmp):
    head_tmp, worker_tmp = str(ray_tmp / "headnode"), str(ray_tmp / "workernode")
    env = subprocess_env(ray_tmp)
    # Both nodes on 127.0.0.1 (Ray 2.60 would rewrite it to the machine's address; see
    # sweep.start_private_ray). The GCS declares a node dead after `threshold` missed health
    # checks `period` apart (defaults 5 x 3 s); shortened so the loss is noticed in ~2 s.
    env.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_health_check_period_ms="500",
               RAY_health_check_timeout_ms="1000", RAY_health_check_failure_threshold="3",
               RAY_health_check_initial_delay_ms="1000")
    env.pop("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS")  # result.json (per-report worker pids) is how we watch
    (ray_tmp / "ray").mkdir()  # Cluster records its address there ($RAY_TMPDIR/ray/ray_current_cluster)
    run_dir = tmp_path / "runs" / "node"
    driver = None
    try:
        env.update(NODE_LOSS_HEAD_TMP=head_tmp, NODE_LOSS_WORKER_TMP=worker_tmp)
        driver = subprocess.Popen([sys.executable, str(DRIVER), str(tmp_path / "runs"), str(smoke_cache)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out = LineReader(driver)
        assert out.wait_for(lambda lines: any(x.startswith('{"nodes"') for x in lines), 90), out.text()[-3000:]
        nodes = next(json.loads(x) for x in out.lines if x.startswith('{"nodes"'))["nodes"]
        assert nodes["driver"] == nodes["head"] != nodes["worker"]

        # Wait until a trial on the worker node has reported (every running report carries a
        # checkpoint) in the first half of its steps, then kill the whole node at once. The
        # half leaves it seconds to live, so it cannot finish between this look and the kill.
        victim, on_worker, steps = None, set(), {}
        end = time.monotonic() + 240
        while victim is None and time.monotonic() < end and driver.poll() is None:
            on_worker = _worker_node_pids(worker_tmp)
            for trial, rows in _reports(run_dir, steps).items():
                last = rows[-1] if rows else {}
                if (last.get("pid") in on_worker and last.get("status") == "running"
                        and last.get("step", 0) <= steps[trial] // 2):
                    victim = trial
                    break
            else:
                time.sleep(0.05)
        assert victim is not None, "no trial reported from the worker node\n" + out.text()[-3000:]
        stop_node(worker_tmp)
        killed_at = time.time()
        assert not marked_pids(worker_tmp), "worker node processes survived SIGKILL"
        driver.wait(300)
        text = out.text()
    finally:
        if driver is not None:
            kill_pids(descendants(driver.pid))
            if driver.poll() is None:
                driver.kill()
        stop_node(worker_tmp)
        stop_node(head_tmp)
        shutil.rmtree(head_tmp, ignore_errors=True)
        shutil.rmtree(worker_tmp, ignore_errors=True)

    assert driver.returncode == 0, text[-4000:]
    assert any(x.startswith('{"done"') for x in text.splitlines()), text[-3000:]
    table = read_results(run_dir).set_index("trial_id")
    assert len(table) == 6 and table["status"].isin(TRAINED_STATUSES).all(), table[["status", "error"]]
    # Every trial that had reported from the worker node's processes and had not finished
    # there (the victim at least) finished on the head, resumed after its last checkpoint.
    reports = _reports(run_dir)
    lost = sorted(t for t, rows in reports.items()
                  if any(r.get("pid") in on_worker for r in rows) and rows[-1].get("pid") not in on_worker)
    assert victim in lost, (victim, lost)
    for trial in lost:
        rows = reports[trial]
        before = [r for r in rows if r.get("pid") in on_worker]
        after = [r for r in rows if r.get("pid") not in on_worker]
        assert all(r.get("status") == "running" for r in before), before[-1:]  # it died unfinished
        assert table.loc[trial, "node_id"] == nodes["head"], (trial, table.loc[trial, "node_id"])  # rescheduled
        assert after[-1]["status"] in TRAINED_STATUSES and after[-1]["resumed"] is True, after[-1:]
        last_ckpt = max(r["step"] for r in before)
        steps_after = [r["step"] for r in after if r.get("status") == "running"]
        assert not steps_after or min(steps_after) > last_ckpt, (last_ckpt, steps_after[:3])
    last_step = max(r["step"] for r in reports[victim] if r.get("pid") in on_worker)
    back = min(r["timestamp"] for r in reports[victim] if r.get("pid") not in on_worker) - killed_at
    print(f"node loss: killed the worker node while {victim} trained (last checkpoint step {last_step} of "
          f"{steps[victim]}); lost trials {lost} rescheduled on the head (first report there ~{back:.0f} s "
          f"after the kill, resumed after step {last_step}); table 6/6 ok")
