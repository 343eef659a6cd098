"""Pre-flight checks of the story data: what a sweep verifies after planning and before any trial starts.

A sweep is days of cluster time, so every mistake that can be found on the driver in
seconds is found there, with a one-line ``PlanError`` that names the problem and the fix
(the ``flops-fit`` command prints it and exits 2). The checks here complement the ones
that already run earlier in ``sweep()``: config validation (``SweepConfig.__post_init__``,
``PlanConfig``), the writable ``storage_path`` probe (``prepare_storage``), the tokenizer
(trained or loaded on the driver) and the plan's feasibility.

Checked here:

- the token cache directory is writable (workers write shards there; an unwritable one
  would otherwise fail every trial, one after another, after the sweep had started);
- the data source can be opened: both splits exist (a hub dataset that cannot be reached
  and has no local copy, or local files without a split, fail here and not in a trial);
- the training split holds enough tokens for the largest trial: a trial that would repeat
  the split more than ``max_epochs`` times is refused with the number of epochs and the
  flag that raises the limit. (``flops_fit.trainer.trial`` re-checks on the worker with the exact
  count, so this estimate is a fast early answer, not the only guard.)

Counting tokens is cheap and needs no shard: the number of stories is known without
reading them (the offline sample's ``SPLIT_SIZES``, an Arrow table's length), and tokens
per story come from tokenizing a few evenly spaced blocks of stories with the sweep's own
tokenizer (every story, when the split is small enough that this is exact and fast).
"""

from __future__ import annotations

import math
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flops_fit.errors import PlanError

if TYPE_CHECKING:
    from flops_fit.config import DataOptions
    from flops_fit.planning.grid import TrialSpec

#: Splits up to this many stories are tokenized whole (exact count, well under a second).
EXACT_STORY_LIMIT = 4096
#: Otherwise: this many evenly spaced blocks of BLOCK stories give the tokens per story.
SAMPLE_BLOCKS = 8
BLOCK = 64


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def check_cache_writable(cache_dir: Path) -> None:
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        probe = cache_dir / f".write-probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise PlanError(f"cache_dir {str(cache_dir)!r} is not writable ({exc.strerror or exc}); "
                        "choose another --cache-dir (node-local disk) or set $FLOPS_FIT_CACHE") from exc


def open_split(source: Any, split: str, cache_dir: Path):
    """The split's ``StorySource`` with its length known, or a one-line PlanError."""
    from flops_fit.data.sources import SourceSpec, StorySource

    try:
        stories = StorySource(SourceSpec.parse(source), split, cache_dir / "hf")
        count = len(stories)
    except PlanError:
        raise
    except (OSError, ValueError, KeyError) as exc:  # hub unreachable, missing files, bad columns
        raise PlanError(f"data source {source!r} ({split} split) cannot be opened: {_one_line(exc)}") from exc
    if count == 0:
        raise PlanError(f"data source {source!r} has an empty {split} split; point source= at files with stories")
    return stories, count


def estimate_split_tokens(stories, count: int, tokenizer_json: str) -> tuple[int, bool]:
    """(tokens in the split, exact?) with the sweep's tokenizer; EOS after every story."""
    import numpy as np

    from flops_fit.data.tokenizer import DataTokenizer

    tok = DataTokenizer.from_json(tokenizer_json)

    def tokens_of(texts: list[str]) -> int:
        encoded = tok.backend.encode_batch_fast(texts, add_special_tokens=True)
        return sum(len(e.ids) for e in encoded)

    if count <= EXACT_STORY_LIMIT:
        return tokens_of(stories.stories(0, count)), True
    starts = np.linspace(0, count - BLOCK, SAMPLE_BLOCKS).astype(int)
    sampled = [s for start in starts for s in stories.stories(int(start), BLOCK)]
    return int(round(tokens_of(sampled) / len(sampled) * count)), False


def check_data_size(data: "DataOptions", specs: list["TrialSpec"], stories, count: int, tokenizer_json: str) -> float:
    """Refuse when the largest trial repeats the training split more than ``max_epochs``
    times; return that trial's epochs (a note is printed when it is above one)."""
    largest = max(specs, key=lambda s: s.tokens)
    total, exact = estimate_split_tokens(stories, count, tokenizer_json)
    usable = (total // largest.seq_len) * largest.seq_len  # whole seq_len windows (packing)
    about = "" if exact else "about "
    if usable <= 0:
        raise PlanError(f"data source {data.source!r}: the train split holds {about}{total:,} tokens, less than one "
                        f"seq_len={largest.seq_len} window; use a larger source= or a smaller --seq-len")
    epochs = largest.tokens / usable
    if epochs > data.max_epochs:
        raise PlanError(
            f"dataset too small: trial {largest.trial_id} needs {largest.tokens:,} tokens but the train split of "
            f"{data.source!r} holds {about}{usable:,} ({count:,} stories), {epochs:.1f} epochs > "
            f"max_epochs={data.max_epochs:g}; use a larger source= or raise --max-epochs to {math.ceil(epochs * 10) / 10:g}"
        )
    if epochs > 1:
        print(f"note: trial {largest.trial_id} repeats the train split {epochs:.1f} times "
              f"(max_epochs={data.max_epochs:g})", file=sys.stderr, flush=True)
    return epochs


def preflight(data: "DataOptions", specs: list["TrialSpec"]) -> None:
    """Everything about the data that can be checked before a trial starts; raises a
    one-line PlanError. ``data.tokenizer_json`` is the driver's tokenizer (size check)."""
    if not specs:
        return
    from flops_fit.data.tokenizer import default_cache_dir

    cache = default_cache_dir(data.cache_dir).resolve()
    check_cache_writable(cache)
    stories, count = open_split(data.source, "train", cache)
    open_split(data.source, "validation", cache)
    if data.tokenizer_json is not None:
        check_data_size(data, specs, stories, count, data.tokenizer_json)


__all__ = ["preflight", "check_cache_writable", "open_split", "estimate_split_tokens", "check_data_size"]
