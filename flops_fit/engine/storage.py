"""A sweep directory: created and proven writable, its manifest (what makes a rerun the same
sweep), and its one driver.


Two drivers on one directory would each train every trial and interleave two Tune
experiments. The first driver holds ``<run>/driver.lock`` (pid, host, start time and a
lease it renews); a second is refused in one line naming the holder. A lock whose pid is
dead on this host, or whose lease expired (a driver on another host that died), is stale
and taken over, so a killed driver never leaves the sweep stuck.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from flops_fit.atomic import atomic_write_text
from flops_fit.errors import PlanError

if TYPE_CHECKING:
    from flops_fit.config import SweepConfig
    from flops_fit.planning.grid import TrialSpec
    from flops_fit.workloads.base import Workload

MANIFEST = "sweep.json"
#: Finished trials' final records: a trial restarted after its driver died replays its own.
FINISHED_DIR = "finished"
#: WSD stems' kept states (``flops_fit.trainer.checkpoint.StemStore``), one directory a stem.
STEMS_DIR = "stems"
#: Trials on several workers: Ray Train's run directory a trial (its checkpoints), ``train/<trial id>``.
TRAIN_DIR = "train"
LOCK_NAME = "driver.lock"
LEASE_S = 120.0  # a live driver renews every LEASE_S / 4; a lease this old means its driver is gone


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs on this host. Without /proc (macOS) only the lease can tell."""
    proc = Path("/proc")
    return pid > 0 and (not proc.is_dir() or (proc / str(pid)).exists())


def _stale(holder: dict, now: float) -> bool:
    if holder.get("host") == socket.gethostname() and not _alive(int(holder.get("pid", -1))):
        return True
    return float(holder.get("lease_until", 0)) < now


def _write(path: Path, info: dict, exclusive: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, 0o644)
    with os.fdopen(fd, "w") as fh:
        json.dump(info, fh)


@contextlib.contextmanager
def driver_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run directory for this driver; raise PlanError if a live driver holds it."""
    path = Path(run_dir) / LOCK_NAME
    now = time.time()
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": now, "lease_until": now + LEASE_S}
    for _ in range(2):
        try:
            _write(path, info, exclusive=True)
            break
        except FileExistsError:
            try:
                holder = json.loads(path.read_text())
            except (OSError, ValueError):
                holder = {}  # half-written or damaged: only a lease can vouch for a holder
            if not _stale(holder, time.time()):
                since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("started", 0))))
                raise PlanError(
                    f"sweep directory {run_dir} is in use by another driver (pid {holder.get('pid')} on "
                    f"{holder.get('host')}, since {since}); wait for it to finish or stop it, or use another --name"
                ) from None
            path.unlink(missing_ok=True)  # stale: its driver is gone
    else:
        raise PlanError(f"could not take {path}; another driver is starting on the same sweep, retry")
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(LEASE_S / 4):
            with contextlib.suppress(OSError):
                _write(path, {**info, "lease_until": time.time() + LEASE_S}, exclusive=False)

    thread = threading.Thread(target=renew, name="flops-fit-lock", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()


def prepare_storage(cfg: SweepConfig) -> Path:
    """The sweep directory, created and proven writable now rather than after hours."""
    if "://" in cfg.storage_path:
        raise PlanError(
            f"storage_path {cfg.storage_path!r}: remote URIs are for Tune checkpoints only; "
            "mount the bucket or NFS share and pass its local path"
        )
    run_dir = Path(cfg.storage_path).expanduser().resolve() / cfg.name
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-probe-{uuid.uuid4().hex}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise PlanError(f"storage_path {cfg.storage_path!r} is not writable ({exc.strerror}); choose another --storage-path") from exc
    return run_dir


def manifest(specs: list[TrialSpec], workload: Workload, cfg: SweepConfig | None = None) -> dict[str, Any]:
    """What makes two sweeps the same: the prior-centred grid, the workload and, for an
    adaptive sweep, its caps (its additions are in adaptive.json, so a resumed one matches)."""
    out = {"plan": [s.to_dict() for s in specs], "workload": workload.kind, **workload.identity()}
    if cfg is not None and cfg.plan.adapt:
        out["adapt"] = {"max_extra_trials": cfg.plan.max_extra_trials, "max_extra_flops": cfg.plan.max_extra_flops}
    return out


#: What a WSD branch may change when its sweep grows: a longer stem draws from more tokens.
GROWING_FIELDS = ("stem_tokens", "stem_start")


def grows(stored: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether ``wanted`` is ``stored`` with trials added (budgets extended), every stored
    trial planned the same apart from its stem's growth (``GROWING_FIELDS``)."""
    if {k: v for k, v in stored.items() if k != "plan"} != {k: v for k, v in wanted.items() if k != "plan"}:
        return False
    strip = lambda d: {k: v for k, v in d.items() if k not in GROWING_FIELDS}  # noqa: E731
    new = {d["trial_id"]: strip(d) for d in wanted["plan"]}
    return len(new) > len(stored["plan"]) and all(new.get(d["trial_id"]) == strip(d) for d in stored["plan"])


def check_manifest(run_dir: Path, wanted: dict[str, Any], extendable: bool = False) -> bool:
    """True when resuming the same sweep; refuses a different one under the same name. With
    ``extendable`` (a WSD sweep, whose stems keep their state), a plan that only adds trials
    resumes as the grown sweep: its finished trials replay, its stems continue."""
    path = run_dir / MANIFEST
    if not path.exists():
        atomic_write_text(path, json.dumps(wanted, indent=1, sort_keys=True))
        return False
    stored = json.loads(path.read_text())
    wanted = json.loads(json.dumps(wanted))
    if stored != wanted and extendable and grows(stored, wanted):
        print(f"note: {run_dir}: the sweep grows by {len(wanted['plan']) - len(stored['plan'])} trial(s); "
              "finished ones replay and the stems continue from their kept states", flush=True)
        atomic_write_text(path, json.dumps(wanted, indent=1, sort_keys=True))
        return True
    if stored != wanted:
        changed = [k for k in sorted(set(stored) | set(wanted)) if stored.get(k) != wanted.get(k)]
        raise PlanError(
            f"{run_dir} holds a different sweep (changed: {', '.join(changed)}); "
            "use a new --name, or delete that directory to start over"
        )
    return True
