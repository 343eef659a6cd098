"""What each trial asks Ray for, and how many trials run at once.

Pure Python (no torch): the planner shows each trial's resources, the Ray backend requests
them. Under ``gpus_per_trial="auto"`` a trial's GPU share comes from the reference GPT's
training memory model (``flops_fit.models.gpt_spec.training_bytes``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable

from flops_fit.errors import PlanError
from flops_fit.models.gpt_spec import ModelShape, gpt_shape, param_groups, state_bytes, training_bytes

if TYPE_CHECKING:
    from flops_fit.planning.grid import TrialSpec

#: A trial whose estimate is at most this fraction of a GPU shares it (``gpus_per_trial="auto"``).
SHARE_FRACTIONS = (0.25, 0.5)
#: ``gpus_per_trial="auto"``: each trial's share from ``gpus_for``.
AUTO = "auto"


#: The most GPUs ``--gpus-per-trial auto`` shards one model over.
MAX_SHARDS = 64


def shards_for(shape: ModelShape, batch_size: int, seq_len: int, gpu_bytes: int) -> int:
    """``--gpus-per-trial auto``: 1 for a model one GPU trains (one sequence a micro-batch at
    least), else the fewest GPUs, a power of two dividing the batch, over which its sharded
    state fits (``gpt_spec.training_bytes(..., shards)``: FSDP2 keeps a k-th of the weights,
    gradients and AdamW moments on each). A model that fits on none is refused in one line."""
    shards = 1
    while training_bytes(shape, 1, seq_len, shards) > gpu_bytes:
        shards *= 2
        if shards > MAX_SHARDS or batch_size % shards:
            raise PlanError(
                f"a {param_groups(shape).total / 1e9:.2g}B-parameter model needs "
                f"{training_bytes(shape, 1, seq_len) / 1e9:.0f} GB to train even one sequence at a time "
                f"({state_bytes(shape) / 1e9:.0f} GB of it weights, gradients and AdamW moments, 16 bytes a parameter), "
                f"and sharded over the most GPUs its batch of {batch_size} allows (up to {MAX_SHARDS}) still more than "
                f"one {gpu_bytes / 1e9:.0f} GB GPU holds: plan for GPUs with more memory (--gpu-memory-gb) or smaller budgets")
    return shards


def gpus_for(shape: ModelShape, batch_size: int, seq_len: int, gpu_bytes: int) -> float:
    """``--gpus-per-trial auto``: a quarter or half a GPU for a trial whose full batch fits
    in that share, else a whole GPU (larger trials accumulate micro-batches on it; a model
    one GPU cannot hold is sharded over several, ``shards_for``, each worker a whole GPU).
    Trials that share a GPU are capped to their share by ``torch.cuda.set_per_process_memory_fraction``."""
    need = training_bytes(shape, batch_size, seq_len)
    for share in SHARE_FRACTIONS:
        if need <= share * gpu_bytes:
            return share
    return 1.0


def spread_for_time(flops: float, load: float, gpus_total: float, batch_size: int) -> int:
    """``--workers-per-trial auto``: the data-parallel workers of a whole-GPU trial of ``flops``
    FLOPs. A trial whose one-GPU time is above the sweep's average load per GPU (``load``: all
    trials' FLOPs over the GPUs, the makespan of a perfectly packed sweep) would end alone
    after the rest; it is spread over the fewest GPUs, a power of two dividing its batch and at
    most ``gpus_total``, that bring its share under that load. Time is counted in FLOPs (one
    throughput per GPU; larger models run at a higher MFU, so this spreads them a little more
    than needed) and DDP is taken to scale ideally."""
    workers = 1
    while flops / workers > load and 2 * workers <= gpus_total and batch_size % (2 * workers) == 0:
        workers *= 2
    return workers


@dataclass(frozen=True)
class ResourceRule:
    """What each trial asks Ray for: ``workers`` data-parallel processes (Ray Train, one
    unless ``--workers-per-trial``; ``"auto"``: ``spread_for_time``), each with ``cpus`` cores
    and ``gpus`` GPUs, a number or ``"auto"`` (``gpus_for`` on the trial's shape, with
    ``gpu_bytes`` per GPU). A workload whose model the memory model does not describe (a
    user's own model) gets a whole GPU under auto."""

    cpus: float
    gpus: float | str = 0.0
    gpu_bytes: int | None = None
    workers: int | str = 1
    shard: bool = False
    """Shard every trial's model over its workers (``--shard-model``), not only the ones auto finds too large."""
    load: float | None = None
    """``workers="auto"``: the sweep's FLOPs per GPU (``for_sweep``)."""
    gpus_total: float = 0.0
    """``workers="auto"``: the GPUs the sweep runs on."""

    def for_sweep(self, specs: Iterable[TrialSpec], gpus_total: float) -> ResourceRule:
        """This rule with ``--workers-per-trial auto``'s load measured on ``specs`` (every
        budget's grid and replicates: a trial added later, or the verification run, is spread by
        the same load); a fixed worker count is returned as it is."""
        if self.workers != AUTO:
            return self
        if not gpus_total:
            raise PlanError("--workers-per-trial auto spreads the longest trials over the sweep's GPUs and needs to "
                            "know how many: pass --cluster-gpus (no GPU is visible here), or a fixed --workers-per-trial")
        flops = sum(s.flops for s in specs)
        return dataclasses.replace(self, load=flops / gpus_total, gpus_total=float(gpus_total))

    @property
    def several_workers(self) -> bool:
        """Whether some trial may run on more than one worker."""
        return self.workers == AUTO or self.workers > 1 or self.shard

    def __post_init__(self) -> None:
        if self.gpus == AUTO and not self.gpu_bytes:
            raise ValueError("gpus='auto' needs gpu_bytes (the memory of one GPU)")

    def shards_for(self, spec: TrialSpec) -> int:
        """Workers the trial's model is sharded over (FSDP2): all of them with ``shard``; under
        auto as many GPUs as a model whose state one GPU cannot hold needs (``shards_for``
        above); else 1 (DDP, or one process)."""
        auto = self._auto_shards(spec)
        return max(self._data_parallel(spec), auto) if self.shard else auto

    def _data_parallel(self, spec: TrialSpec) -> int:
        if self.workers != AUTO:
            return int(self.workers)
        if self.load is None:
            raise ValueError("workers='auto' needs the sweep's load: ResourceRule.for_sweep(specs, gpus)")
        if self._unsharded_share(spec) < 1:
            return 1  # a trial that shares a GPU (or has none) is small: never the sweep's makespan
        return spread_for_time(spec.flops, self.load, self.gpus_total, spec.batch_size)

    def _auto_shards(self, spec: TrialSpec) -> int:
        if self.gpus != AUTO or not spec.model or "d_model" not in spec.model:
            return 1
        try:
            return shards_for(gpt_shape(spec.model), spec.batch_size, spec.seq_len, self.gpu_bytes)
        except PlanError as exc:
            raise PlanError(f"trial {spec.trial_id}: {exc}") from None

    def workers_for(self, spec: TrialSpec) -> int:
        """The trial's data-parallel workers (``--workers-per-trial``, or as many as its model is
        sharded over); each trains an equal slice of every step's batch
        (``flops_fit.trainer.distributed``), so the batch must split into that many."""
        workers = max(self._data_parallel(spec), self.shards_for(spec))
        if spec.batch_size % workers:
            raise PlanError(f"trial {spec.trial_id}: its batch of {spec.batch_size} sequences does not split into "
                            f"{workers} equal per-worker slices; use --workers-per-trial with a divisor of "
                            f"{spec.batch_size}")
        return workers

    def gpus_for(self, spec: TrialSpec) -> float:
        """The GPUs each of the trial's workers holds: under auto a whole one for a sharded model."""
        if self.gpus == AUTO and self.shards_for(spec) > 1:
            return 1.0
        return self._unsharded_share(spec)

    def _unsharded_share(self, spec: TrialSpec) -> float:
        """A worker's GPUs before ``--shard-model`` is counted: ``_data_parallel`` reads it (a
        trial that shares a GPU is never spread), and ``shards_for`` reads ``_data_parallel``."""
        if self.gpus != AUTO:
            return float(self.gpus)
        if not spec.model or "d_model" not in spec.model or self._auto_shards(spec) > 1:
            return 1.0
        return gpus_for(gpt_shape(spec.model), spec.batch_size, spec.seq_len, self.gpu_bytes)

    def for_spec(self, spec: TrialSpec) -> dict[str, float]:
        """Ray's resource dict for one of the trial's workers (``{"CPU": 1.0, "GPU": 0.25}``)."""
        gpus = self.gpus_for(spec)
        return {"CPU": float(self.cpus), **({"GPU": gpus} if gpus else {})}

    def describe(self, spec: TrialSpec) -> str:
        """``1c/0.25g``; ``4c/1g x2`` for two workers of that each; ``4c/1g x4 sharded`` for a
        model sharded over four."""
        res, workers = self.for_spec(spec), self.workers_for(spec)
        return (f"{res['CPU']:g}c" + (f"/{res['GPU']:g}g" if "GPU" in res else "") + (f" x{workers}" if workers > 1 else "")
                + (" sharded" if self.shards_for(spec) > 1 else ""))


def resource_rule(cpus_per_trial: float, gpus_per_trial: float | str, gpu_memory_gb: float | None = None,
                  gpu_bytes_sources: Iterable[Callable[[], int | None]] = (), workers: int | str = 1,
                  shard: bool = False) -> ResourceRule:
    """Each trial's resources. For ``gpus_per_trial="auto"`` the GPU memory is
    ``gpu_memory_gb``, else the first of ``gpu_bytes_sources`` that knows one (the local GPU's,
    then a cluster GPU worker's); without any of them auto cannot be sized and says so."""
    gpu_bytes = None
    if gpus_per_trial == AUTO:
        gpu_bytes = int(gpu_memory_gb * 1e9) if gpu_memory_gb else None
        for source in gpu_bytes_sources:
            if gpu_bytes is not None:
                break
            gpu_bytes = source()
        if gpu_bytes is None:
            raise PlanError("--gpus-per-trial auto sizes trials by GPU memory, and this machine has no GPU: "
                            "pass --gpu-memory-gb (e.g. 80 for an H100) for the GPUs the sweep will run on")
    return ResourceRule(cpus_per_trial, gpus_per_trial, gpu_bytes, workers, shard)


def trial_slots(cpus: float, cpus_per_trial: float, gpus: float = 0, gpus_per_trial: float = 0.0,
                max_concurrent: int | None = None) -> int:
    """How many trials run at once: a GPU trial is bounded by GPUs / gpus_per_trial (8 on an
    8-GPU 192-vCPU node at one GPU a trial, not 192 / cpus_per_trial), by CPUs as well."""
    slots = int(cpus // cpus_per_trial)
    if gpus_per_trial > 0:
        slots = min(slots, int(gpus // gpus_per_trial + 1e-9))
    slots = max(1, slots)
    return min(slots, max_concurrent) if max_concurrent else slots


def _fits(request: dict[str, float], node: dict[str, float]) -> bool:
    return all(node.get(k, 0.0) + 1e-9 >= v for k, v in request.items())


def _holds(request: dict[str, float], node: dict[str, float]) -> int:
    """How many workers of ``request`` one node holds at once."""
    return min((int(node.get(k, 0.0) / v + 1e-9) for k, v in request.items() if v > 0), default=1 << 30)


def placement_problem(rule: ResourceRule, specs: Iterable[TrialSpec], nodes: list[dict[str, float]]) -> str | None:
    """One line naming a trial no node can ever hold (its request against the largest node,
    and the flag that fixes it), or None when every trial fits some node. Ray would queue
    such a trial forever, warning once a minute that nothing runs."""
    largest = max(nodes, key=lambda n: (n.get("GPU", 0.0), n.get("CPU", 0.0)), default={})
    for spec in specs:
        request, workers = rule.for_spec(spec), rule.workers_for(spec)
        if any(_fits(request, node) for node in nodes):
            held = sum(_holds(request, node) for node in nodes)
            if held < workers:
                return (f"trial {spec.trial_id} asks Ray for {rule.describe(spec)} (CPUs/GPUs per worker), and this "
                        f"cluster holds {held} such workers at once; use --workers-per-trial with fewer workers, or "
                        "less --cpus-per-trial/--gpus-per-trial")
            continue
        cpus, gpus = largest.get("CPU", 0.0), largest.get("GPU", 0.0)
        fixes = []
        if request.get("CPU", 0.0) > max((n.get("CPU", 0.0) for n in nodes), default=0.0):
            fixes.append(f"--cpus-per-trial {cpus:g} or less")
        if request.get("GPU", 0.0) > max((n.get("GPU", 0.0) for n in nodes), default=0.0):
            fixes.append("--gpus-per-trial 0 to train on CPUs" if not gpus else f"--gpus-per-trial {gpus:g} or less")
        if not fixes:  # each fits some node, not both on one
            fixes.append(f"--cpus-per-trial {cpus:g} or less (the node with the most GPUs has {cpus:g} CPUs)")
        return (f"trial {spec.trial_id} asks Ray for {rule.describe(spec)} (CPUs/GPUs), and no node of this cluster "
                f"has that much (the largest: {cpus:g} CPUs, {gpus:g} GPUs); use {' and '.join(fixes)}")
    return None
