"""Reference model and data: the GPT (``gpt.py``), TinyStories (``tinystories.py``) and
the synthetic offline sample (``sample.py``). Imported lazily: torch and the Hugging Face
stack load on first use, so ``import flops_fit.examples`` stays cheap."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "GPT": "flops_fit.examples.gpt",
    "GPTConfig": "flops_fit.examples.gpt",
    "create_model_for_scaling": "flops_fit.examples.gpt",
    "estimate_params_from_config": "flops_fit.examples.gpt",
    "TinyStoriesDataset": "flops_fit.examples.tinystories",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'flops_fit.examples' has no attribute {name!r}")
