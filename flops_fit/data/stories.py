"""The story data a trained workload reads by default: TinyStories (or local stories, or the
offline sample) cut into cached token shards, with the sweep's one tokenizer.

The driver calls ``prepare(vocab_size)`` once: it proves the token cache writable, then
trains or loads the tokenizer and keeps it serialised in ``options.tokenizer_json``, so
every worker (which receives this object pickled) tokenizes identically. Workers call
``open(spec)``: the trial's training shards (prepared lazily, exactly as many as it needs)
and the fixed validation set every trial shares.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flops_fit.config import DataOptions, SweepConfig
from flops_fit.data.sample import SAMPLE_NAME
from flops_fit.planning.recipe import SETUP_FIELDS

if TYPE_CHECKING:
    from flops_fit.planning.grid import TrialSpec


@dataclass
class StoryData:
    options: DataOptions
    vocab_size: int | None = None
    """The tokenizer's real size (known after ``prepare``)."""
    fingerprint: str | None = None
    """sha256 of the canonical tokenizer.json (the manifest's ``tokenizer``)."""

    def prepare(self, vocab_size: int) -> None:
        """Train or load the tokenizer once, on the driver (idempotent)."""
        if self.options.tokenizer_json is not None:
            return
        from flops_fit.data.preflight import check_cache_writable
        from flops_fit.data.tokenizer import default_cache_dir, load_tokenizer, tokenizer_fingerprint, tokenizer_json

        # Before the tokenizer is trained into it: an unwritable cache fails here, in one line.
        check_cache_writable(default_cache_dir(self.options.cache_dir).resolve())
        tok = load_tokenizer(self.options.source, self.options.cache_dir, tokenizer_name=self.options.tokenizer_name,
                             vocab_size=vocab_size)
        self.options = dataclasses.replace(self.options, tokenizer_json=tokenizer_json(tok))
        self.vocab_size, self.fingerprint = len(tok), tokenizer_fingerprint(tok)

    def preflight(self, specs: list["TrialSpec"]) -> None:
        from flops_fit.data.preflight import preflight

        preflight(self.options, specs)

    def identity(self) -> dict[str, Any]:
        return {"source": self.options.source, "tokenizer": self.fingerprint, "val_tokens": self.options.val_tokens}

    def _split(self, split: str, seq_len: int, num_tokens: int) -> Any:
        """One split's first ``num_tokens`` tokens as prepared (cached) windows of ``seq_len``."""
        from flops_fit.data.tinystories import TinyStoriesDataset

        o = self.options
        return TinyStoriesDataset(split=split, seq_len=seq_len, num_tokens=num_tokens, cache_dir=o.cache_dir,
                                  source=o.source, tokenizer_name=o.tokenizer_name, tokenizer=o.tokenizer_json,
                                  vocab_size=self.vocab_size).prepare_data()

    def baselines(self) -> tuple[float, float]:
        """(unigram, bigram) cross-entropy of the validation text, counted on the first
        ``BASELINE_TOKENS`` training tokens (``flops_fit.data.baselines``); on the driver,
        after ``preflight``. The shards it reads are the cached ones trials start from."""
        from flops_fit.data.baselines import BASELINE_TOKENS, cross_entropies

        train = self._split("train", 1, BASELINE_TOKENS)
        val = self._split("validation", 1, self.options.val_tokens)
        return cross_entropies(train.tokens(), val.tokens(), train.vocab_size_actual)

    def open(self, spec: "TrialSpec") -> tuple[Any, Any]:
        """(train, validation) datasets for ``spec``; refuses too many epochs of the split. A
        WSD branch draws from its stem's tokens (``TrialSpec.stem_tokens``), as all its branches do."""
        o = self.options
        train = self._split("train", spec.seq_len, max(spec.tokens, spec.stem_tokens))
        val = self._split("validation", spec.seq_len, o.val_tokens)
        epochs = spec.tokens / max(1, len(train) * spec.seq_len)
        if epochs > o.max_epochs:
            raise ValueError(
                f"trial {spec.trial_id} needs {spec.tokens:,} tokens but the training split has "
                f"{len(train) * spec.seq_len:,}: {epochs:.1f} epochs > max_epochs={o.max_epochs}; "
                "use more data or raise max_epochs"
            )
        return train, val


def setup_of(cfg: SweepConfig) -> dict[str, Any]:
    """A sweep's setup as a learning-rate recipe records it (``planning.recipe.SETUP_FIELDS``):
    the text, its tokenizer, the context and the optimizer's other settings. The offline
    sample's text is the generator's, so it is named with its version: a rate measured on one
    version of the sample is not measured on the next."""
    source = SAMPLE_NAME if cfg.data.source == "sample" else cfg.data.source
    setup = {"source": source, "tokenizer_name": cfg.data.tokenizer_name, "vocab_size": cfg.plan.vocab_size,
             "seq_len": cfg.plan.seq_len, "beta2": cfg.plan.beta2, "weight_decay": cfg.train.weight_decay,
             "schedule": cfg.plan.schedule}
    return {k: setup[k] for k in SETUP_FIELDS}
