"""A sweep that cannot place its trials says so in one line, and a simulated sweep asks for
nothing it does not use: the pure check, then through real Ray (the session's, and the
private one the ``flops-fit`` command starts)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from flops_fit.errors import PlanError
from flops_fit.planning.grid import plan
from flops_fit.planning.resources import ResourceRule, placement_problem
from flops_fit.ray.placement import ensure_placeable

SPECS = plan([1e12], 3, seq_len=64, vocab_size=512, min_steps=8)
LAPTOP = [{"CPU": 2.0, "memory": 8e9}]


def test_a_request_no_node_can_hold_is_named_with_the_largest_node_and_the_flag_that_fixes_it():
    assert placement_problem(ResourceRule(cpus=2.0), SPECS, LAPTOP) is None
    line = placement_problem(ResourceRule(cpus=8.0), SPECS, LAPTOP)
    assert line == (f"trial {SPECS[0].trial_id} asks Ray for 8c (CPUs/GPUs), and no node of this cluster has that "
                    "much (the largest: 2 CPUs, 0 GPUs); use --cpus-per-trial 2 or less")
    line = placement_problem(ResourceRule(cpus=1.0, gpus=1.0), SPECS, LAPTOP)
    assert "asks Ray for 1c/1g" in line and line.endswith("use --gpus-per-trial 0 to train on CPUs")
    gpu_node = [{"CPU": 8.0, "GPU": 4.0}, {"CPU": 64.0}]
    line = placement_problem(ResourceRule(cpus=16.0, gpus=1.0), SPECS, gpu_node)  # each fits a node, not both one
    assert "(the largest: 8 CPUs, 4 GPUs)" in line and "--cpus-per-trial 8 or less" in line
    assert placement_problem(ResourceRule(cpus=8.0, gpus=4.0), SPECS, gpu_node) is None
    assert "no node" in placement_problem(ResourceRule(cpus=1.0), SPECS, [])  # no live node at all


def test_a_trial_on_several_workers_fits_when_the_cluster_holds_them_all_spread_over_nodes():
    two_nodes = [{"CPU": 2.0}, {"CPU": 2.0}]
    assert placement_problem(ResourceRule(cpus=1.0, workers=4), SPECS, two_nodes) is None  # 2 + 2 workers
    line = placement_problem(ResourceRule(cpus=1.0, workers=4), SPECS, LAPTOP)
    assert line == (f"trial {SPECS[0].trial_id} asks Ray for 1c x4 (CPUs/GPUs per worker), and this cluster holds "
                    "2 such workers at once; use --workers-per-trial with fewer workers, or less "
                    "--cpus-per-trial/--gpus-per-trial")
    gpu_nodes = [{"CPU": 16.0, "GPU": 2.0}, {"CPU": 16.0, "GPU": 2.0}]
    assert placement_problem(ResourceRule(cpus=4.0, gpus=1.0, workers=4), SPECS, gpu_nodes) is None
    assert "holds 2 such workers" in placement_problem(ResourceRule(cpus=12.0, gpus=1.0, workers=4), SPECS, gpu_nodes)


def test_without_an_autoscaler_the_refusal_is_immediate_with_one_it_waits_for_a_node_that_fits(ray_session):
    """The waiting path on the real session Ray (``request_resources`` is real): a node list that
    grows on the third look lets the sweep start; one that never grows times out in one line."""
    with pytest.raises(PlanError, match="use --cpus-per-trial 2 or less$"):
        ensure_placeable(ResourceRule(cpus=8.0), SPECS, 60, nodes=lambda: LAPTOP, autoscaling=lambda: False)
    looks, said = iter([LAPTOP, LAPTOP, [{"CPU": 16.0}]]), []
    ensure_placeable(ResourceRule(cpus=8.0), SPECS, 60, say=said.append, nodes=lambda: next(looks),
                     autoscaling=lambda: True, poll_s=0.01)
    assert "this cluster autoscales: waiting up to 60 s (--placement-timeout)" in said[0] and "joined" in said[1]
    with pytest.raises(PlanError, match=r"none joined within 0.2 s \(--placement-timeout\)$"):
        ensure_placeable(ResourceRule(cpus=8.0), SPECS, 0.2, say=said.append, nodes=lambda: LAPTOP,
                         autoscaling=lambda: True, poll_s=0.01)


def _cli(tmp_path, *flags):
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "flops_fit.cli", "sweep", "--preset", "tiny", "--storage-path",
                           str(tmp_path), "--name", "x", *flags], capture_output=True, text=True, timeout=300)
    return done, time.monotonic() - t0


@pytest.mark.parametrize("flags, fix", [(("--cpus-per-trial", "64"), "--cpus-per-trial"),
                                        (("--gpus-per-trial", "1"), "--gpus-per-trial 0 to train on CPUs")])
def test_the_cli_refuses_an_unplaceable_sweep_in_one_line_with_nothing_trained(tmp_path, flags, fix):
    """On this machine (no GPU, fewer than 64 cores) through the private Ray the command starts."""
    done, took = _cli(tmp_path, *flags)
    assert done.returncode == 2, done.stderr[-2000:]
    ours = [line for line in done.stderr.splitlines() if "Started a local Ray instance" not in line]  # Ray's own
    assert len(ours) == 1 and ours[0].startswith("flops-fit: error: trial C1.00e1") and fix in ours[0], ours
    assert "Traceback" not in done.stderr + done.stdout
    run_dir = tmp_path / "x"
    assert not (run_dir / "results.parquet").exists() and not list(run_dir.glob("C*")), list(run_dir.iterdir())
    assert took < 120, took  # seconds, not Ray's once-a-minute "no trial is running" forever


def test_a_simulated_gpu_design_runs_on_cpus_reusing_its_actors(ray_session, tmp_path):
    """The GPU preset's design (4 CPUs and a GPU a trial if it trained) on the session's Ray of
    2 CPUs and 1 logical GPU: every trial asks for half a CPU and no GPU, and a handful of
    reused actors run them all, not a fresh process per trial."""
    from flops_fit.fitting.synthetic import DEFAULT_SIMULATED_LAW
    from flops_fit.ray import sweep

    def trainable_actors() -> set[str]:
        # Every actor the cluster ever made (dead ones too) from the GCS's table: the state API
        # (ray.util.state) needs the dashboard, which the loopback-only Ray does not start.
        from ray._private.state import actors

        return {i for i, a in actors().items() if a.get("ActorClassName") == "ImplicitFunc"}  # Tune's function trainable

    before = trainable_actors()
    result = sweep(preset="tinystories-gpu", simulate=dict(DEFAULT_SIMULATED_LAW), budgets=[1e17, 1e18, 1e19],
                   gpus_per_trial=1.0, replicates=0, adapt=False, storage_path=str(tmp_path), name="design",
                   n_boot=0, progress=False)
    table = result.results
    assert len(table) == 21 and (table["status"] == "ok").all()
    made = trainable_actors() - before
    assert 1 <= len(made) <= 4, len(made)  # 2 CPUs / 0.5 CPU a trial at most, not one per trial
    assert abs(result.isoflop.a - 0.4875) < 0.05  # and it is still a design: Besiroglu's a recovered
