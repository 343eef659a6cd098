"""Compatibility home of the seed's names: the model moved to ``flops_fit.models.gpt`` and
the data pipeline to ``flops_fit.data``; ``from flops_fit.examples import GPT, GPTConfig,
TinyStoriesDataset, create_model_for_scaling`` keeps working. Imported lazily, so
``import flops_fit.examples`` stays cheap (torch loads on first use)."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "GPT": "flops_fit.models.gpt",
    "GPTConfig": "flops_fit.models.gpt",
    "create_model_for_scaling": "flops_fit.models.gpt",
    "estimate_params_from_config": "flops_fit.models.gpt",
    "TinyStoriesDataset": "flops_fit.data.tinystories",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'flops_fit.examples' has no attribute {name!r}")
