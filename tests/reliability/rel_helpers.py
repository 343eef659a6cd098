"""Shared helpers of the reliability tests (fixtures are in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def subprocess_env(ray_tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0",
               RAY_AUTH_MODE="disabled", RAY_DEDUP_LOGS="0", RAY_TMPDIR=str(ray_tmp), PYTHONUNBUFFERED="1",
               TUNE_DISABLE_AUTO_CALLBACK_LOGGERS="1")
    env.pop("RAY_ADDRESS", None)
    return env


def psutil():
    import ray  # noqa: F401  (Ray vendors psutil and puts it on sys.path)
    import psutil as ps

    return ps


def descendants(pid: int) -> list:
    ps = psutil()
    try:
        return ps.Process(pid).children(recursive=True)
    except ps.NoSuchProcess:
        return []


def kill_pids(procs) -> None:
    """SIGKILL exactly these processes (collected by id from our own process tree)."""
    ps = psutil()
    for p in procs:
        try:
            p.kill()
        except ps.NoSuchProcess:
            pass
    ps.wait_procs(list(procs), timeout=10)


class LineReader:
    """Collects a subprocess's stdout lines on a thread; ``wait_for(pred)`` polls them."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.lines = proc, []
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pred, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred(list(self.lines)):
                return True
            if self.proc.poll() is not None:
                self._t.join(5)
                return pred(list(self.lines))
            time.sleep(0.1)
        return False

    def text(self) -> str:
        self._t.join(5)
        return "\n".join(self.lines)


def sweep_cli(storage: Path, cache: Path, name: str, *extra: str) -> list[str]:
    return [str(BIN / "flops-fit"), "sweep", "--preset", "smoke", "--storage-path", str(storage),
            "--cache-dir", str(cache), "--name", name, *extra]


