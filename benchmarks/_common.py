"""Shared helpers for the benchmark scripts: machine facts, load average, JSON + table output."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from typing import Any, Sequence

# Offline and quiet, whatever the caller's environment (set before Ray / HF are imported).
for _k, _v in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "RAY_DEDUP_LOGS": "0",
               "RAY_AIR_NEW_OUTPUT": "0"}.items():
    os.environ.setdefault(_k, _v)


def load() -> float:
    """1-minute load average (other engineers' tests share these 2 cores)."""
    return round(os.getloadavg()[0], 2)


def machine() -> dict[str, Any]:
    model = platform.processor() or ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version()}
    if "torch" in sys.modules:  # never import torch just to describe the machine
        torch = sys.modules["torch"]
        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads(),
                    cuda=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    return info


def median(values: Sequence[float]) -> float:
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    def fmt(x: Any) -> str:
        if isinstance(x, float):
            return f"{x:.4g}"
        return str(x)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(x.rjust(w) for x, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def emit(result: dict[str, Any], text: str) -> None:
    """The human table, then the JSON object as the last line of stdout."""
    result.setdefault("machine", machine())
    result.setdefault("load_end", load())
    result.setdefault("argv", sys.argv)
    print(text)
    print(json.dumps(result, default=float), flush=True)


class Timer:
    def __enter__(self) -> "Timer":
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.s = time.perf_counter() - self.t0
