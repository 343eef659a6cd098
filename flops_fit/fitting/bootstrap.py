"""Plumbing shared by both scaling-law fits: percentile-bootstrap bookkeeping, input checks,
and a BLAS thread limiter. numpy only."""

from __future__ import annotations

import contextlib
import ctypes
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the block with OpenBLAS limited to one thread, then restore its setting.

    The fits make ~1e5 tiny BLAS/LAPACK calls (inside scipy's L-BFGS-B and np.polyfit).
    OpenBLAS threads spin-wait between calls; with two processes on two cores (a fit
    beside a Ray worker, pytest-xdist) that oversubscription made a 0.4 s fit take 8-30 s.
    Same effect as OPENBLAS_NUM_THREADS=1 (or threadpoolctl), scoped to the fit. Linux only
    (finds the loaded libraries in /proc/self/maps); elsewhere it does nothing.
    """
    restore: list[tuple[Any, int]] = []
    try:
        with open("/proc/self/maps") as fh:
            paths = {line.split()[-1] for line in fh if "openblas" in line.lower() and ".so" in line}
        for path in sorted(paths):
            lib = ctypes.CDLL(path)
            for pre, suf in (("scipy_", "64_"), ("scipy_", ""), ("", "64_"), ("", "")):
                get = getattr(lib, f"{pre}openblas_get_num_threads{suf}", None)
                put = getattr(lib, f"{pre}openblas_set_num_threads{suf}", None)
                if get is not None and put is not None:
                    restore.append((put, int(get())))
                    put(1)
                    break
    except Exception:  # noqa: BLE001 - best effort: never let a speed tweak break a fit
        pass
    try:
        yield
    finally:
        for put, threads in restore:
            put(threads)


# --- bootstrap bookkeeping ---------------------------------------------------------------
@dataclass
class Bootstrap:
    """Refits on resampled data. ``draws`` holds the fits that succeeded."""

    n_boot: int
    n_failed: int
    level: float
    seed: int | None
    draws: list[Any] = field(default_factory=list, repr=False)
    method: str = "resample"
    """How the data were redrawn: "residual" (fixed design, resampled residuals), "normal"
    (fixed design, Gaussian noise of the residuals' σ), "seed"
    (fixed design, Gaussian noise of the measured seed σ) or "resample" (runs with replacement)."""

    def interval(self, fn: Callable[[Any], float], level: float | None = None) -> tuple[float, float]:
        """Percentile interval of ``fn(draw)`` over the successful draws."""
        level = self.level if level is None else level
        values = np.array([fn(d) for d in self.draws], dtype=float)
        values = values[np.isfinite(values)]
        if values.size < 2:
            return (math.nan, math.nan)
        tail = 100 * (1 - level) / 2
        lo, hi = np.percentile(values, [tail, 100 - tail])
        return (float(lo), float(hi))

    def summary(self) -> dict[str, Any]:
        return {"n_boot": self.n_boot, "n_failed": self.n_failed, "level": self.level, "seed": self.seed,
                "method": self.method}


def interval(boot: Bootstrap | None, fn: Callable[[Any], float]) -> tuple[float, float] | None:
    return None if boot is None else boot.interval(fn)


def resample(refit: Callable[[np.random.Generator], Any], ok: Callable[[Any], bool], n_boot: int,
               level: float, seed: int) -> Bootstrap:
    """``n_boot`` refits on resampled runs; the ones that fail ``ok`` are counted, not kept."""
    rng = np.random.default_rng(seed)
    draws, failed = [], 0
    for _ in range(n_boot):
        result = refit(rng)
        if ok(result):
            draws.append(result)
        else:
            failed += 1
    return Bootstrap(n_boot, failed, level, seed, draws)


def positive(values: Sequence[float], name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(arr) & (arr > 0)):
        raise ValueError(f"{name} must be positive and finite")
    return arr
