"""The sweep configuration (typed, validated) and named presets as plain functions.

A preset returns a ``SweepConfig``; any field can be overridden (``dataclasses.replace``
in Python, flags on the command line). Pure Python: no torch, no Ray.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable

from flops_fit.errors import PlanError
from flops_fit.planning.config import PlanConfig
from flops_fit.planning.recipe import for_schedule as recipe_for_schedule
from flops_fit.planning.resources import AUTO, ResourceRule, resource_rule
from flops_fit.planning.rules import recipe_rule


@dataclass(frozen=True)
class DataOptions:
    """Where a trial's tokens come from (shared by every trial of a sweep)."""

    source: str = "sample"
    """"sample" (offline synthetic corpus), "roneneldan/TinyStories" (hub), or local files."""
    cache_dir: str | None = None
    """Token cache; node-local (default $FLOPS_FIT_CACHE or ~/.cache/flops_fit)."""
    tokenizer_name: str | None = None
    """None trains the default byte-level BPE; else a HF tokenizer name or directory."""
    tokenizer_json: str | None = None
    """The driver's tokenizer, serialised; workers rebuild it from this, so all agree."""
    val_tokens: int = 65_536
    """Size of the fixed held-out validation set (tokens) every trial is scored on."""
    max_epochs: float = 4.0
    """Refuse trials that would repeat the training data more often than this. Muennighoff et
    al. 2023 ("Scaling Data-Constrained Language Models") found up to about 4 epochs nearly as
    good as fresh data and rapidly less after; more would inflate the small-N end of a budget."""

    def __post_init__(self) -> None:
        if isinstance(self.val_tokens, bool) or not isinstance(self.val_tokens, int) or self.val_tokens < 1:
            raise PlanError(f"val_tokens must be a positive int, got {self.val_tokens!r}")
        if not (self.max_epochs > 0 and math.isfinite(self.max_epochs)):
            raise PlanError(f"max_epochs must be a positive number, got {self.max_epochs}")


@dataclass(frozen=True)
class TrainOptions:
    """How a trial runs (not what it trains: that is the TrialSpec)."""

    device: str | None = None
    """Where trials train; None: cuda when available, else cpu."""
    threads: int | None = None
    """torch CPU threads per trial; None leaves torch's default (a sweep sets cpus_per_trial)."""
    log_every: int = 10
    """Steps between curve points (and host syncs on CUDA)."""
    checkpoint_every_s: float = 30.0
    """Seconds between a trial's checkpoints (what a dead worker resumes from)."""
    eval_batch_size: int = 32
    """Sequences per batch when scoring the validation set."""
    weight_decay: float = 0.1
    """AdamW weight decay on matrices."""
    compile: bool = False
    """torch.compile the model (worth it on GPUs)."""
    shard_model: bool = False
    """On several data-parallel workers, shard the model's weights, gradients and AdamW state
    over them (FSDP2) instead of keeping a copy on each (DDP); ``--gpus-per-trial auto`` sets it
    for a trial whose model one GPU cannot hold."""
    micro_batches: int | None = None
    """Gradient-accumulation slices per step; None: 1 on CPU, on CUDA the fewest whose memory
    estimate fits (``flops_fit.models.gpt_spec.training_bytes``), doubled on out-of-memory. Same update either way."""
    step_hooks: tuple[Callable[..., Any], ...] = ()
    """Callables run before every optimizer step with a ``flops_fit.trainer.trial.StepContext``
    (fault drills in the tests, custom logging); shipped to workers like user code."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "step_hooks", tuple(self.step_hooks))
        if not self.checkpoint_every_s > 0:
            raise PlanError(f"checkpoint_every_s must be positive, got {self.checkpoint_every_s}")
        if not (isinstance(self.log_every, int) and self.log_every >= 1):
            raise PlanError(f"log_every must be a positive int, got {self.log_every!r}")
        if self.micro_batches is not None and not (isinstance(self.micro_batches, int) and self.micro_batches >= 1):
            raise PlanError(f"micro_batches must be a positive int or None, got {self.micro_batches!r}")


def _default_plan() -> PlanConfig:
    return PlanConfig(budgets=(1e12, 3e12, 1e13))


#: ``--verify`` alone: the verification run at 3x the largest swept budget.
DEFAULT_VERIFY_FACTOR = 3.0

#: Experiment trackers a sweep can log to (optional extras: pip install "flops-fit[mlflow]" etc.).
TRACKERS = ("mlflow", "wandb", "tensorboard")


@dataclass(frozen=True)
class SweepConfig:
    """Everything ``flops_fit.ray.sweep`` needs: the plan, the data, how trials train, and
    the sweep's own resources and storage. Each field is declared once, in its group; the
    flat names (``budgets``, ``source``, ``compile``, ...) read through to the group, and
    ``replace(**flat)``, the command-line flags and ``sweep(**kwargs)`` take them."""

    plan: PlanConfig = field(default_factory=_default_plan)
    data: DataOptions = field(default_factory=DataOptions)
    train: TrainOptions = field(default_factory=TrainOptions)
    # --- resources and policy
    cpus_per_trial: float = 1.0
    """CPU cores a trial holds (also its torch thread count)."""
    gpus_per_trial: float | str = 0.0
    """GPUs a trial holds: a fraction packs several trials on one GPU; auto sizes each trial from the memory model (a quarter, a half or a whole GPU)."""
    workers_per_trial: int | str = 1
    """Data-parallel workers each trial trains on (PyTorch DDP through Ray Train), each holding cpus_per_trial and gpus_per_trial, across nodes if need be; every step's batch is split equally between them. auto: a whole-GPU trial whose one-GPU time is above the sweep's average load per GPU is spread over enough GPUs to come under it."""
    cluster_gpus: int | None = None
    """GPUs the sweep runs on, for workers_per_trial=auto (default: the Ray cluster's GPUs when the sweep starts; this machine's for plan)."""
    gpu_memory_gb: float | None = None
    """GPU memory (GB) for gpus_per_trial=auto (default: the local GPU's, or on a cluster one GPU worker's)."""
    max_concurrent_trials: int | None = None
    """At most this many trials at once (None: as many as resources allow)."""
    placement_timeout: float = 600.0
    """Seconds to wait for an autoscaling cluster to add a node that can hold the largest trial
    (a cluster without an autoscaler, or the private Ray, refuses such a trial at once)."""
    max_failures: int = 2
    """Retries of a trial whose worker or node died, each from its last checkpoint."""
    tune: bool = False
    """Measure the learning-rate rule first (flops-fit tune on this grid, kept in <sweep>/tune/, resumed on a rerun) and sweep with it."""
    verify: float | None = None
    """After the fits, train one more run at this multiple of the largest budget (--verify alone: 3) at the predicted N_opt and print its measured against its predicted loss."""
    # --- storage
    storage_path: str = "runs"
    """Directory that holds sweep directories (shared storage on a cluster)."""
    name: str = "sweep"
    """The sweep's directory under storage_path; rerunning the same name resumes it."""
    address: str | None = None
    """Ray cluster to attach to; None uses $RAY_ADDRESS or starts Ray in-process."""
    simulate: dict[str, float] | None = None
    """A known law {E, A, B, alpha, beta, noise}: trials return its losses instead of training."""
    n_boot: int = 200
    """Bootstrap resamples of each fit's intervals."""
    tracker: str | None = None
    """Experiment tracker for every trial's curve, config and metrics and the fits: mlflow, wandb or tensorboard."""
    tracking_uri: str | None = None
    """MLflow tracking URI (default: a file store at <sweep directory>/mlruns)."""

    def __post_init__(self) -> None:
        if self.cpus_per_trial <= 0:
            raise PlanError(f"cpus_per_trial must be positive, got {self.cpus_per_trial}")
        if isinstance(self.gpus_per_trial, str) and self.gpus_per_trial != AUTO:
            try:  # a number typed as text ("0.5" from a config file) is that number
                object.__setattr__(self, "gpus_per_trial", float(self.gpus_per_trial))
            except ValueError:
                raise PlanError(f"gpus_per_trial must be a number or 'auto', got {self.gpus_per_trial!r}") from None
        if self.gpus_per_trial != AUTO and (self.gpus_per_trial < 0 or (
                self.gpus_per_trial > 1 and not float(self.gpus_per_trial).is_integer())):
            raise PlanError(f"gpus_per_trial must be a fraction in [0, 1], a whole number or 'auto', "
                            f"got {self.gpus_per_trial}")
        if isinstance(self.workers_per_trial, str) and self.workers_per_trial != AUTO:
            try:  # a number typed as text ("2" from the command line or a config file) is that number
                object.__setattr__(self, "workers_per_trial", int(self.workers_per_trial))
            except ValueError:
                pass
        if self.workers_per_trial != AUTO and (isinstance(self.workers_per_trial, bool) or not isinstance(
                self.workers_per_trial, int) or self.workers_per_trial < 1):
            raise PlanError(f"workers_per_trial must be a whole number >= 1 or 'auto', got {self.workers_per_trial!r}")
        if self.cluster_gpus is not None and self.cluster_gpus < 1:
            raise PlanError(f"cluster_gpus must be >= 1, got {self.cluster_gpus}")
        if self.gpu_memory_gb is not None and self.gpu_memory_gb <= 0:
            raise PlanError(f"gpu_memory_gb must be positive, got {self.gpu_memory_gb}")
        if not (self.placement_timeout > 0 and math.isfinite(self.placement_timeout)):
            raise PlanError(f"placement_timeout must be a positive number of seconds, got {self.placement_timeout!r}")
        if self.max_failures < 0:
            raise PlanError(f"max_failures must be >= 0, got {self.max_failures}")
        if self.max_concurrent_trials is not None and self.max_concurrent_trials < 1:
            raise PlanError(f"max_concurrent_trials must be >= 1 (or unset for as many as resources allow), "
                            f"got {self.max_concurrent_trials}")
        if self.n_boot < 0:
            raise PlanError(f"n_boot must be >= 0 (0 skips the intervals), got {self.n_boot}")
        if self.verify is True or self.verify is False:  # verify=True: the default factor
            object.__setattr__(self, "verify", DEFAULT_VERIFY_FACTOR if self.verify else None)
        if self.verify is not None and not (isinstance(self.verify, (int, float)) and math.isfinite(self.verify)
                                            and self.verify > 1):
            raise PlanError(f"verify={self.verify!r}: the verification budget is a multiple of the largest swept "
                            f"budget and must be a finite number > 1 (e.g. --verify {DEFAULT_VERIFY_FACTOR:g})")
        if not self.name or os.sep in self.name or self.name in (".", ".."):
            raise PlanError(f"name {self.name!r} must be a plain directory name")
        if self.data.val_tokens < self.plan.seq_len:
            raise PlanError(f"val_tokens={self.data.val_tokens} must hold at least one seq_len={self.plan.seq_len} window")
        if self.tune and self.simulate is not None:
            raise PlanError("tune with simulate: a simulated law has no learning rate to measure")
        if self.tracker not in (None, *TRACKERS):
            raise PlanError(f"tracker {self.tracker!r}: use one of {', '.join(TRACKERS)}")
        if self.simulate is not None:
            missing = {"E", "A", "B", "alpha", "beta"} - set(self.simulate)
            if missing:
                raise PlanError(f"simulate needs the law's {sorted(missing)} (and optionally noise)")

    def resource_rule(self, *gpu_bytes_sources: Callable[[], int | None]) -> ResourceRule:
        """What each trial asks Ray for; under ``gpus_per_trial="auto"`` the GPU memory is
        ``gpu_memory_gb``, else the first of ``gpu_bytes_sources`` that knows one."""
        return resource_rule(self.cpus_per_trial, self.gpus_per_trial, self.gpu_memory_gb, gpu_bytes_sources,
                             self.workers_per_trial, self.train.shard_model)

    def __getattr__(self, name: str) -> Any:
        """Flat read access to the groups' fields: ``cfg.budgets`` is ``cfg.plan.budgets``."""
        group = _GROUP_OF.get(name)
        if group is None or name.startswith("__"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(object.__getattribute__(self, group), name)

    def replace(self, **changes: Any) -> "SweepConfig":
        """A copy with fields changed by their flat names (or whole groups: ``plan=...``)."""
        unknown = set(changes) - set(FLAT_FIELDS) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise PlanError(f"unknown option(s) {sorted(unknown)}")
        if "recipe" not in changes and set(changes) & {"base_lr", "lr_exponent", "lr_n_ref", "lr_batch_ref", "lr_batch_exponent"}:
            changes = {**changes, "recipe": None}  # a learning rate given by hand replaces the preset's recipe
        if "rules_valid_to" not in changes and set(changes) & RULE_FLAGS:
            changes = {**changes, "rules_valid_to": None}  # rules set by hand: the preset's measured range is not theirs
        if "schedule" in changes and "recipe" not in changes and self.plan.recipe is not None:
            # a built-in recipe follows the schedule (tiny's WSD stems use tiny-wsd's measured rule),
            # measured over the same range
            switched = recipe_for_schedule(self.plan.recipe, changes["schedule"])
            if switched != self.plan.recipe:
                changes = {**changes, "recipe": switched}
        if changes.get("recipe") is not None:  # a recipe's rule is read now (a bad one refused in one line) and
            # shows in the config's own fields: cfg.base_lr is the rate the trials get (TrainingRules applies it)
            rule = recipe_rule(changes["recipe"])
            changes = {**changes, **{k: None if v is None else float(v) for k, v in rule.items()}}
        top = {k: v for k, v in changes.items() if k not in _GROUP_OF}
        for group in _GROUPS:
            sub = {k: v for k, v in changes.items() if _GROUP_OF.get(k) == group}
            if sub:
                top[group] = dataclasses.replace(top.get(group, getattr(self, group)), **sub)
        return dataclasses.replace(self, **top)

    @classmethod
    def of(cls, **flat: Any) -> "SweepConfig":
        """A config from flat field names over the defaults: ``SweepConfig.of(budgets=[1e12, 1e13])``."""
        return cls().replace(**flat)


#: The flags that set a training rule by hand (they lift the preset's ``rules_valid_to``).
RULE_FLAGS = {"max_batch_size", "recipe", "base_lr", "lr_exponent", "lr_n_ref", "lr_batch_ref", "lr_batch_exponent"}

#: Group field name -> its dataclass; every flat name belongs to exactly one group.
_GROUPS = {"plan": PlanConfig, "data": DataOptions, "train": TrainOptions}
_GROUP_OF: dict[str, str] = {}
for _group, _cls in _GROUPS.items():
    for _f in dataclasses.fields(_cls):
        if _f.name in _GROUP_OF or _f.name in {f.name for f in dataclasses.fields(SweepConfig)}:
            raise TypeError(f"config field {_f.name!r} is declared twice")  # import-time guard
        _GROUP_OF[_f.name] = _group

#: Every flat name -> (group or None for a top-level field, the declaring dataclass).
FLAT_FIELDS: dict[str, tuple[str | None, type]] = {
    **{name: (group, _GROUPS[group]) for name, group in _GROUP_OF.items()},
    **{f.name: (None, SweepConfig) for f in dataclasses.fields(SweepConfig) if f.name not in _GROUPS},
}


# --- presets -----------------------------------------------------------------------------


def tiny() -> SweepConfig:
    """CPU, offline sample, a whole sweep in a few minutes on 2 cores, enough for a fit.

    A 512-token BPE and a short context keep the token table and output head from swamping
    tiny models: the smallest model (16 wide, 1 layer) has 20k parameters instead of 69k at
    2048, so the grids of these small budgets reach down to their optima (measured: all three
    budgets bracket an interior minimum; 3 min 33 s on 2 loaded cores).
    Budgets use Chinchilla's 6·N·D with N = all parameters, the same convention as Approach
    3's frontier, so both fits speak the same units (``--flops-convention attention`` budgets
    the compute these models really spend instead; every convention is recorded either way).
    """
    return SweepConfig.of(
        # 3e12 gives a clean valley too (235k parameters best at ~9 tokens per parameter at
        # vocabulary 2048, measured) but costs ~20 CPU-minutes; these three take a few.
        budgets=(1e11, 3e11, 1e12),
        points_per_budget=5,
        tokens_per_param=10.0,
        span=8.0,
        flops_convention="6n",
        seq_len=128,
        vocab_size=512,
        min_steps=400,  # ~4x the slowest plateau escape at the recipe's rates (README, The training recipe)
        # The DeepSeek rule's batch, fitted at 1e17-3e20, is past these models' critical batch by
        # 3e12: N = 178k there ends at 0.751-0.759 (five seeds) at 16 sequences a step, 0.755 and
        # 0.764 at 4 and 8, but 0.796-0.803 at its 32 (rates 0.5-1x the rule's; README).
        max_batch_size=16,
        recipe="tiny",  # the learning-rate rule flops-fit tune measured on this grid (flops_fit/recipes/tiny.json)
        rules_valid_to=3e12,  # the recipe was scanned at 1e11-1e12 and the batch cap measured at 3e12
        val_tokens=32_768,
        cpus_per_trial=1.0,
        checkpoint_every_s=20.0,
        name="tiny",
        n_boot=100,
        replicates=2,  # six cheap smallest-budget runs measure the seed noise the fits use
    )


def tinystories_gpu() -> SweepConfig:
    """The real TinyStories from the hub on GPUs: 4 budgets, 7 sizes each, one GPU a trial.

    Sized to the data: the train split holds 2.12M stories, about 0.5-0.9B tokens with a
    4096 BPE, and Muennighoff et al. 2023 ("Scaling Data-Constrained Language Models") find
    up to ~4 epochs nearly as good as fresh tokens. The smallest model of a 1e18 budget
    would need 7.2B tokens (15 epochs); these budgets and span keep the largest trial at
    1.8B tokens, 3.6 epochs of the low estimate (tests/test_plan.py checks it against the
    preflight). Larger budgets need a larger corpus (``source=`` local files).
    """
    return SweepConfig.of(
        budgets=(3e15, 1e16, 3e16, 1e17),
        points_per_budget=7,
        tokens_per_param=20.0,
        span=10.0,
        source="roneneldan/TinyStories",
        seq_len=512,
        vocab_size=4096,
        # Not measured at this scale: the slope of the width rule it replaced (lr ~ d^-1/2,
        # d ~ N^1/3); `flops-fit sweep --preset tinystories-gpu --tune` measures one on the GPUs first.
        base_lr=3e-3,
        lr_n_ref=5e6,
        lr_exponent=0.17,
        val_tokens=1_048_576,
        max_epochs=4.0,
        cpus_per_trial=4.0,
        gpus_per_trial=1.0,
        checkpoint_every_s=300.0,
        compile=True,
        name="tinystories",
        replicates=2,
    )


def smoke() -> SweepConfig:
    """The least sweep that exercises every part (tests and ``--smoke-test``): seconds."""
    return SweepConfig.of(
        budgets=(1e10, 2e10, 4e10),
        points_per_budget=3,
        tokens_per_param=10.0,
        span=30.0,
        flops_convention="attention",
        seq_len=32,
        vocab_size=512,
        min_steps=8,
        max_batch_size=32,
        val_tokens=2048,
        checkpoint_every_s=5.0,
        name="smoke",
        n_boot=20,
        adapt=False,  # the engine's every part in seconds; the adaptive grid has its own tests (test_adaptive)
    )


PRESETS: dict[str, Callable[[], SweepConfig]] = {
    "tiny": tiny,
    "tinystories-gpu": tinystories_gpu,
    "smoke": smoke,
}


def preset(name: str) -> SweepConfig:
    if name not in PRESETS:
        raise PlanError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()
