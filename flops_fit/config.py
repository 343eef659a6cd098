"""The sweep configuration (typed, validated) and named presets as plain functions.

A preset returns a ``SweepConfig``; any field can be overridden (``dataclasses.replace``
in Python, flags on the command line). Pure Python: no torch, no Ray.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any, Callable

from flops_fit.plan import PlanConfig, PlanError


@dataclass(frozen=True)
class SweepConfig:
    """Everything ``flops_fit.ray.sweep`` needs. Field groups: plan, data, resources, storage."""

    # --- plan (see flops_fit.plan.PlanConfig for the meaning of each)
    budgets: tuple[float, ...] = (1e12, 3e12, 1e13)
    points_per_budget: int = 5
    tokens_per_param: float = 20.0
    span: float = 16.0
    size_count: str = "n"
    flops_convention: str = "6n"
    seq_len: int = 256
    vocab_size: int = 2048  # the default BPE's size (flops_fit/examples/tokenizer.py says why)
    """Vocabulary of the default trained BPE; a named tokenizer brings its own size."""
    min_steps: int = 50
    max_batch_size: int = 512
    base_lr: float = 3e-3
    seed: int = 0
    # --- data
    source: str = "sample"
    """"sample" (offline synthetic corpus), "roneneldan/TinyStories" (hub), or local files."""
    cache_dir: str | None = None
    """Token cache; node-local (default $FLOPS_FIT_CACHE or ~/.cache/flops_fit)."""
    tokenizer_name: str | None = None
    """None trains the default byte-level BPE; else a HF tokenizer name or directory."""
    val_tokens: int = 65_536
    max_epochs: float = 10.0
    # --- resources and policy
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent_trials: int | None = None
    max_failures: int = 2
    """Retries of a trial whose worker or node died, each from its last checkpoint."""
    checkpoint_every_s: float = 30.0
    compile: bool = False
    # --- storage
    storage_path: str = "runs"
    name: str = "sweep"
    address: str | None = None
    """Ray cluster to attach to; None uses $RAY_ADDRESS or starts Ray in-process."""
    simulate: dict[str, float] | None = None
    """A known law {E, A, B, alpha, beta, noise}: trials return its losses instead of training."""
    n_boot: int = 200
    faults: dict[str, dict[str, int]] | None = None
    """Fault injection for tests and drills: {"diverge"|"kill": {trial_id: step}}; a kill
    (SIGKILL of the worker) fires only on a trial's first attempt."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "budgets", tuple(float(b) for b in self.budgets))
        self.plan_config()  # validates the planning fields with PlanError messages
        if self.cpus_per_trial <= 0:
            raise PlanError(f"cpus_per_trial must be positive, got {self.cpus_per_trial}")
        if self.gpus_per_trial < 0 or (self.gpus_per_trial > 1 and not float(self.gpus_per_trial).is_integer()):
            raise PlanError(f"gpus_per_trial must be a fraction in [0, 1] or a whole number, got {self.gpus_per_trial}")
        if self.max_failures < 0:
            raise PlanError(f"max_failures must be >= 0, got {self.max_failures}")
        if not self.name or os.sep in self.name or self.name in (".", ".."):
            raise PlanError(f"name {self.name!r} must be a plain directory name")
        if self.val_tokens < self.seq_len:
            raise PlanError(f"val_tokens={self.val_tokens} must hold at least one seq_len={self.seq_len} window")
        if not (self.max_epochs > 0 and math.isfinite(self.max_epochs)):
            raise PlanError(f"max_epochs must be a positive number, got {self.max_epochs}")
        if self.simulate is not None:
            missing = {"E", "A", "B", "alpha", "beta"} - set(self.simulate)
            if missing:
                raise PlanError(f"simulate needs the law's {sorted(missing)} (and optionally noise)")

    def plan_config(self, vocab_size: int | None = None) -> PlanConfig:
        """The planning fields (every PlanConfig field has its namesake here)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(PlanConfig)}
        return PlanConfig(**{**fields, "vocab_size": vocab_size or self.vocab_size})

    def data_options(self, tokenizer_json: str | None) -> "DataOptions":
        """What every trial of this sweep reads, with the driver's tokenizer."""
        return DataOptions(source=self.source, cache_dir=self.cache_dir, tokenizer_name=self.tokenizer_name,
                           tokenizer_json=tokenizer_json, val_tokens=self.val_tokens, max_epochs=self.max_epochs)

    def replace(self, **changes: Any) -> "SweepConfig":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise PlanError(f"unknown option(s) {sorted(unknown)}")
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class DataOptions:
    """Where a trial's tokens come from (shared by every trial of a sweep)."""

    source: str = "sample"
    cache_dir: str | None = None
    tokenizer_name: str | None = None
    tokenizer_json: str | None = None
    """The driver's tokenizer, serialised; workers rebuild it from this, so all agree."""
    val_tokens: int = 65_536
    """Size of the fixed held-out validation set (tokens) every trial is scored on."""
    max_epochs: float = 10.0
    """Refuse trials that would repeat the training data more often than this."""

    def __post_init__(self) -> None:
        if self.val_tokens < 1:
            raise ValueError(f"val_tokens must be positive, got {self.val_tokens}")
        if not self.max_epochs > 0:
            raise ValueError(f"max_epochs must be positive, got {self.max_epochs}")


@dataclass
class TrainOptions:
    """How a trial runs (not what it trains: that is the TrialSpec)."""

    device: str | None = None  # None: cuda when available, else cpu
    threads: int | None = None  # torch CPU threads; None leaves torch's default
    log_every: int = 10  # steps between curve points (and host syncs on CUDA)
    checkpoint_every_s: float = 30.0
    eval_batch_size: int = 32
    weight_decay: float = 0.1
    compile: bool = False
    faults: dict[str, dict[str, int]] | None = None  # see SweepConfig.faults


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
    return SweepConfig(
        # 3e12 gives a clean valley too (235k parameters best at ~9 tokens per parameter at
        # vocabulary 2048, measured) but costs ~20 CPU-minutes; these three take a few.
        budgets=(1e11, 3e11, 1e12),
        points_per_budget=5,
        tokens_per_param=10.0,
        span=12.0,
        flops_convention="6n",
        seq_len=128,
        vocab_size=512,
        min_steps=50,
        val_tokens=32_768,
        cpus_per_trial=1.0,
        checkpoint_every_s=20.0,
        name="tiny",
        n_boot=100,
    )


def tinystories_gpu() -> SweepConfig:
    """The real TinyStories from the hub on GPUs: 5 budgets, 7 sizes each, one GPU a trial."""
    return SweepConfig(
        budgets=(1e16, 3e16, 1e17, 3e17, 1e18),
        points_per_budget=7,
        tokens_per_param=20.0,
        span=16.0,
        source="roneneldan/TinyStories",
        seq_len=512,
        vocab_size=4096,
        val_tokens=1_048_576,
        max_epochs=4.0,
        cpus_per_trial=4.0,
        gpus_per_trial=1.0,
        checkpoint_every_s=300.0,
        compile=True,
        name="tinystories",
    )


def smoke() -> SweepConfig:
    """The least sweep that exercises every part (tests and ``--smoke-test``): seconds."""
    return SweepConfig(
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
