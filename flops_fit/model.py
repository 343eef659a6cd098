"""Backward-compatible home of the GPT names: the model lives in ``flops_fit.models.gpt``.

``from flops_fit.model import GPT, GPTConfig`` keeps working for code written before the
move; new code should import from ``flops_fit.models.gpt``.
"""

from __future__ import annotations

from flops_fit.models.gpt import (
    GPT,
    GPTConfig,
    config_for_scaling,
    create_model_for_scaling,
    estimate_params_from_config,
)

__all__ = [
    "GPT",
    "GPTConfig",
    "config_for_scaling",
    "create_model_for_scaling",
    "estimate_params_from_config",
]
