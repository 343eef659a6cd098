"""flops_fit: how big a model, on how many tokens, for a FLOPs budget.

Runs Chinchilla-style IsoFLOP sweeps on Ray Tune and fits scaling laws
(Hoffmann et al. 2022, Approaches 2 and 3). ``import flops_fit`` is cheap: torch, the data
stack and Ray are imported only when a name that needs them is first used (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "GPT": ("flops_fit.models.gpt", "GPT"),
    "GPTConfig": ("flops_fit.models.gpt", "GPTConfig"),
    "create_model_for_scaling": ("flops_fit.models.gpt", "create_model_for_scaling"),
    "TinyStoriesDataset": ("flops_fit.data.tinystories", "TinyStoriesDataset"),
    "find_optimal": ("flops_fit.api", "find_optimal"),
    "Result": ("flops_fit.results.result", "Result"),
}

__all__ = ["__version__", "ray", *_LAZY]


def __getattr__(name: str) -> Any:
    if name == "ray":
        return importlib.import_module("flops_fit.ray")
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'flops_fit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
