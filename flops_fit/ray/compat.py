"""Every use of a Ray internal in one place, so a Ray upgrade is a one-file review.

Each helper says which internal it touches and why no public API does the job. They were
written against Ray 2.60; ``check_version`` warns once when the installed Ray is outside
the range the test suite has run on (``tests/reliability/test_security.py`` and
``tests/test_sweep.py`` exercise every helper here against the real runtime).
"""

from __future__ import annotations

import os
import sys
import warnings
from types import SimpleNamespace
from typing import Any

#: Ray versions these helpers were verified on (inclusive lower, exclusive upper bound).
TESTED_RAY = ((2, 40), (2, 61))
_warned = False


def check_version() -> None:
    global _warned
    import ray

    version = tuple(int(p) for p in ray.__version__.split(".")[:2] if p.isdigit())
    if not _warned and not (TESTED_RAY[0] <= version < TESTED_RAY[1]):
        _warned = True
        warnings.warn(f"flops_fit's Ray integration (flops_fit/ray/compat.py) was tested on Ray "
                      f"{TESTED_RAY[0][0]}.{TESTED_RAY[0][1]}-{TESTED_RAY[1][0]}.{TESTED_RAY[1][1] - 1}, "
                      f"not {ray.__version__}", stacklevel=2)


def init_loopback_only(num_cpus: int | None = None, num_gpus: int | None = None) -> None:
    """Start a Ray runtime of this process alone: loopback only, no dashboard.

    Internal touched: ``ray._private.ray_constants.ENABLE_RAY_CLUSTER``. Ray 2.60 rewrites
    ``_node_ip_address="127.0.0.1"`` to the machine's routable address
    (``services.resolve_ip_for_localhost``) unless that flag is false, and its C++ servers
    bind loopback only when their node IP is exactly 127.0.0.1 (else 0.0.0.0/::). The flag
    is what ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` sets at import; it is flipped for this
    call only (the node IP is fixed once the node runs), so a later
    ``ray.init(address=<cluster>)`` in this process still resolves its routable IP.
    ``tests/reliability/test_security.py`` checks every listening socket of the runtime.
    """
    import ray
    from ray._private import ray_constants

    check_version()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        # address="local": never Ray's default of joining the last `ray start` cluster here.
        ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                 log_to_driver=False)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


def set_restored_callbacks(tuner: Any, callbacks: list[Any]) -> None:
    """Give a restored Tuner fresh callbacks.

    Internal touched: ``Tuner._local_tuner._run_config.callbacks``. ``Tuner.restore`` takes
    no callbacks, and the pickled ones would count progress from the old run; no public
    setter exists. Without the attribute (another Ray), the restored run keeps its own.
    """
    check_version()
    local = getattr(tuner, "_local_tuner", None)
    if local is not None and hasattr(local, "_run_config"):
        local._run_config.callbacks = callbacks


def ship_by_value(*objects: Any) -> None:
    """Let Ray workers unpickle a user's classes and functions whose module they cannot import
    (a script's neighbour module, a test file): register such modules to be pickled by value
    (``ray.cloudpickle.register_pickle_by_value``, the vendored cloudpickle's public call).
    Installed packages (site-packages), ``__main__`` (already by value) and flops_fit,
    torch and numpy themselves are left alone."""
    from ray import cloudpickle

    for obj in objects:
        if obj is None:
            continue
        module = sys.modules.get(getattr(type(obj) if not callable(obj) else obj, "__module__", "") or "")
        path = getattr(module, "__file__", None) or ""
        if module is None or module.__name__ == "__main__" or "site-packages" in path or not path:
            continue
        if module.__name__.split(".")[0] in ("flops_fit", "torch", "numpy"):
            continue
        cloudpickle.register_pickle_by_value(module)


def shutdown_private_ray() -> None:
    """Shut down a runtime started by :func:`init_loopback_only` and delete its session
    directory (``/tmp/ray/session_*``: logs, sockets, about 3 MB a sweep), which Ray leaves
    behind; a cluster's sessions are never touched (this is only called for a private one).

    Internal touched: ``ray._private.worker._global_node.get_session_dir_path()``, the
    running node's session directory (Ray 2.60), read before shutdown clears it.
    """
    import shutil

    import ray
    from ray._private import worker

    node = getattr(worker, "_global_node", None)
    session = node.get_session_dir_path() if node is not None else None
    ray.shutdown()
    if session and os.path.basename(session).startswith("session_"):
        shutil.rmtree(session, ignore_errors=True)
        latest = os.path.join(os.path.dirname(session), "session_latest")
        if os.path.islink(latest) and not os.path.exists(latest):
            os.unlink(latest)


def autoscaler_running() -> bool:
    """Whether the attached cluster has an autoscaler that can add nodes: one launched by
    ``ray up`` from ``cluster/*.yaml`` (named node types), or KubeRay's v2 autoscaler.

    Internals touched: the GCS key ``ray._private.ray_constants.DEBUG_AUTOSCALING_STATUS``
    (read through ``ray.experimental.internal_kv._internal_kv_get``), where the head's monitor
    writes the status ``ray status`` prints, and ``ray.autoscaler.v2.utils.is_autoscaler_v2``.
    Every Ray head runs a monitor, even ``ray start`` or ``ray.init()`` alone: there it mirrors
    the existing nodes as read-only node types named ``node_<node id>`` and can add none. A
    cluster whose node types carry other names was launched from a config that can grow. No
    public API says whether a cluster can grow (``ray.autoscaler.sdk`` only sends requests)."""
    import ast
    import json

    import ray
    from ray._private import ray_constants
    from ray.experimental import internal_kv

    check_version()
    if not ray.is_initialized() or not internal_kv._internal_kv_initialized():
        return False
    try:
        from ray.autoscaler.v2.utils import is_autoscaler_v2

        if is_autoscaler_v2(fetch_from_server=True):
            return True
        raw = internal_kv._internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
        report = json.loads(raw or "{}").get("autoscaler_report")
        report = ast.literal_eval(report) if isinstance(report, str) else report
        mapping = (report or {}).get("node_type_mapping") or {}
        return any(kind != f"node_{node}" for node, kind in mapping.items())
    except Exception:  # an unreadable or older status: no autoscaler we can see, so refuse rather than hang
        return False


def train_v2() -> SimpleNamespace:
    """Ray Train V2's API (Train inside Tune, Ray 2.60's documented pattern): ``TorchTrainer``,
    its configs, and the worker-side ``report``, ``get_checkpoint``, ``get_context`` and
    ``get_device``, plus Tune's ``TuneReportCallback``.

    Internal paths (``ray.train.v2.*``): Ray 2.60 switches ``ray.train.torch`` to V2 only when
    ``RAY_TRAIN_V2_ENABLED=1`` is set before it is first imported, and a Tune worker process
    has usually imported ``ray.train`` already (Tune's session lives there), so the public
    names may still be V1's there. The variable is set for this process too: V2's trainer
    checks it when it is built.
    """
    check_version()
    os.environ["RAY_TRAIN_V2_ENABLED"] = "1"
    from ray.train import Checkpoint
    from ray.train.v2.api.config import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.v2.api.train_fn_utils import get_checkpoint, get_context, report
    from ray.train.v2.torch.torch_trainer import TorchTrainer
    from ray.train.v2.torch.train_loop_utils import get_device
    from ray.tune.integration.ray_train import TuneReportCallback

    return SimpleNamespace(TorchTrainer=TorchTrainer, ScalingConfig=ScalingConfig, RunConfig=RunConfig,
                           FailureConfig=FailureConfig, CheckpointConfig=CheckpointConfig, Checkpoint=Checkpoint,
                           report=report, get_checkpoint=get_checkpoint, get_context=get_context,
                           get_device=get_device, TuneReportCallback=TuneReportCallback)
