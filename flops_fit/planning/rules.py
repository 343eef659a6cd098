"""The training rules every planned trial follows: one object, each rule one short method
with the paper it comes from.

A preset or a recipe file chooses the constants (``PlanConfig``); ``TrainingRules`` applies
them. The learning-rate constants are the recipe's when the config names one (measured by
``flops-fit tune``), else the config's own. Pure Python: no torch, no Ray.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any

from flops_fit.planning import recipe
from flops_fit.planning.config import PlanConfig


def deepseek_batch_tokens(budget: float) -> float:
    """Compute-optimal batch size in tokens, B = 0.292·C^0.3271 (DeepSeek LLM, Bi et al.
    2024, §3.1). It shrinks with the budget, which gives the large models of small
    budgets enough optimizer steps for an IsoFLOP valley to show."""
    return 0.292 * budget**0.3271


@lru_cache(maxsize=32)
def _recipe_rule(name_or_path: str, stamp: int) -> dict[str, float | None]:
    return recipe.load(name_or_path).rule()


def recipe_rule(name_or_path: str) -> dict[str, float | None]:
    """A recipe's learning-rate constants, read once per file version."""
    path = Path(name_or_path).expanduser()
    stamp = path.stat().st_mtime_ns if path.exists() else 0
    return _recipe_rule(name_or_path, stamp)


class TrainingRules:
    """Batch, learning rate, warmup and AdamW's beta2 for the trials of one ``PlanConfig``."""

    def __init__(self, cfg: PlanConfig):
        self.cfg = cfg
        if cfg.recipe is not None:  # a measured rule sets the learning-rate constants
            self.lr_rule = {k: None if v is None else float(v) for k, v in recipe_rule(cfg.recipe).items()}
        else:
            self.lr_rule = {k: getattr(cfg, k) for k in recipe.RULE_FIELDS}

    def batch(self, budget: float, largest_tokens: float) -> int:
        """Sequences per step for every trial of one budget: the DeepSeek rule's B(C)
        (``deepseek_batch_tokens``) as a power of two, capped at ``max_batch_size`` (memory, or
        a measured critical batch), halved until the budget's largest model (``largest_tokens``
        tokens, the fewest) still gets ``min_steps`` steps. One batch per budget, because B(C)
        is a function of the budget only and a batch that varies inside a budget would move its
        IsoFLOP valley."""
        cfg = self.cfg
        batch = 2 ** max(0, round(math.log2(max(1.0, deepseek_batch_tokens(budget) / cfg.seq_len))))
        batch = min(batch, cfg.max_batch_size)
        while batch > 1 and largest_tokens / (batch * cfg.seq_len) < cfg.min_steps:
            batch //= 2
        return batch

    def lr(self, n: int, batch_tokens: float | None = None) -> float:
        """The peak learning rate of a model with ``n`` parameters trained on ``batch_tokens``
        tokens a step: base_lr·(n/lr_n_ref)^-lr_exponent·(batch_tokens/lr_batch_ref)^lr_batch_exponent.

        One rule in the total parameter count for every workload (a user's model has no width
        to read). Its constants are measured, not guessed: ``flops-fit tune`` scans the
        learning rate at three sizes spanning a grid and fits this power law (Porian et al.
        2024, "Resolving Discrepancies in Compute-Optimal Scaling", §4, fit the optimal AdamW
        learning rate as a power law in N the same way; DeepSeek LLM, Bi et al. 2024, in
        compute). The batch term matters because the batch grows with the budget: the rate
        grows as the square root of the batch (Malladi et al. 2022, "On the SDEs and Scaling
        Rules for Adaptive Gradient Algorithms"), measured on the tiny grid in docs/fitting.md."""
        return recipe.rule_lr(n, batch_tokens, **self.lr_rule)

    def warmup(self, n: int, batch: int, steps: int) -> int:
        """Linear warmup over as many tokens as the model has parameters (Porian et al. 2024,
        §3.3: Kaplan's fixed 3000 steps is most of a small model's run and biased its optimum),
        capped at a tenth of the run: a trial of fewer tokens than parameters (the large end of
        a small budget) would otherwise spend the whole run warming up."""
        return max(1, min(round(n / (batch * self.cfg.seq_len)), round(0.1 * steps)))

    def beta2(self) -> float:
        """AdamW's second-moment decay, 0.99 by default: Porian et al. 2024 (§4) find the usual
        0.95 costs loss at small batches and a higher beta2 essential there; every batch of the
        CPU presets is 2-32 sequences."""
        return self.cfg.beta2

    def describe(self, setup: dict[str, Any]) -> str:
        """The learning-rate lines of a plan printout: the recipe's summary (and a note when the
        sweep's ``setup``, ``flops_fit.data.stories.setup_of``, is not the one it was measured
        on), or the hand-set rule."""
        cfg = self.cfg
        if cfg.recipe is not None:
            rec = recipe.load(cfg.recipe)
            note = recipe.setup_mismatch(rec, setup)
            return rec.summary() + f"; AdamW beta2 {self.beta2():g}" + (f"\n{note}" if note else "")
        return (f"learning rate: {recipe.rule_text(**self.lr_rule)} "
                f"(set by hand, not measured on this grid: `flops-fit tune` measures it); AdamW beta2 {self.beta2():g}")
