"""``find_optimal``: the original flops-fit API for a user's own model, on the same engine.

It is a sweep with the user-model workload (``flops_fit.workloads.user.UserModel``): the
planner varies the named size parameter over sizes counted on PyTorch's ``meta`` device,
budgets with C = 6·N·D, and a probe runs one real batch through the smallest model before
any trial starts.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from flops_fit.engine import resolve_config


def find_optimal(
    model_cls: Callable[..., Any],
    model_size_param: str,
    model_kwargs: dict[str, Any] | None = None,
    dataset: Any = None,
    loss_fn: Callable[..., Any] | None = None,
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
    from flops_fit.ray.compat import ship_by_value
    from flops_fit.ray.sweep import sweep
    from flops_fit.workloads.stories import StoryData
    from flops_fit.workloads.user import UserModel

    cfg = resolve_config(None, None, budgets=tuple(compute_budgets), points_per_budget=points_per_budget,
                         flops_convention="6n", **{"name": "find_optimal", **options})
    workload = UserModel(model_cls, model_size_param, dict(model_kwargs or {}), loss_fn, dataset,
                         StoryData(cfg.data), val_fraction, size_values)
    ship_by_value(model_cls, loss_fn, dataset)
    return sweep(cfg, workload=workload, progress=progress)
