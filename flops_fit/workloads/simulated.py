"""A known scaling law instead of training: each trial's loss is L(N, D) = E + A/N^α + B/D^β
of its planned (N, D), times seeded multiplicative noise. Designs a sweep (grid, budgets,
how well the fits recover the law) in seconds, on the same engine and Ray path as real
trials. Imports neither torch nor the data stack.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flops_fit.plan import plan
from flops_fit.sizes import GPTSizes

if TYPE_CHECKING:
    from flops_fit.config import TrainOptions
    from flops_fit.plan import PlanConfig, TrialSpec


@dataclass
class SimulatedLaw:
    law: dict[str, float]
    """{E, A, B, alpha, beta} and optionally the multiplicative ``noise``."""
    kind = "simulated"

    def prepare(self, plan_cfg: "PlanConfig") -> None:
        pass  # nothing to prepare: no tokenizer, no data

    def plan(self, plan_cfg: "PlanConfig") -> list["TrialSpec"]:
        return plan(plan_cfg, sizes=GPTSizes(plan_cfg))

    def preflight(self, specs: list["TrialSpec"]) -> None:
        pass  # simulated trials read no data

    def identity(self) -> dict[str, Any]:
        return {"simulate": self.law}

    def run_trial(self, spec: "TrialSpec", options: "TrainOptions", *,
                  resume_from: str | os.PathLike[str] | None = None, save_checkpoint: Any = None,
                  checkpoint_root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """The law's loss at this trial's (N, D); instant, so checkpoints are never needed."""
        import numpy as np

        from flops_fit.synthetic import ScalingLaw

        params = {k: self.law[k] for k in ("E", "A", "B", "alpha", "beta")}
        # The seed mixes the sweep seed with the trial's identity so repeats are reproducible.
        rng = np.random.default_rng([spec.seed, spec.n, spec.tokens])
        loss = ScalingLaw(**params).loss(spec.n, spec.tokens, rng=rng, noise=float(self.law.get("noise", 0.0)))
        record = spec.record()
        record.update(loss=float(loss), train_loss=float(loss), status="ok", wall_s=0.0, tokens_per_s=0.0)
        return record
