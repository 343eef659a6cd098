"""One trial: a TrialSpec and a workload in, metrics out. torch only (no Ray), so it runs and
tests alone.

The workload builds the model and opens the data (``flops_fit.workloads``); the trial
trains for exactly ``spec.tokens`` tokens (whole steps of ``batch_size x seq_len``) with
AdamW and a warmup + cosine schedule sized to its own length (Hoffmann et al. 2022, §3: a
schedule longer than the run biases the loss of short runs upward), then evaluates on the
fixed held-out validation set every trial shares. That validation loss is the ``loss`` the
fit uses.

Resumption: the batch at step k is a pure function of (seed, k) (``flops_fit.trainer.batches``), so
a checkpoint needs only model, optimizer, step and the running curve; a resumed trial sees
exactly the batches an uninterrupted one would.

Steps of ``run_trial``: setup (device, data, model, optimizer), resume, loop, evaluate,
record. On k data-parallel ranks (an initialized process group) every rank runs this same
function on its slice of each step's batch (``flops_fit.trainer.distributed``). ``TrainOptions.step_hooks`` run before every step with a :class:`StepContext`.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch

from flops_fit.config import TrainOptions
from flops_fit.planning.grid import TrialSpec
from flops_fit.planning.schedule import lr_multiplier
from flops_fit.trainer import checkpoint
from flops_fit.trainer.accelerator import (
    autocast_for,
    compile_pays,
    compute_dtype,
    configure_compile,
    is_oom,
    micro_batches_for,
    release_device_memory,
)
from flops_fit.trainer.batches import BatchOrder, BatchStream
from flops_fit.trainer.distributed import ONE_PROCESS, World
from flops_fit.trainer.steps import count_parameters, evaluate, make_optimizer, train_step

CHECKPOINT_FILE = checkpoint.CHECKPOINT_FILE


class _ModelAndData(Protocol):
    """What a trial needs of its workload (``flops_fit.workloads.base.TrainedWorkload``; the
    workloads layer sits above this one, so the trainer names only these two methods)."""

    def build_model(self, spec: TrialSpec) -> torch.nn.Module: ...
    def open_data(self, spec: TrialSpec) -> tuple[Any, Any]: ...


@dataclass
class TrialOutcome:
    status: str  # ok | diverged | undertrained
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepContext:
    """What a step hook sees, before optimizer step ``step`` (0-based) runs."""

    spec: TrialSpec
    step: int
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    resumed: bool
    """True when this attempt of the trial started from a checkpoint."""


def lr_at(step: int, spec: TrialSpec) -> float:
    """The learning rate of optimizer step ``step``: the spec's schedule
    (``flops_fit.planning.schedule.lr_multiplier``: warmup, then cosine or WSD) times its peak."""
    return spec.lr * lr_multiplier(spec, step)


@dataclass
class _Trial:
    """The state ``run_trial``'s steps share."""

    spec: TrialSpec
    options: TrainOptions
    device: torch.device
    train: Any
    val: Any
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    step: int = 0
    curve: list[dict[str, Any]] = field(default_factory=list)
    wall_before: float = 0.0
    resumed: bool = False
    micro_batches: int = 1
    scaler: Any = None
    stem_start: int = 0
    """The step this trial started training at (a WSD branch: its stem's kept state)."""
    stems: checkpoint.StemStore | None = None
    world: World = ONE_PROCESS


def _setup(spec: TrialSpec, workload: _ModelAndData, options: TrainOptions) -> _Trial:
    if options.threads:
        torch.set_num_threads(options.threads)
    device = torch.device(options.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    world = World.current(options.shard_model)
    torch.manual_seed(spec.seed)  # before the model is built: its init is a function of the seed (every rank's the same)
    train, val = workload.open_data(spec)
    model = world.place(workload.build_model(spec), device)
    optimizer = make_optimizer(model, device, options.weight_decay, spec.lr, spec.beta2)
    scaler = None
    if device.type == "cuda" and compute_dtype(torch.cuda.get_device_capability(device)) == torch.float16:
        scaler = torch.amp.GradScaler("cuda")
    rows = world.rows(spec.batch_size)
    return _Trial(spec, options, device, train, val, model, optimizer, world=world, scaler=scaler,
                  micro_batches=options.micro_batches or micro_batches_for(
                      spec, device, model, rows, world.size if world.sharded else 1))


def _resume(trial: _Trial, resume_from: str | os.PathLike[str], name: str = CHECKPOINT_FILE) -> None:
    # Sharded, every rank reads the small fields and rank 0 the state it broadcasts; mmap keeps
    # the k ranks of one node from each holding a copy of the whole file in memory.
    sharded = trial.world.sharded
    state = torch.load(Path(resume_from) / name, map_location="cpu" if sharded else trial.device, weights_only=False,
                       mmap=sharded)
    leads = trial.world.leads or not sharded
    trial.world.load(trial.model, trial.optimizer, state["model"] if leads else None,
                     state["optimizer"] if leads else None)
    trial.step, trial.curve, trial.wall_before = state["step"], state["curve"], state.get("wall_s", 0.0)
    trial.stem_start = state.get("stem_start", 0)
    # map_location moved every tensor to the trial's device; the CPU generator takes only a
    # CPU ByteTensor ("RNG state must be a torch.ByteTensor" on every GPU resume otherwise).
    torch.set_rng_state(state["rng_cpu"].to("cpu", torch.uint8))
    if trial.scaler is not None and state.get("scaler"):
        trial.scaler.load_state_dict(state["scaler"])
    trial.resumed = True


def _checkpoint_state(trial: _Trial, wall_s: float) -> dict[str, Any] | None:
    """What a checkpoint holds; None on the ranks of a sharded trial other than 0 (each must
    call this at the same step: the gather is collective)."""
    states = trial.world.state(trial.model, trial.optimizer)
    if states is None:
        return None
    return {
        "model": states[0],
        "optimizer": states[1],
        "step": trial.step,
        "curve": list(trial.curve),
        "wall_s": wall_s,
        "rng_cpu": torch.get_rng_state(),
        "scaler": trial.scaler.state_dict() if trial.scaler is not None else None,
        "stem_start": trial.stem_start,
    }


def _loop(trial: _Trial, t_start: float, save_checkpoint, checkpoint_root) -> str:
    """Train to ``spec.steps``; returns "ok" or "diverged" (a non-finite mean training loss)."""
    spec, options, device, world = trial.spec, trial.options, trial.device, trial.world
    autocast = autocast_for(device)
    step_fn = world.wrap(trial.model, device)
    step_fn = torch.compile(step_fn) if options.compile and compile_pays(spec) else step_fn
    batches = BatchStream(trial.train, BatchOrder(len(trial.train), spec.batch_size, spec.seed),
                          spec.steps, spec.seq_len, device, rows=world.part(spec.batch_size))
    turns = checkpoint.CheckpointTurns(checkpoint.BackgroundWriter(
        checkpoint_root, save_checkpoint, options.checkpoint_every_s), world, device) \
        if save_checkpoint is not None else None

    def progress() -> dict[str, Any]:
        return {"step": trial.step, "train_loss": trial.curve[-1]["train_loss"] if trial.curve else None}

    def state() -> dict[str, Any]:
        return _checkpoint_state(trial, trial.wall_before + time.perf_counter() - t_start)

    running = torch.zeros((), device=device)
    since_log = 0
    status = "ok"
    try:
        while trial.step < spec.steps:
            if trial.stems is not None and trial.step == spec.cooldown_start and (world.leads or world.sharded):
                kept = _checkpoint_state(trial, 0.0)  # WSD: keep the stem here
                if world.leads:
                    trial.stems.keep(kept, trial.step)
            for group in trial.optimizer.param_groups:
                group["lr"] = lr_at(trial.step, spec)
            x, y = batches.get(trial.step)
            for hook in options.step_hooks:
                hook(StepContext(spec, trial.step, trial.model, trial.optimizer, trial.resumed))
            running += _step_halving_on_oom(trial, step_fn, x, y, autocast)
            since_log += 1
            trial.step += 1
            # Host syncs (and the ranks' one all-reduce) only every log_every steps: a .item()
            # per step stalls a GPU pipeline.
            log_point = trial.step % options.log_every == 0 or trial.step == spec.steps
            if log_point:
                mean = world.sum([float(running) / since_log], device)[0] / world.size
                running.zero_()
                since_log = 0
                trial.curve.append({"step": trial.step, "tokens": trial.step * spec.batch_size * spec.seq_len,
                                    "train_loss": mean})
                if not math.isfinite(mean):
                    status = "diverged"
                    break
            if turns is not None:
                turns.turn(state, trial.step, progress(), log_point)
        if turns is not None:
            turns.close(progress())
    finally:
        batches.close()
    return status


def _step_halving_on_oom(trial: _Trial, step_fn, x, y, autocast) -> torch.Tensor:
    """The step in ``trial.micro_batches`` micro-batches; on a CUDA out-of-memory error, the
    same step again in twice as many (the update is the same; the batch is a function of
    the step), down to one sequence at a time."""
    while True:
        try:
            return train_step(step_fn, trial.optimizer, x, autocast, labels=y,
                              micro_batches=trial.micro_batches, scaler=trial.scaler)
        except RuntimeError as exc:
            if not (is_oom(exc) and trial.device.type == "cuda" and trial.micro_batches < x.shape[0]
                    and x.shape[0] % (trial.micro_batches * 2) == 0):
                raise
            trial.optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            trial.micro_batches *= 2


def _record(trial: _Trial, status: str, loss_val: float | None, train_s: float, steps_run: int,
            t_start: float) -> dict[str, Any]:
    spec = trial.spec
    trained_tokens = trial.step * spec.batch_size * spec.seq_len
    last = trial.curve[-1]["train_loss"] if trial.curve else None
    metrics = spec.record()
    metrics["n"] = count_parameters(trial.model)  # the model contract; equals the planned n (tested)
    metrics.update(
        # from where the plan has it start, or earlier when the state it continues was missing (a
        # state this branch kept itself before its driver was killed counts as its own work)
        flops_trained=(trial.step - min(trial.stem_start, spec.stem_start)) * spec.batch_size * spec.seq_len
        * spec.flops_per_token,
        loss=loss_val,
        train_loss=last if last is not None and math.isfinite(last) else None,
        status=status,
        tokens=trained_tokens,
        flops=trained_tokens * spec.flops_per_token,
        **spec.flops_columns(trained_tokens),
        micro_batches=trial.micro_batches,
        workers=trial.world.size,
        tokens_per_s=steps_run * spec.batch_size * spec.seq_len / max(train_s, 1e-9),
        wall_s=trial.wall_before + time.perf_counter() - t_start,
        node_id=os.environ.get("FLOPS_FIT_NODE_ID") or platform.node(),
        curve=json.dumps(trial.curve),
        epochs=_epochs(trial),
        error=None if status == "ok" else f"non-finite training loss by step {trial.step}",
    )
    return metrics


def _epochs(trial: _Trial) -> float | None:
    """Passes over the trial's training data (None when the dataset has no length)."""
    try:
        available = len(trial.train) * trial.spec.seq_len
    except TypeError:
        return None
    return trial.step * trial.spec.batch_size * trial.spec.seq_len / max(1, available)


def undertrained(loss: float, plateau: float | None) -> str | None:
    """Why a finished run is ``undertrained`` (its loss still above the workload's plateau
    level, ``flops_fit.data.baselines``), or None."""
    if plateau is None or not loss > plateau:
        return None
    return f"loss {loss:.3f} above the plateau level {plateau:.3f}"  # the report explains the level


def run_trial(
    spec: TrialSpec,
    workload: _ModelAndData,
    options: TrainOptions | None = None,
    *,
    resume_from: str | os.PathLike[str] | None = None,
    save_checkpoint: Callable[[Path, dict[str, Any]], None] | None = None,
    checkpoint_root: str | os.PathLike[str] | None = None,
    stem_dir: str | os.PathLike[str] | None = None,
) -> TrialOutcome:
    """Train ``spec`` and return its metrics.

    ``workload`` has ``build_model(spec)`` and ``open_data(spec) -> (train, val)``; the
    datasets answer ``get_batch(indices)`` with a tensor (labels = inputs) or an
    ``(inputs, labels)`` pair. ``resume_from``: a directory holding a previous
    ``save_checkpoint`` state. Every ``checkpoint_every_s`` seconds the trial writes its
    state into a fresh directory under ``checkpoint_root`` and hands it to
    ``save_checkpoint(dir, progress_metrics)`` (the Ray layer turns that into
    ``tune.report(..., checkpoint=...)``). ``stem_dir``: where WSD stems keep their state
    (``flops_fit.trainer.checkpoint.StemStore``); a branch without a checkpoint of its own
    continues its stem from there.
    """
    options = options or TrainOptions()
    t_start = time.perf_counter()
    if options.compile:
        configure_compile(options.threads)
    trial = _setup(spec, workload, options)
    try:
        if spec.stem and stem_dir is not None:
            trial.stems = checkpoint.StemStore(Path(stem_dir) / spec.stem)
        if resume_from is not None:
            _resume(trial, resume_from)
        elif trial.stems is not None and (kept := trial.stems.latest(spec.cooldown_start)) is not None:
            _resume(trial, kept[1].parent, kept[1].name)  # the stem so far, not this trial's progress
            trial.stem_start, trial.wall_before, trial.resumed = kept[0], 0.0, False
        step_at_start, t_train = trial.step, time.perf_counter()
        status = _loop(trial, t_start, save_checkpoint, checkpoint_root)
        train_s = time.perf_counter() - t_train
        loss_val = None
        if status == "ok":
            # sharded, every rank scores every window: each forward is a collective
            loss_val = evaluate(trial.model, trial.val, trial.device, options.eval_batch_size,
                                autocast_for(trial.device), ONE_PROCESS if trial.world.sharded else trial.world)
            if not math.isfinite(loss_val):
                status, loss_val = "diverged", None
        metrics = _record(trial, status, loss_val, train_s, trial.step - step_at_start, t_start)
        plateau = getattr(workload, "plateau_loss", None)
        metrics["plateau_loss"] = plateau
        why = undertrained(loss_val, plateau) if status == "ok" else None
        if why:  # kept in the table, left out of the fits (flops_fit.results.result lists it)
            status = metrics["status"] = "undertrained"
            metrics["error"] = why
    finally:
        device, compiled = trial.device, options.compile
        del trial  # the model and optimizer go before the cache is emptied
        release_device_memory(device, compiled)
    return TrialOutcome(status=status, metrics=metrics)
