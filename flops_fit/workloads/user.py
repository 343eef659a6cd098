"""A user's own model on the engine (``flops_fit.find_optimal``).

The user brings a model class or factory and names its size parameter; the size table
varies that parameter, counting each size's parameters with ``n()`` or ``num_params()`` on
a model built on PyTorch's ``meta`` device (no memory is allocated, so a 1e9-parameter size
costs nothing to count). The preflight probe builds the smallest model for real, runs one
batch of the real data through it and checks the loss, before any trial starts: a factory
that rejects the size parameter, returns something that is not an ``nn.Module``, has no
parameter count, or refuses the data's sequence length is one line, not a failed sweep.

Data: the user's dataset (items ``(input_ids, labels)``, or a ``(train, validation)``
pair), or with ``dataset=None`` the same story data as the reference GPT (``StoryData``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

from flops_fit.config import DataOptions
from flops_fit.data.stories import StoryData
from flops_fit.errors import PlanError
from flops_fit.planning.config import PlanConfig
from flops_fit.planning.grid import TrialSpec, plan
from flops_fit.planning.sizes import CountedSizes
from flops_fit.trainer.steps import count_parameters, pair_batch
from flops_fit.workloads.base import TrainedWorkload
from flops_fit.workloads.simulated import SimulatedLaw, counted_sizes

#: Values tried for an integer size parameter when the user gives none: 2^(k/2), 1..65536.
DEFAULT_SIZE_LADDER = tuple(sorted({max(1, round(2 ** (k / 2))) for k in range(0, 33)}))


def _call(model_cls: Callable[..., Any], size_param: str, value: Any, kwargs: dict[str, Any]) -> Any:
    return model_cls(**{**kwargs, size_param: value})


def count_sizes(model_cls: Callable[..., Any], size_param: str, model_kwargs: dict[str, Any],
                values: Sequence[Any], max_params: float = 1e11) -> dict[Any, int]:
    """{size value: parameter count} for every value the factory accepts, built on ``meta``."""
    counts: dict[Any, int] = {}
    errors: list[str] = []
    for value in values:
        try:
            with torch.device("meta"):
                model = _call(model_cls, size_param, value, model_kwargs)
        except Exception as exc:  # a factory may reject some sizes; all rejected is an error
            errors.append(f"{size_param}={value!r}: {type(exc).__name__}: {exc}")
            continue
        if not isinstance(model, nn.Module):
            raise PlanError(f"model factory returned {type(model).__name__}, not a torch.nn.Module; "
                            "return the model itself")
        try:
            n = count_parameters(model)
        except TypeError as exc:
            raise PlanError(f"{exc}; add n() returning the trainable parameter count") from exc
        if n > max_params:
            break
        if n not in counts.values():  # values that build the same model are one size
            counts[value] = n
    if not counts:
        first = errors[0] if errors else "no values to try"
        raise PlanError(f"the model factory rejects the size parameter {size_param!r} ({first}); "
                        "pass the name of a keyword it accepts")
    return counts


class _LossAdapter(nn.Module):
    """Gives any model the trainer's contract: ``forward(x, labels) -> (None, loss)`` and ``n()``."""

    def __init__(self, model: nn.Module, loss_fn: Callable[..., torch.Tensor] | None, shift_labels: bool = False):
        super().__init__()
        self.model, self.loss_fn, self.shift_labels = model, loss_fn, shift_labels

    def n(self) -> int:
        return count_parameters(self.model)

    def outputs(self, input_ids: torch.Tensor) -> Any:
        """What loss_fn sees: the model's output, unwrapped from ``(logits, None)`` (the
        reference GPT's answer without labels, as flops_fit.examples.GPT gives v1.0 scripts)."""
        out = self.model(input_ids)
        if isinstance(out, tuple) and len(out) == 2 and out[1] is None:
            return out[0]
        return out

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor):
        if self.loss_fn is not None:
            if self.shift_labels:  # position t predicts token t+1 (see probe)
                input_ids, labels = input_ids[:, :-1].contiguous(), labels[:, 1:].contiguous()
            return None, self.loss_fn(self.outputs(input_ids), labels)
        out = self.model(input_ids, labels=labels)
        if isinstance(out, (tuple, list)):
            return None, out[1]
        return None, getattr(out, "loss", out)


class _Batches:
    """A user's dataset (items ``(input_ids, labels)``) seen through ``get_batch(indices)``."""

    def __init__(self, dataset: Any, indices: Sequence[int]):
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def get_batch(self, idx) -> tuple[torch.Tensor, torch.Tensor]:
        items = [self.dataset[self.indices[int(i)]] for i in idx]
        return torch.stack([torch.as_tensor(x) for x, _ in items]), torch.stack([torch.as_tensor(y) for _, y in items])


def is_split_pair(dataset: Any) -> bool:
    """``(train, validation)`` datasets, as opposed to one dataset whose items are pairs."""
    if not (isinstance(dataset, tuple) and len(dataset) == 2):
        return False
    first = dataset[0]
    return not (isinstance(first, (tuple, list)) and len(first) == 2 and isinstance(first[0], torch.Tensor))


def split_holdout(dataset: Any, val_fraction: float) -> tuple[_Batches, _Batches]:
    """A fixed held-out tail (the same for every trial) and the rest for training."""
    n = len(dataset)
    n_val = max(1, int(round(n * val_fraction)))
    if n - n_val < 1:
        raise PlanError(f"dataset has {n} items: too few to hold out {n_val} for validation")
    return _Batches(dataset, range(n - n_val)), _Batches(dataset, range(n - n_val, n))


@dataclass
class UserModel(TrainedWorkload):
    """What a trial needs to build a user's model and read their data (shipped to workers)."""

    model_cls: Callable[..., Any]
    size_param: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    loss_fn: Callable[..., torch.Tensor] | None = None
    dataset: Any = None
    """None: story data through ``stories``; a Dataset; or a (train, validation) pair."""
    stories: StoryData = field(default_factory=lambda: StoryData(DataOptions()))
    val_fraction: float = 0.05
    size_values: Sequence[Any] | None = None
    """Values of the size parameter to try (default: DEFAULT_SIZE_LADDER)."""
    counts: dict[Any, int] = field(default_factory=dict)
    """{size value: parameter count}, measured by ``prepare``."""
    shift_labels: bool = False
    """Set by ``probe``: loss_fn's labels are the input_ids themselves (flops-fit v1.0's quickstart)."""
    kind = "user"

    def __post_init__(self) -> None:
        if not callable(self.model_cls):
            raise PlanError(f"model_cls must be a class or factory, got {type(self.model_cls).__name__}")
        if not isinstance(self.size_param, str) or not self.size_param:
            raise PlanError("model_size_param must name the keyword that sets the model's size")

    def count(self) -> None:
        """Measure the sizes on ``meta`` (once): a factory that rejects them fails here."""
        if not self.counts:
            self.counts = count_sizes(self.model_cls, self.size_param, self.model_kwargs,
                                      self.size_values or DEFAULT_SIZE_LADDER)

    def prepare(self, plan_cfg: PlanConfig) -> None:
        self.count()  # sizes first: a factory that rejects them fails before any tokenizer work
        if self.dataset is None:
            self.stories.prepare(plan_cfg.vocab_size)

    def data_seq_len(self) -> int | None:
        """The sequence length the dataset fixes (None: story data, cut at the plan's)."""
        if self.dataset is None:
            return None
        train = self.dataset[0] if is_split_pair(self.dataset) else self.dataset
        return int(torch.as_tensor(train[0][0]).shape[-1])

    def plan(self, plan_cfg: PlanConfig) -> list[TrialSpec]:
        sizes = self.size_table(plan_cfg)
        return plan(sizes.cfg, sizes=sizes)

    def size_table(self, plan_cfg: PlanConfig) -> CountedSizes:
        return counted_sizes(plan_cfg, self.size_param, self.counts, self.data_seq_len())

    def simulated(self, law: dict[str, float]) -> SimulatedLaw:
        """flops-fit v1.0's ``mode="mock"``: the trials training this model would run (its
        sizes, its data's sequence length), each answered by the law at its (N, D) instead of
        training. No tokenizer, no probe, and nothing of the model or data goes to the workers."""
        self.count()
        return SimulatedLaw(dict(law), size_param=self.size_param, counts=dict(self.counts),
                            seq_len=self.data_seq_len())

    def preflight(self, specs: list[TrialSpec]) -> None:
        if self.dataset is None:
            self.stories.preflight(specs)
        probe(self, specs[0])

    def identity(self) -> dict[str, Any]:
        model = f"{getattr(self.model_cls, '__module__', '?')}.{getattr(self.model_cls, '__qualname__', '?')}"
        data = self.stories.identity() if self.dataset is None else {"dataset": type(self.dataset).__name__}
        return {"model": model, "size_param": self.size_param, **data}

    def build_model(self, spec: TrialSpec) -> nn.Module:
        torch.manual_seed(spec.seed)
        return _LossAdapter(_call(self.model_cls, self.size_param, spec.model["size_value"], self.model_kwargs),
                            self.loss_fn, self.shift_labels)

    def open_data(self, spec: TrialSpec):
        if self.dataset is None:
            return self.stories.open(spec)
        if is_split_pair(self.dataset):
            train, val = (_Batches(d, range(len(d))) for d in self.dataset)
        else:
            train, val = split_holdout(self.dataset, self.val_fraction)
        epochs = spec.tokens / (len(train) * spec.seq_len)
        max_epochs = self.stories.options.max_epochs
        if epochs > max_epochs:
            raise ValueError(f"trial {spec.trial_id} needs {spec.tokens:,} tokens: {epochs:.1f} epochs of the "
                             f"dataset > max_epochs={max_epochs}; use more data or raise max_epochs")
        return train, val


def predicts_current_token(model: _LossAdapter, x: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether ``loss_fn`` with these labels trains copying the current token.

    flops-fit v1.0's quickstart passed ``labels = input_ids`` to a loss_fn comparing
    logits[t] with labels[t]: a trivial objective, not language modelling. It is detected by
    scoring two oracles through the user's own loss_fn: logits that copy token t (≈0 loss
    for such a loss_fn) and logits that predict token t+1 (≈0 for a loss_fn that shifts
    itself). Only the first kind gets its data shifted (inputs[:-1] predict labels[1:]).
    """
    if model.loss_fn is None or not torch.equal(x, y):
        return False
    with torch.no_grad():
        try:
            out = model.outputs(x)
        except Exception:  # the probe's own call reports a model that rejects the batch
            return False
        if not (isinstance(out, torch.Tensor) and out.dim() == 3 and tuple(out.shape[:2]) == tuple(x.shape)):
            return False
        try:
            copy = nn.functional.one_hot(x, out.shape[-1]).float() * 30.0
            nxt = nn.functional.one_hot(torch.roll(x, -1, dims=1), out.shape[-1]).float() * 30.0
            copy_loss, next_loss = float(model.loss_fn(copy, y)), float(model.loss_fn(nxt, y))
        except Exception:  # an unusual loss_fn: leave it as it is
            return False
    return copy_loss < 0.01 and next_loss > copy_loss + 1.0


def probe(workload: UserModel, spec: TrialSpec) -> int:
    """Build the smallest model for real, run one batch through it, check the loss; returns
    the sequence length of the data. Raises PlanError with a one-line reason."""
    train, _ = workload.open_data(spec)
    batch = train.get_batch([0, min(1, len(train) - 1)])
    x, y = pair_batch(batch, torch.device("cpu"))
    if x.dtype != torch.long or x.dim() != 2:
        raise PlanError(f"dataset items must be (input_ids, labels) 1-D LongTensors; got a batch {x.dtype} {tuple(x.shape)}")
    workload.shift_labels = False
    model = workload.build_model(spec)
    workload.shift_labels = model.shift_labels = predicts_current_token(model, x, y)
    try:
        _, loss = model(x, labels=y)
    except Exception as exc:
        raise PlanError(f"the smallest model rejected a batch of shape {tuple(x.shape)} "
                        f"(seq_len={x.shape[1]}): {type(exc).__name__}: {exc}") from exc
    if not (isinstance(loss, torch.Tensor) and loss.dim() == 0 and loss.requires_grad):
        raise PlanError("the loss must be a scalar tensor that requires grad: return model(x, labels=y)'s loss "
                        "or pass loss_fn(outputs, labels)")
    value = float(loss.detach())
    if not math.isfinite(value):
        raise PlanError(f"the smallest model's initial loss is {value}; check the model and loss_fn")
    loss.backward()
    return int(x.shape[1])
