"""Budgets -> an IsoFLOP grid of trial specs (Chinchilla Approach 2 data), with checks.

Pure Python: no torch, no Ray, no numpy. Parameter counts come from the exact closed form
in :mod:`flops_fit.accounting`, never from building a model.

For each FLOPs budget C the grid holds ``points_per_budget`` model sizes spaced log-evenly
in the parameter count the fit uses (``size_count``, default all parameters) around the size
a tokens-per-parameter prior calls optimal; each size trains on D = C / FLOPs-per-token
tokens under the sweep's FLOPs convention, rounded to whole optimizer steps. The grid is
wide enough (``span``, max/min size ratio) that the loss-vs-size curve has an interior
minimum for a parabola fit (Hoffmann et al. 2022, §3.2, Fig. 3).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from flops_fit import accounting
from flops_fit.accounting import ModelShape


class PlanError(ValueError):
    """A sweep request that cannot run; the message names the problem and the fix."""


def deepseek_batch_tokens(budget: float) -> float:
    """Compute-optimal batch size in tokens, B = 0.292·C^0.3271 (DeepSeek LLM, Bi et al.
    2024, §3.1). It shrinks with the budget, which gives the large models of small
    budgets enough optimizer steps for an IsoFLOP valley to show (see NOTES-ray-hf.md)."""
    return 0.292 * budget**0.3271


def lr_for_width(d_model: int, base_lr: float) -> float:
    """Peak AdamW learning rate by model width: base_lr·sqrt(256/d_model), capped at 2·base_lr.

    Wider models need smaller steps (μP prescribes 1/width for hidden matrices; Kaplan et al.
    2020, eq. D.1, fit a slowly falling LR in N); the square root is a deliberately gentle
    middle ground that stays stable across the 16..4096 widths a sweep spans.
    """
    return min(2.0 * base_lr, base_lr * math.sqrt(256.0 / d_model))


@dataclass(frozen=True)
class PlanConfig:
    """Everything that decides the grid. Two sweeps with equal configs plan equal grids."""

    budgets: tuple[float, ...]
    """FLOPs budgets, under ``flops_convention``; sorted, distinct, positive, finite."""
    points_per_budget: int = 5
    """Model sizes per budget (at least 3 so a parabola has an interior minimum)."""
    tokens_per_param: float = 20.0
    """Prior for the optimum, D/N with N = all parameters (Chinchilla's ~20)."""
    span: float = 16.0
    """Ratio of the largest to the smallest model of a budget (in ``size_count``)."""
    size_count: str = "n"
    """Which parameter count the sizes are spaced in and targeted by (accounting.PARAM_COUNTS)."""
    vocab_size: int = 2048  # the default BPE's size (flops_fit/examples/tokenizer.py says why)
    seq_len: int = 256
    flops_convention: str = accounting.DEFAULT_FLOPS_CONVENTION
    min_steps: int = 50
    """Every trial gets at least this many optimizer steps, or the plan is refused."""
    max_batch_size: int = 512
    """Upper bound on sequences per step (memory)."""
    base_lr: float = 3e-3
    seed: int = 0

    def __post_init__(self) -> None:
        budgets = tuple(self.budgets)
        if not budgets:
            raise PlanError("no budgets given; pass at least one FLOPs budget, e.g. --budgets 1e12 3e12 1e13")
        for b in budgets:
            if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) or b <= 0:
                raise PlanError(f"budget {b!r} is not a positive finite number of FLOPs")
        if len(set(budgets)) != len(budgets):
            dup = sorted({b for b in budgets if budgets.count(b) > 1})
            raise PlanError(f"duplicate budgets {dup}; list each FLOPs budget once")
        object.__setattr__(self, "budgets", tuple(sorted(float(b) for b in budgets)))
        if not isinstance(self.points_per_budget, int) or self.points_per_budget < 3:
            raise PlanError(
                f"points_per_budget={self.points_per_budget!r}: need at least 3 sizes per budget "
                "to fit a parabola with an interior minimum"
            )
        if self.flops_convention not in accounting.FLOPS_CONVENTIONS:
            raise PlanError(
                f"unknown flops_convention {self.flops_convention!r}; choose one of {accounting.FLOPS_CONVENTIONS}"
            )
        if self.size_count not in accounting.PARAM_COUNTS:
            raise PlanError(f"unknown size_count {self.size_count!r}; choose one of {accounting.PARAM_COUNTS}")
        for name in ("tokens_per_param", "base_lr"):
            if not getattr(self, name) > 0:
                raise PlanError(f"{name} must be positive, got {getattr(self, name)!r}")
        if not self.span > 1:
            raise PlanError(f"span must be > 1 (largest/smallest model ratio), got {self.span!r}")
        for name in ("vocab_size", "seq_len", "min_steps", "max_batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise PlanError(f"{name} must be a positive int, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["budgets"] = list(self.budgets)
        return d


@dataclass(frozen=True)
class TrialSpec:
    """One trial: a model shape and an exact token count for one budget."""

    trial_id: str
    budget: float
    target_params: float  # handed to create_model_for_scaling with count=size_count
    size_count: str
    vocab_size: int
    d_model: int
    num_layers: int
    num_heads: int
    d_ff: int
    seq_len: int
    batch_size: int
    steps: int
    lr: float
    warmup_steps: int
    flops_convention: str
    flops_per_token: float
    n: int
    n_non_embedding: int
    seed: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return self.steps * self.batch_size * self.seq_len

    @property
    def flops(self) -> float:
        return self.tokens * self.flops_per_token

    @property
    def shape(self) -> ModelShape:
        return ModelShape(self.vocab_size, self.d_model, self.num_layers, self.num_heads, self.d_ff, self.seq_len)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def is_reference_gpt(self) -> bool:
        """False for a user's model (find_optimal): only its total count n is known."""
        return "size_param" not in self.extra

    def flops_per_token_all(self) -> dict[str, float]:
        """Training FLOPs per token under every convention this model supports."""
        if not self.is_reference_gpt:
            return {"flops_6n": 6.0 * self.n}
        return accounting.all_flops_per_token(self.shape, self.seq_len)

    def record(self) -> dict[str, Any]:
        """The plan-side columns of this trial's results row (no outcome yet)."""
        groups = (accounting.param_groups(self.shape).as_dict() if self.is_reference_gpt
                  else {"n": self.n, "n_non_embedding": self.n_non_embedding})
        return dict(
            trial_id=self.trial_id,
            budget=self.budget,
            **groups,
            d_model=self.d_model,
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            d_ff=self.d_ff,
            vocab_size=self.vocab_size,
            seq_len=self.seq_len,
            batch_size=self.batch_size,
            lr=self.lr,
            steps=self.steps,
            seed=self.seed,
            flops_convention=self.flops_convention,
            tokens=self.tokens,
            flops=self.flops,
            **{k: v * self.tokens for k, v in self.flops_per_token_all().items()},
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrialSpec":
        return cls(**d)


#: The smallest model a grid uses: 16 wide, 1 layer (narrower models learn next to nothing).
MIN_D_MODEL = 16


def smallest_shape(cfg: PlanConfig) -> ModelShape:
    return accounting.ModelShape(
        cfg.vocab_size, MIN_D_MODEL, 1, 1, accounting.swiglu_hidden(MIN_D_MODEL), cfg.seq_len
    )


class GPTSizes:
    """Model sizes of the reference GPT: any target count maps to a shape by the shape rule."""

    def __init__(self, cfg: PlanConfig):
        self.cfg = cfg
        self.floor_key = smallest_shape(cfg)
        self.floor = float(accounting.count_params(self.floor_key, cfg.size_count))

    def pick(self, target: float) -> ModelShape:
        if target <= self.floor:
            return self.floor_key
        return accounting.shape_for_params(target, self.cfg.vocab_size, self.cfg.seq_len, count=self.cfg.size_count)

    def n(self, shape: ModelShape) -> int:
        return accounting.param_groups(shape).total

    def flops_per_token(self, shape: ModelShape) -> float:
        return accounting.flops_per_token(shape, self.cfg.seq_len, self.cfg.flops_convention)

    def spec_fields(self, shape: ModelShape, target: float) -> dict[str, Any]:
        return dict(
            target_params=target, size_count=self.cfg.size_count, vocab_size=shape.vocab_size,
            d_model=shape.d_model, num_layers=shape.num_layers, num_heads=shape.num_heads, d_ff=shape.d_ff,
            lr=lr_for_width(shape.d_model, self.cfg.base_lr),
            n_non_embedding=accounting.param_groups(shape).non_embedding,
        )


class CountedSizes:
    """Sizes of a user's model: a finite table {size value: parameter count} measured by
    building the model (``flops_fit.api``); the budget convention is 6·N·D."""

    def __init__(self, cfg: PlanConfig, size_param: str, counts: dict[Any, int]):
        if not counts:
            raise PlanError(f"no usable values of {size_param!r}: the model factory rejected every one tried")
        self.cfg, self.size_param = cfg, size_param
        self.values = sorted(counts, key=lambda v: counts[v])
        self.counts = counts
        self.floor_key = self.values[0]
        self.floor = float(counts[self.floor_key])

    def pick(self, target: float) -> Any:
        return min(self.values, key=lambda v: abs(math.log(self.counts[v] / target)))

    def n(self, value: Any) -> int:
        return self.counts[value]

    def flops_per_token(self, value: Any) -> float:
        return 6.0 * self.counts[value]

    def spec_fields(self, value: Any, target: float) -> dict[str, Any]:
        return dict(
            target_params=target, size_count="n", vocab_size=0, d_model=0, num_layers=0, num_heads=0, d_ff=0,
            lr=self.cfg.base_lr, n_non_embedding=self.counts[value],
            extra={"size_param": self.size_param, "size_value": value},
        )


def _prior_optimum(budget: float, sizes: Any) -> float:
    """Size target t where D/N(total) equals the prior; bisection in log t."""

    def tokens_per_param(t: float) -> float:
        key = sizes.pick(t)
        return budget / sizes.flops_per_token(key) / sizes.n(key)

    lo, hi = math.log(sizes.floor), math.log(1e13)
    if tokens_per_param(math.exp(lo)) <= sizes.cfg.tokens_per_param:
        return math.exp(lo)
    for _ in range(40):
        mid = (lo + hi) / 2
        if tokens_per_param(math.exp(mid)) > sizes.cfg.tokens_per_param:
            lo = mid
        else:
            hi = mid
    return math.exp((lo + hi) / 2)


def smallest_feasible_budget(cfg: PlanConfig, sizes: Any = None) -> float:
    """The least budget whose smallest model still gets ``min_steps`` steps of one sequence."""
    sizes = sizes or GPTSizes(cfg)
    return sizes.flops_per_token(sizes.floor_key) * cfg.min_steps * cfg.seq_len


def _batch_and_steps(budget: float, tokens: float, cfg: PlanConfig) -> tuple[int, int]:
    """Sequences per step (a power of two from the DeepSeek rule, halved until the trial
    gets ``min_steps``) and the whole number of steps closest to the token budget."""
    batch = 2 ** max(0, round(math.log2(max(1.0, deepseek_batch_tokens(budget) / cfg.seq_len))))
    batch = min(batch, cfg.max_batch_size)
    while batch > 1 and tokens / (batch * cfg.seq_len) < cfg.min_steps:
        batch //= 2
    return batch, max(1, round(tokens / (batch * cfg.seq_len)))


def plan_budget(budget: float, cfg: PlanConfig, sizes: Any = None) -> list[TrialSpec]:
    """The IsoFLOP grid for one budget (sizes merged when they round to the same model)."""
    sizes = sizes or GPTSizes(cfg)
    floor = smallest_feasible_budget(cfg, sizes)
    if budget < floor:
        raise PlanError(
            f"budget {budget:.3g} FLOPs is too small: even the smallest model gets fewer than "
            f"min_steps={cfg.min_steps} steps; the smallest feasible budget is {floor:.3g}"
        )
    # When the prior optimum sits near the smallest model, shift the grid up so it still
    # spans its full width (the smallest point at the floor) instead of collapsing.
    center = max(_prior_optimum(budget, sizes), sizes.floor * cfg.span**0.5)
    k = cfg.points_per_budget
    specs: dict[Any, TrialSpec] = {}
    for i in range(k):
        target = max(center * cfg.span ** (i / (k - 1) - 0.5), sizes.floor)
        key = sizes.pick(target)
        if key in specs:
            continue  # merged: two targets rounded to the same model
        n, fpt = sizes.n(key), sizes.flops_per_token(key)
        batch, steps = _batch_and_steps(budget, budget / fpt, cfg)
        if steps < cfg.min_steps:
            raise PlanError(
                f"budget {budget:.3g}: the model with {n:,} parameters would get {steps} optimizer steps "
                f"(< min_steps={cfg.min_steps}) even at batch 1; use a budget >= "
                f"{budget * cfg.min_steps / steps:.3g}, a smaller span, or a lower min_steps"
            )
        specs[key] = TrialSpec(
            trial_id=f"C{budget:.2e}_N{n}".replace("+", ""),
            budget=budget,
            seq_len=cfg.seq_len,
            batch_size=batch,
            steps=steps,
            warmup_steps=max(1, min(1000, round(0.05 * steps))),
            flops_convention=cfg.flops_convention if isinstance(sizes, GPTSizes) else "6n",
            flops_per_token=fpt,
            n=n,
            seed=cfg.seed,
            **sizes.spec_fields(key, target),
        )
    grid = sorted(specs.values(), key=lambda s: s.n)
    if len(grid) < 3:
        raise PlanError(
            f"budget {budget:.3g}: only {len(grid)} distinct model sizes after merging; "
            "raise span or the budget"
        )
    return grid


def plan(budgets: Sequence[float] | PlanConfig, points_per_budget: int = 5, *, sizes: Any = None,
         **options: Any) -> list[TrialSpec]:
    """The whole sweep: every budget's grid, smallest budget first. Raises PlanError
    before anything runs when any part of the request is infeasible. ``sizes`` replaces the
    reference GPT's shape rule (a ``CountedSizes`` for a user's model)."""
    cfg = budgets if isinstance(budgets, PlanConfig) else PlanConfig(
        budgets=tuple(budgets), points_per_budget=points_per_budget, **options
    )
    return [spec for budget in cfg.budgets for spec in plan_budget(budget, cfg, sizes)]


def _size_label(spec: TrialSpec) -> str:
    if spec.is_reference_gpt:
        return f"{spec.d_model}x{spec.num_layers}"
    return f"{spec.extra['size_param']}={spec.extra['size_value']}"


def format_plan(specs: Sequence[TrialSpec]) -> str:
    """The grid as a table a person can read, with the total FLOPs."""
    header = f"{'budget':>9} {'N':>11} {'N_non_emb':>10} {'size':>9} {'D tokens':>11} {'D/N':>7} {'steps':>6} {'batch':>5} {'lr':>8} {'FLOPs':>9}"
    lines = [header, "-" * len(header)]
    for s in specs:
        lines.append(
            f"{s.budget:9.2e} {s.n:11,d} {s.n_non_embedding:10,d} {_size_label(s):>9} "
            f"{s.tokens:11,d} {s.tokens / s.n:7.2f} {s.steps:6d} {s.batch_size:5d} {s.lr:8.2e} {s.flops:9.2e}"
        )
    total = sum(s.flops for s in specs)
    lines.append(f"{len(specs)} trials, total {total:.3e} FLOPs ({specs[0].flops_convention if specs else ''} convention)")
    return "\n".join(lines)
