"""Trial checkpoints written off the training loop's critical path.

A checkpoint of model + AdamW state is 16 bytes a parameter (about 6 GB at 372M); a blocking
``torch.save`` of it stalls a GPU for seconds every interval. Here the loop only pays for the
copy to host memory (pinned on CUDA, so the device-to-host copy runs at full PCIe speed), a
background thread serialises the copy, and the finished directory is handed to the caller's
``save_checkpoint`` on the loop's own thread at its next check (``tune.report`` must be
called from the trial's thread). One write is in flight at a time; the interval stretches to
``WRITE_FRACTION``'s inverse times the last write's duration, so writing a large state never
takes more than about a tenth of the wall time, whatever ``checkpoint_every_s`` says.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import torch

from flops_fit.trainer.distributed import World

CHECKPOINT_FILE = "trial_state.pt"
#: At most this fraction of wall time spent writing checkpoints (the interval stretches).
WRITE_FRACTION = 0.1


def to_host(obj: Any) -> Any:
    """A deep copy of ``obj`` with every tensor copied to (pinned, on CUDA) host memory."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        if t.device.type == "cuda":
            out = torch.empty(t.shape, dtype=t.dtype, device="cpu", pin_memory=True)
            return out.copy_(t, non_blocking=True)
        return t.clone()
    if isinstance(obj, dict):
        return {k: to_host(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_host(v) for v in obj)
    return obj


def write(state: dict[str, Any], root: str | os.PathLike[str] | None, step: int) -> Path:
    directory = Path(tempfile.mkdtemp(prefix=f"ckpt_{step:08d}_", dir=root))
    torch.save(state, directory / CHECKPOINT_FILE)
    return directory


class BackgroundWriter:
    """``submit(state, step, progress)`` copies ``state`` to the host and writes it on a
    thread; ``poll()`` hands finished writes to ``on_done(dir, progress)`` on the caller's
    thread; ``due()`` says when the next one should start; ``close()`` waits and hands the last."""

    def __init__(self, root: str | os.PathLike[str] | None, on_done: Callable[[Path, dict], None],
                 every_s: float) -> None:
        self.root, self.on_done, self.every_s = root, on_done, every_s
        self.last_start = time.perf_counter()
        self.last_write_s = 0.0
        self._thread: threading.Thread | None = None
        self._result: tuple[Path, dict] | None = None
        self._error: BaseException | None = None

    def due(self) -> bool:
        interval = max(self.every_s, self.last_write_s / WRITE_FRACTION)
        return self._thread is None and time.perf_counter() - self.last_start >= interval

    def submit(self, state: dict[str, Any], step: int, progress: dict[str, Any]) -> None:
        self.last_start = time.perf_counter()
        host = to_host(state)
        if torch.cuda.is_available():
            torch.cuda.current_stream().synchronize()  # the non-blocking copies have landed

        def run() -> None:
            t0 = time.perf_counter()
            try:
                self._result = (write(host, self.root, step), progress)
            except BaseException as exc:  # surfaced on the loop's thread by poll()
                self._error = exc
            self.last_write_s = time.perf_counter() - t0

        self._thread = threading.Thread(target=run, name="flops-fit-checkpoint", daemon=True)
        self._thread.start()

    def poll(self, wait: bool = False) -> None:
        if self._thread is None or (self._thread.is_alive() and not wait):
            return
        self._thread.join()
        self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        result, self._result = self._result, None
        if result is not None:
            self.on_done(*result)

    def close(self) -> None:
        self.poll(wait=True)

    def ready(self) -> bool:
        """A write has finished and waits for ``poll`` to hand it over."""
        return self._thread is not None and not self._thread.is_alive()

    def pending(self) -> bool:
        return self._thread is not None


class CheckpointTurns:
    """When a trial starts a checkpoint write and hands a finished one to ``save_checkpoint``.

    One process: at every step, as soon as the ``BackgroundWriter`` says. Several
    data-parallel ranks (``flops_fit.trainer.distributed``): rank 0 alone holds the writer (the
    ranks' states are identical), and only at log points, where its two answers (a write
    finished, a new one due) reach every rank; a rank without the writer hands over ``None``,
    so every rank reports the checkpoint together, as Ray Train requires. A sharded model's
    state is gathered to rank 0 by all ranks at once."""

    def __init__(self, writer: BackgroundWriter, world: World, device: torch.device) -> None:
        self.writer, self.world, self.device = writer, world, device

    def turn(self, state: Callable[[], dict[str, Any]], step: int, progress: dict[str, Any], log_point: bool) -> None:
        """``state()`` builds the state to write (called only where one starts)."""
        if self.world.size == 1:
            self.writer.poll()  # a finished write goes to save_checkpoint from this thread
            if self.writer.due():
                self.writer.submit(state(), step, progress)
            return
        if not log_point:
            return
        ready, due = self.world.leader_flags([self.writer.ready(), self.writer.due()], self.device)
        if ready:
            self._hand_over(progress)
        if due and self.world.leads:
            self.writer.submit(state(), step, progress)
        elif due and self.world.sharded:
            state()  # gathering a sharded state to rank 0 takes every rank

    def close(self, progress: dict[str, Any]) -> None:
        """Wait for a write in flight and hand it over (on every rank)."""
        if self.world.size == 1:
            self.writer.close()
        elif self.world.leader_flags([self.writer.pending()], self.device)[0]:
            self._hand_over(progress)

    def _hand_over(self, progress: dict[str, Any]) -> None:
        if self.world.leads:
            self.writer.poll(wait=True)
        else:
            self.writer.on_done(None, progress)


class StemStore:
    """A WSD stem's kept state (``flops_fit.planning.schedule``): the state at the cooldown
    start of its furthest branch so far, ``<sweep>/stems/<stem>/step_<S>.pt``, from which its
    next branch, a budget added later or an adaptive addition continues instead of training
    the stem again. One file per stem (16 bytes a parameter with AdamW's moments): a newer one
    replaces it, so a branch shorter than the kept state (added after a longer one ran)
    trains its stem from the start."""

    def __init__(self, directory: str | os.PathLike[str]):
        self.dir = Path(directory)

    def steps(self) -> list[int]:
        if not self.dir.is_dir():
            return []
        return sorted(int(p.stem.split("_")[1]) for p in self.dir.glob("step_*.pt") if p.stem.split("_")[1].isdigit())

    def latest(self, at_most: int) -> tuple[int, Path] | None:
        """The kept state furthest along but not past step ``at_most``, or None."""
        usable = [s for s in self.steps() if s <= at_most]
        return (usable[-1], self.dir / f"step_{usable[-1]:08d}.pt") if usable else None

    def keep(self, state: dict[str, Any], step: int) -> None:
        """Keep ``state`` as the stem at ``step`` (atomically), unless a state as far along is kept."""
        if any(s >= step for s in self.steps()):
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".step_{step:08d}.pt.{os.getpid()}.tmp"
        torch.save(to_host(state), tmp)
        os.replace(tmp, self.dir / f"step_{step:08d}.pt")
        for old in self.steps():
            if old < step:
                (self.dir / f"step_{old:08d}.pt").unlink(missing_ok=True)
