"""``find_optimal``: the original flops-fit API for a user's own model, on the same engine.

The user brings a model class or factory and names its size parameter; the planner varies
that parameter, counting each size's parameters with ``n()`` or ``num_params()`` on a model
built on PyTorch's ``meta`` device (no memory is allocated, so a 1e9-parameter size costs
nothing to count). Everything is validated with a cheap probe on the driver before any
trial starts: the factory accepts the size parameter and returns an ``nn.Module`` with a
parameter count; the dataset yields ``(input_ids, labels)``; the smallest model takes a real
batch and its loss is a finite scalar that backpropagates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from flops_fit.config import DataOptions, SweepConfig
from flops_fit.plan import CountedSizes, PlanError, TrialSpec, plan
from flops_fit.train import _open_data, _pair, count_parameters

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

    def __init__(self, model: nn.Module, loss_fn: Callable[..., torch.Tensor] | None):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def n(self) -> int:
        return count_parameters(self.model)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor):
        if self.loss_fn is not None:
            return None, self.loss_fn(self.model(input_ids), labels)
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
class UserWorkload:
    """What a trial needs to build a user's model and read their data (shipped to workers)."""

    model_cls: Callable[..., Any]
    size_param: str
    model_kwargs: dict[str, Any]
    loss_fn: Callable[..., torch.Tensor] | None
    dataset: Any  # None: TinyStories through `data`; a Dataset; or a (train, validation) pair
    data: DataOptions
    val_fraction: float = 0.05

    def build_model(self, spec: TrialSpec) -> nn.Module:
        torch.manual_seed(spec.seed)
        return _LossAdapter(_call(self.model_cls, self.size_param, spec.extra["size_value"], self.model_kwargs),
                            self.loss_fn)

    def open_data(self, spec: TrialSpec):
        if self.dataset is None:
            return _open_data(spec, self.data)
        if is_split_pair(self.dataset):
            train, val = (_Batches(d, range(len(d))) for d in self.dataset)
        else:
            train, val = split_holdout(self.dataset, self.val_fraction)
        epochs = spec.tokens / (len(train) * spec.seq_len)
        if epochs > self.data.max_epochs:
            raise ValueError(f"trial {spec.trial_id} needs {spec.tokens:,} tokens: {epochs:.1f} epochs of the "
                             f"dataset > max_epochs={self.data.max_epochs}; use more data or raise max_epochs")
        return train, val


def probe(workload: UserWorkload, spec: TrialSpec) -> int:
    """Build the smallest model for real, run one batch through it, check the loss; returns
    the sequence length of the data. Raises PlanError with a one-line reason."""
    train, _ = workload.open_data(spec)
    batch = train.get_batch([0, min(1, len(train) - 1)])
    x, y = _pair(batch, torch.device("cpu"))
    if x.dtype != torch.long or x.dim() != 2:
        raise PlanError(f"dataset items must be (input_ids, labels) 1-D LongTensors; got a batch {x.dtype} {tuple(x.shape)}")
    model = workload.build_model(spec)
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


def ship_by_value(*objects: Any) -> None:
    """Let Ray workers unpickle a user's classes and functions whose module they cannot import
    (a script's neighbour module, a test file): register such modules to be pickled by value.
    Installed packages (site-packages) and ``__main__`` (already by value) are left alone."""
    import sys

    from ray import cloudpickle

    for obj in objects:
        module = sys.modules.get(getattr(type(obj) if not callable(obj) else obj, "__module__", "") or "")
        path = getattr(module, "__file__", None) or ""
        if module is None or module.__name__ == "__main__" or "site-packages" in path or not path:
            continue
        if module.__name__.split(".")[0] in ("flops_fit", "torch", "numpy"):
            continue
        cloudpickle.register_pickle_by_value(module)


def find_optimal(
    model_cls: Callable[..., Any],
    model_size_param: str,
    model_kwargs: dict[str, Any] | None = None,
    dataset: Any = None,
    loss_fn: Callable[..., torch.Tensor] | None = None,
    compute_budgets: Sequence[float] = (1e11, 3e11, 1e12),
    points_per_budget: int = 5,
    size_values: Sequence[Any] | None = None,
    val_fraction: float = 0.05,
    progress: bool = True,
    **options: Any,
):
    """Sweep a user's model over IsoFLOP budgets on Ray and fit the scaling laws.

    ``model_cls(**model_kwargs, **{model_size_param: value})`` must return an ``nn.Module``
    with ``n()`` or ``num_params()``; ``forward(input_ids, labels=...)`` returns the loss
    (``(logits, loss)``, an object with ``.loss``, or the loss), or pass ``loss_fn(outputs,
    labels)``. ``dataset``: items ``(input_ids, labels)``, or ``(train, validation)``; None
    uses TinyStories (``source=`` etc. in ``options``). Other keywords are SweepConfig fields
    (``storage_path``, ``name``, ``seq_len``, ``cpus_per_trial``, ...). Returns a Result.
    """
    from flops_fit.ray.sweep import prepare_tokenizer, sweep

    if not callable(model_cls):
        raise PlanError(f"model_cls must be a class or factory, got {type(model_cls).__name__}")
    if not isinstance(model_size_param, str) or not model_size_param:
        raise PlanError("model_size_param must name the keyword that sets the model's size")
    cfg = SweepConfig(budgets=tuple(compute_budgets), points_per_budget=points_per_budget,
                      flops_convention="6n", **{"name": "find_optimal", **options})
    kwargs = dict(model_kwargs or {})
    counts = count_sizes(model_cls, model_size_param, kwargs, size_values or DEFAULT_SIZE_LADDER)
    tokenizer_json = prepare_tokenizer(cfg)[0] if dataset is None else None
    data = cfg.data_options(tokenizer_json)
    workload = UserWorkload(model_cls, model_size_param, kwargs, loss_fn, dataset, data, val_fraction)
    if dataset is not None:  # the data fixes the sequence length
        train = dataset[0] if is_split_pair(dataset) else dataset
        cfg = cfg.replace(seq_len=int(torch.as_tensor(train[0][0]).shape[-1]))
    specs = plan(cfg.plan_config(), sizes=CountedSizes(cfg.plan_config(), model_size_param, counts))
    probe(workload, specs[0])
    ship_by_value(model_cls, loss_fn, dataset)
    return sweep(cfg, specs=specs, workload=workload, progress=progress)
