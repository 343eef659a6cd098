"""A known scaling law instead of training: each trial's loss is L(N, D) = E + A/N^α + B/D^β
of its planned (N, D), times seeded multiplicative noise. Designs a sweep (grid, budgets,
how well the fits recover the law) in seconds, on the same engine and Ray path as real
trials. Imports neither torch nor the data stack.

The sizes are the reference GPT's, or a user's model's (``find_optimal(..., mode="mock")``,
flops-fit v1.0's mock mode): the counts measured on the ``meta`` device and the data's
sequence length, so the mock plans exactly the trials training would run, at the same N
and D, and only the losses come from the law.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flops_fit.planning.grid import plan
from flops_fit.planning.sizes import CountedSizes, GPTSizes

if TYPE_CHECKING:
    from flops_fit.config import TrainOptions
    from flops_fit.planning.config import PlanConfig
    from flops_fit.planning.grid import TrialSpec
    from flops_fit.planning.sizes import SizeTable
    from flops_fit.workloads.base import SaveCheckpoint


#: What a simulated trial asks Ray for (``Workload.trial_cpus``); measured in benchmarks/RESULTS.md.
SIMULATED_TRIAL_CPUS = 0.5


@dataclass
class SimulatedLaw:
    law: dict[str, float]
    """{E, A, B, alpha, beta} and optionally the multiplicative ``noise``."""
    size_param: str | None = None
    """A user's model: the keyword that sets its size (None: the reference GPT's sizes)."""
    counts: dict[Any, int] | None = None
    """A user's model: {size value: parameter count}, as ``flops_fit.workloads.user.count_sizes`` measured."""
    seq_len: int | None = None
    """A user's model: the sequence length of its data (None: the plan's)."""
    kind = "simulated"
    #: A simulated trial evaluates one formula: half a CPU and no GPU, so a design of the GPU
    #: preset runs on a laptop, and its actors are reused (Tune reuses no GPU trial's actor).
    trial_cpus = SIMULATED_TRIAL_CPUS

    def prepare(self, plan_cfg: "PlanConfig") -> None:
        pass  # nothing to prepare: no tokenizer, no data

    def plan(self, plan_cfg: "PlanConfig") -> list["TrialSpec"]:
        sizes = self.size_table(plan_cfg)
        return plan(sizes.cfg, sizes=sizes)

    def size_table(self, plan_cfg: "PlanConfig") -> "SizeTable":
        if self.counts is None:
            return GPTSizes(plan_cfg)
        return counted_sizes(plan_cfg, self.size_param, self.counts, self.seq_len)

    def preflight(self, specs: list["TrialSpec"]) -> None:
        pass  # simulated trials read no data

    def identity(self) -> dict[str, Any]:
        if self.counts is None:
            return {"simulate": self.law}
        return {"simulate": self.law, "size_param": self.size_param}

    def run_trial(self, spec: "TrialSpec", options: "TrainOptions", *,
                  resume_from: str | os.PathLike[str] | None = None, save_checkpoint: SaveCheckpoint | None = None,
                  checkpoint_root: str | os.PathLike[str] | None = None,
                  stem_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """The law's loss at this trial's (N, D); instant, so checkpoints are never needed."""
        import numpy as np

        from flops_fit.fitting.synthetic import ScalingLaw

        params = {k: self.law[k] for k in ("E", "A", "B", "alpha", "beta")}
        # The seed mixes the sweep seed with the trial's identity so repeats are reproducible.
        rng = np.random.default_rng([spec.seed, spec.n, spec.tokens])
        loss = ScalingLaw(**params).loss(spec.n, spec.tokens, rng=rng, noise=float(self.law.get("noise", 0.0)))
        record = spec.record()
        record.update(loss=float(loss), train_loss=float(loss), status="ok", wall_s=0.0, tokens_per_s=0.0)
        return record


def counted_sizes(plan_cfg: "PlanConfig", size_param: str, counts: dict[Any, int],
                  seq_len: int | None) -> CountedSizes:
    """A user's model's size table: its measured sizes, its data's sequence length. One
    table for training it (``UserModel``) and for mocking it (``SimulatedLaw``)."""
    cfg = dataclasses.replace(plan_cfg, seq_len=seq_len) if seq_len is not None else plan_cfg
    return CountedSizes(cfg, size_param, counts)
