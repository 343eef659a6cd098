"""Shared helpers of the reliability tests (fixtures are in conftest.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
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
    import importlib

    import ray  # noqa: F401  (Ray vendors psutil and puts it on sys.path: it must come first)

    return importlib.import_module("psutil")


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


#: A trial's final progress line: ``[... ] <trial id>: ok, val loss ...`` (ray/progress.py).
DONE = re.compile(r"\] (\S+): ((?:ok|undertrained), val loss .*)$", re.M)  # a trial that trained to the end


@dataclass
class SmokeDriver:
    """A real ``flops-fit sweep --preset smoke`` driver process and its collected output;
    ``cmd`` and ``env`` rerun the identical command (a resume). As a context manager it
    kills, by pid, whatever of the driver and its process tree is still running at the end."""

    proc: subprocess.Popen
    out: LineReader
    cmd: list[str]
    env: dict[str, str]
    tree: list = field(default_factory=list)

    def __enter__(self) -> "SmokeDriver":
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        kill_pids([p for p in self.tree if p.is_running()])

    def wait_finished(self, count: int, timeout: float = 240) -> None:
        """Until ``count`` trials printed their final result (asserts, with the output's tail)."""
        done = self.out.wait_for(lambda lines: sum(bool(DONE.search(x)) for x in lines) >= count, timeout=timeout)
        assert done, self.out.text()[-3000:]

    def signal_after(self, count: int, sig: int) -> list:
        """Once ``count`` trials finished: the driver's process tree (psutil handles, taken
        first, to check and clean up after), then ``sig`` to the driver's pid alone."""
        self.wait_finished(count)
        self.tree = descendants(self.proc.pid)
        self.proc.send_signal(sig)
        return self.tree


def start_smoke_sweep(storage: Path, cache: Path, name: str, ray_tmp: Path, *flags: str) -> SmokeDriver:
    """The smoke sweep with checkpoints every second and two trials at a time, started as a
    real process: the faults (Ctrl-C, SIGKILL) land mid-sweep with checkpoints to resume.
    ``flags``: more options (``--schedule wsd``)."""
    env = subprocess_env(ray_tmp)
    cmd = sweep_cli(storage, cache, name, "--checkpoint-every-s", "1", "--max-concurrent-trials", "2", *flags)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return SmokeDriver(proc, LineReader(proc), cmd, env)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def marked_pids(marker: str) -> set[int]:
    """Processes whose command line names ``marker`` (a node's ``--temp-dir``: every process
    ``ray start`` launches for that node carries it; trial workers retitle themselves
    ``ray::...``, so they are found as the descendants of these instead)."""
    pids = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker in (proc / "cmdline").read_bytes().decode(errors="replace"):
                pids.add(int(proc.name))
        except OSError:
            continue
    return pids


def node_processes(marker: str) -> list:
    """A node's processes (by ``--temp-dir`` marker) and all their descendants, as psutil handles."""
    ps = psutil()
    procs: dict[int, object] = {}
    for pid in marked_pids(marker):
        try:
            p = ps.Process(pid)
            procs[pid] = p
            procs.update((c.pid, c) for c in p.children(recursive=True))
        except ps.NoSuchProcess:
            continue
    return list(procs.values())


def stop_node(marker: str) -> None:
    """SIGKILL every process of one Ray node, nothing else (never a bare ``ray stop``).

    No waiting on exit codes: the node's processes may be another process's children
    (Cluster's), so they stay zombies until it reaps them; a zombie's empty command line no
    longer matches. A SIGKILLed process still shows its command line for a moment until the
    kernel has taken it down (CI saw one at the very next look), and a raylet may still fork a
    worker while we kill: sweep until none is left, for up to 5 s."""
    ps = psutil()
    for _ in range(50):
        procs = node_processes(marker)
        if not procs:
            return
        for p in procs:
            try:
                p.kill()
            except ps.NoSuchProcess:
                pass
        time.sleep(0.1)
