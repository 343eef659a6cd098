"""The reference workload: the GPT of ``flops_fit.models.gpt`` on story data.

Sizes come from the closed-form shape rule (``flops_fit.planning.sizes.GPTSizes``), so planning
never builds a model; a trial builds its GPT with ``create_model_for_scaling`` and checks
that the built shape is the planned one.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flops_fit.config import DataOptions
from flops_fit.data.stories import StoryData
from flops_fit.errors import PlanError
from flops_fit.models.gpt_spec import gpt_shape
from flops_fit.planning.grid import plan
from flops_fit.planning.sizes import GPTSizes
from flops_fit.workloads.base import TrainedWorkload

if TYPE_CHECKING:
    from flops_fit.planning.config import PlanConfig
    from flops_fit.planning.grid import TrialSpec


#: A byte-level BPE's least vocabulary: 256 byte tokens and the end-of-story token.
MIN_VOCAB_SIZE = 257


@dataclass
class ReferenceGPT(TrainedWorkload):
    data: StoryData = field(default_factory=lambda: StoryData(DataOptions()))
    plateau_loss: float | None = None
    """A run whose validation loss ends above this is ``undertrained`` (set by ``prepare``)."""
    kind = "gpt"
    _vocab_noted = False

    @classmethod
    def on(cls, options: DataOptions) -> "ReferenceGPT":
        return cls(StoryData(options))

    def prepare(self, plan_cfg: "PlanConfig") -> None:
        self.data.prepare(plan_cfg.vocab_size)

    def plan(self, plan_cfg: "PlanConfig") -> list["TrialSpec"]:
        sizes = self.size_table(plan_cfg)
        return plan(sizes.cfg, sizes=sizes)

    def size_table(self, plan_cfg: "PlanConfig") -> GPTSizes:
        if self.data.options.tokenizer_name is None and plan_cfg.vocab_size < MIN_VOCAB_SIZE:
            raise PlanError(f"vocab_size={plan_cfg.vocab_size}: the reference GPT's byte-level BPE has at least "
                            f"{MIN_VOCAB_SIZE} tokens (256 bytes + end of story); use --vocab-size {MIN_VOCAB_SIZE} "
                            "or more")
        # A named tokenizer brings its own vocabulary: the grid is planned with its real size.
        cfg = dataclasses.replace(plan_cfg, vocab_size=self.data.vocab_size or plan_cfg.vocab_size)
        if cfg.vocab_size != plan_cfg.vocab_size and not self._vocab_noted:
            # a byte-level BPE has >= 257 tokens, and a small corpus caps it
            print(f"note: vocab_size {plan_cfg.vocab_size} became {cfg.vocab_size}: the tokenizer trained on "
                  "this data has that many tokens; the grid is planned with it", file=sys.stderr, flush=True)
            self._vocab_noted = True
        return GPTSizes(cfg)

    def preflight(self, specs: list["TrialSpec"]) -> None:
        from flops_fit.data.baselines import plateau_level

        self.data.preflight(specs)
        # after the data checks, which name a source that cannot be read in one line
        self.plateau_loss = plateau_level(*self.data.baselines())

    def identity(self) -> dict[str, Any]:
        return self.data.identity()

    def open_data(self, spec: "TrialSpec") -> tuple[Any, Any]:
        return self.data.open(spec)

    def build_model(self, spec: "TrialSpec"):
        from flops_fit.models.gpt import create_model_for_scaling

        m = spec.model
        model = create_model_for_scaling(m["target_params"], vocab_size=m["vocab_size"], max_seq_len=spec.seq_len,
                                         count=m["size_count"])
        if model.config.shape != gpt_shape(m):
            raise RuntimeError(f"trial {spec.trial_id}: built shape {model.config.shape} differs from the planned one")
        return model
