"""What a sweep will cost before it runs: each trial's expected run time, the longest-first
launch order, and the sweep's wall time from a quick throughput probe of each shape.

One order for everything: the driver launches trials longest first (the LPT rule) and the
estimate packs them onto slots in that same order, so the printed makespan is the schedule's.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

from flops_fit.planning.grid import TrialSpec
from flops_fit.planning.resources import trial_slots
from flops_fit.trainer.throughput import probe_batch, probe_tokens_per_s

#: Fixed cost of one trial on a Ray worker (actor start, torch + dynamo import, data open,
#: report, eval, idle slot time): 4.5 s with reused actors, 18 s without (bench_sweep.py, RESULTS.md).
TRIAL_OVERHEAD_S = 4.5
#: torch.compile of a new shape's forward + backward on a GPU (Inductor, about 0.5-2 min; the
#: upper middle, until benchmarks/bench_gpu.py measures it), paid by trials that compile.
COMPILE_S = 90.0
#: Fixed cost of one optimizer step (Python, optimizer, launch overheads) in FLOP-equivalents:
#: ~2 ms at the ~50 GFLOP/s a tiny CPU model reaches (benchmarks/RESULTS.md), so step count
#: matters as much as FLOPs for the tiny models of a CPU sweep.
STEP_OVERHEAD_FLOPS = 1e8


def expected_cost(spec: TrialSpec) -> float:
    """A trial's expected run time in FLOP-equivalents: the compute it really spends (all
    matmuls incl. attention, not the budget's convention) plus its per-step overhead."""
    per_token = spec.flops_per_token_by.get("flops_attention", 6.0 * spec.n)
    return per_token * spec.tokens + spec.steps * STEP_OVERHEAD_FLOPS


def launch_order(specs: Sequence[TrialSpec]) -> list[TrialSpec]:
    """Longest expected run first: the classic LPT rule keeps slots busy at the end of the
    sweep instead of waiting on one long straggler."""
    return sorted(specs, key=lambda s: (-expected_cost(s), s.trial_id))


#: Starting a trial's Ray Train worker group (controller, k processes, the process group):
#: 10-15 s a trial measured on 2 CPU cores (tests/reliability/test_ddp_trial.py's sweep).
WORKER_GROUP_START_S = 12.0


def estimate_sweep_seconds(specs: Sequence[TrialSpec], cpus_per_trial: float = 1.0, slots: int | None = None, *,
                           tokens_per_s: dict[Any, float] | None = None, overhead_s: float = TRIAL_OVERHEAD_S,
                           probe_steps: int = 3, device: str | None = None,
                           compile: bool = False, workers: int | Callable[[TrialSpec], int] = 1) -> dict[str, Any]:
    """Expected wall time of a sweep, from a quick throughput probe of each distinct shape.

    Each trial costs ``overhead_s + tokens / tokens_per_s(shape, batch)``; trials are packed
    in ``launch_order`` onto ``slots`` slots (default: CPUs // cpus_per_trial), the order the
    driver launches by, so the makespan is the LPT schedule's. ``tokens_per_s`` may supply
    measured rates keyed by (ModelShape, batch_size, seq_len) to skip probing. ``compile``:
    trials that compile (``flops_fit.trainer.accelerator.compile_pays``) also pay ``COMPILE_S``.
    ``workers``: each trial's data-parallel workers, a number or ``ResourceRule.workers_for``
    (``--workers-per-trial``; ``slots`` then counts trials, each holding that many workers'
    resources), taken to scale ideally (the probe is one process's; gradient all-reduce time
    is not modelled) after ``WORKER_GROUP_START_S``.
    """
    from flops_fit.models.gpt_spec import gpt_shape
    from flops_fit.trainer.accelerator import compile_pays  # torch: only when costing

    slots = slots or trial_slots(os.cpu_count() or 1, cpus_per_trial)
    rates = dict(tokens_per_s or {})
    per_trial = []
    for s in launch_order(specs):
        key = (gpt_shape(s.model), s.batch_size, s.seq_len)
        if key not in rates:
            rates[key] = probe_tokens_per_s(s, batch_size=probe_batch(s, device), steps=probe_steps, warmup=1,
                                            threads=max(1, int(cpus_per_trial)), device=device)
        compile_s = COMPILE_S if compile and compile_pays(s) else 0.0
        k = workers(s) if callable(workers) else workers
        start_s = WORKER_GROUP_START_S if k > 1 else 0.0
        per_trial.append(overhead_s + start_s + compile_s + s.tokens / (rates[key] * k))
    finish = [0.0] * slots
    for t in per_trial:  # launch order: each trial to the earliest-free slot
        i = finish.index(min(finish))
        finish[i] += t
    flops = sum(s.flops for s in specs)
    return {"trials": len(specs), "slots": slots, "total_flops": flops, "trial_seconds": sum(per_trial),
            "makespan_s": max(finish) if specs else 0.0, "per_trial_s": per_trial,
            "workers": max((workers(s) for s in specs), default=1) if callable(workers) else workers}


def format_estimate(est: dict[str, Any]) -> str:
    """One line for ``flops-fit plan``."""
    return (f"estimated: {est['total_flops']:.3e} FLOPs, {est['trial_seconds']:.0f} trial-seconds, "
            f"about {est['makespan_s']:.0f} s wall on {est['slots']} slot(s)"
            + (f", trials on up to {est['workers']} workers (ideal data-parallel scaling assumed)"
               if est.get("workers", 1) > 1 else "")
            + " (from a throughput probe)")
