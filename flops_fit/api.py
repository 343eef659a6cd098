"""``find_optimal``: the original flops-fit API for a user's own model, on the same engine.

It is a sweep with the user-model workload (``flops_fit.workloads.user.UserModel``): the
planner varies the named size parameter over sizes counted on PyTorch's ``meta`` device,
budgets with C = 6·N·D, and a probe runs one real batch through the smallest model before
any trial starts. flops-fit v1.0's keywords keep working: ``train=False`` (return the plan),
``output_dir=`` (the sweep directory), ``resume=`` and ``mode="mock"`` (the same plan, with
losses from the simulated law instead of training).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from flops_fit.engine.sweep import resolve_config
from flops_fit.errors import PlanError


def _v1_options(options: dict[str, Any], output_dir: Any, resume: bool | None, mode: str | None) -> dict[str, Any]:
    """Map v1.0's keywords onto SweepConfig fields."""
    if output_dir is not None:  # v1.0 wrote everything into output_dir: that is the sweep directory
        out = Path(output_dir).expanduser().resolve()
        options = {**options, "storage_path": str(out.parent), "name": out.name}
    if mode not in (None, "train", "mock"):
        raise PlanError(f"mode={mode!r}: use 'mock' (the simulated law, no training) or leave it out")
    if mode == "mock" and options.get("simulate") is None:
        from flops_fit.fitting.synthetic import DEFAULT_SIMULATED_LAW

        options = {**options, "simulate": dict(DEFAULT_SIMULATED_LAW)}
    if resume is False:  # rerunning a name resumes it; v1.0's resume=False means "start fresh"
        run_dir = Path(options.get("storage_path", "runs")).expanduser().resolve() / options.get("name", "find_optimal")
        if run_dir.is_dir() and any(run_dir.iterdir()):
            raise PlanError(f"resume=False but {run_dir} already holds a sweep; pass resume=True to continue it "
                            "or another output_dir/name")
    return options


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
    train: bool = True,
    output_dir: str | Path | None = None,
    resume: bool | None = None,
    mode: str | None = None,
    **options: Any,
):
    """Sweep a user's model over IsoFLOP budgets on Ray and fit the scaling laws.

    ``model_cls(**model_kwargs, **{model_size_param: value})`` must return an ``nn.Module``
    with ``n()`` or ``num_params()``; ``forward(input_ids, labels=...)`` returns the loss
    (``(logits, loss)``, an object with ``.loss``, or the loss), or pass ``loss_fn(outputs,
    labels)``. ``dataset``: items ``(input_ids, labels)``, or ``(train, validation)``; None
    uses TinyStories (``source=`` etc. in ``options``). Other keywords are SweepConfig fields
    (``storage_path``, ``name``, ``seq_len``, ``cpus_per_trial``, ...). Returns a Result, or
    with ``train=False`` the planned trials (a list of TrialSpec) without running any.

    With ``loss_fn`` and items whose labels equal their input_ids (v1.0's quickstart), the
    labels are shifted by one so the objective is next-token prediction (see
    ``flops_fit.workloads.user.probe``). ``mode="mock"`` (or ``simulate=<law>``) trains
    nothing: the same plan as training (this model's sizes, the data's sequence length), each
    trial's loss from the simulated law at its N and D (``flops_fit.workloads.simulated``).
    The grid is fixed, as in v1.0 (``adapt=True`` makes it adaptive: added sizes are the
    nearest values of the model's size ladder, see ``flops_fit.planning.adaptive``).
    """
    from flops_fit.data.stories import StoryData
    from flops_fit.ray.backend import sweep
    from flops_fit.ray.compat import ship_by_value
    from flops_fit.workloads.user import UserModel

    options = _v1_options(options, output_dir, resume, mode)
    cfg = resolve_config(None, None, budgets=tuple(compute_budgets), points_per_budget=points_per_budget,
                         flops_convention="6n", **{"name": "find_optimal", "adapt": False, **options})
    workload = UserModel(model_cls, model_size_param, dict(model_kwargs or {}), loss_fn, dataset,
                         StoryData(cfg.data), val_fraction, size_values)
    if cfg.simulate is not None:  # mock: the user's sizes, the law's losses; nothing of the model ships
        workload = workload.simulated(cfg.simulate)
    if not train:
        from flops_fit.planning.grid import format_plan

        workload.prepare(cfg.plan)
        specs = workload.plan(cfg.plan)
        if progress:
            print(format_plan(specs))
        return specs
    if isinstance(workload, UserModel):
        ship_by_value(model_cls, loss_fn, dataset)
    return sweep(cfg, workload=workload, progress=progress)
