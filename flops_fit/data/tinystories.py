"""TinyStories as packed token windows for scaling-law trials.

Packing: the stories of a split, in order, are tokenized and joined into ONE token stream,
each story followed by the EOS token; the stream is cut into non-overlapping ``seq_len``
windows, ``window i = stream[i*seq_len:(i+1)*seq_len]`` (windows may cross story and shard
boundaries). There is no padding, so every position is a real token and a trial that sees
``k`` windows has trained on exactly ``k*seq_len`` tokens. Only the stream's final partial
window is dropped.

Lazy and cached: constructing a dataset only validates arguments. ``prepare_data()``
resolves the tokenizer and prepares, in order, only the shards that hold the first
``num_tokens`` tokens (``shards.py``: shard format, atomic writes, locking, checksums).
Cache layout under ``cache_dir`` (``$FLOPS_FIT_CACHE`` or ``~/.cache/flops_fit``)::

    tokenizers/<sha256 of tokenizer.json>/tokenizer.json, tokenizer_config.json
    tokenizers/recipes/<hash>.json          # (source, vocab_size) -> default BPE fingerprint
    tokens/<hash(source, split, tokenizer, shard size, format)>/shard-00000.{bin,json,lock}
    hf/                                     # datasets' Arrow cache for hub/local sources

Every path component is a hash, so no source or tokenizer name can write outside it.

Sources (``SourceSpec.parse`` classifies a ``source=`` value without touching the disk
or the network):

- ``"sample"``: the offline synthetic corpus (``flops_fit.data.sample``), generated
  shard by shard; no files.
- a hub dataset id such as ``"roneneldan/TinyStories"`` (text column ``text``, splits
  ``train`` and ``validation``), loaded with ``datasets.load_dataset`` into
  ``<cache_dir>/hf``. An unreachable hub fails in seconds with a message naming the
  alternatives; set ``HF_HUB_OFFLINE=1`` to use a copy already in that cache.
- local files: a ``Path``, an absolute/relative path, or a glob of ``.parquet``,
  ``.jsonl``/``.json`` or ``.txt`` files, or a dict ``{"train": ..., "validation": ...}``
  of such. A directory is searched recursively; files whose name carries a split word
  (``train-0000.parquet``, ``TinyStoriesV2-GPT4-valid.txt``) select that split. A single
  corpus without split names has its validation split carved from its held-out tail
  (``holdout_size``) so the two splits never share a story. Parquet/JSON files need a
  ``text`` column (or exactly one string column); ``.txt`` files hold one story per
  ``<|endoftext|>``-separated block, or per blank-line-separated paragraph if that marker
  never occurs in the file's first MiB.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from flops_fit.data.shards import STORIES_PER_SHARD, ShardStore
from flops_fit.data.sources import HUB_DATASET, SPLITS, SourceSpec
from flops_fit.data.tokenizer import (
    DEFAULT_TOKENIZER_STORIES,
    DEFAULT_VOCAB_SIZE,
    DataTokenizer,
    default_cache_dir,
    load_tokenizer,
    resolve_tokenizer,
    tokenizer_fingerprint,
    tokenizer_json,
)

__all__ = ["TinyStoriesDataset", "validation_set", "load_tokenizer", "tokenizer_fingerprint", "tokenizer_json",
           "DEFAULT_VOCAB_SIZE", "HUB_DATASET"]


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


class TinyStoriesDataset(torch.utils.data.Dataset):
    """Packed ``seq_len`` windows of a TinyStories split; ``ds[i] -> (input_ids, labels)``.

    Args:
        split: ``"train"`` or ``"validation"``.
        seq_len: tokens per window.
        cache_dir: cache root (default ``$FLOPS_FIT_CACHE`` or ``~/.cache/flops_fit``).
        tokenizer_name: a Hugging Face tokenizer id or local directory (never remote code).
        source: ``"roneneldan/TinyStories"`` (hub), ``"sample"`` (offline synthetic corpus),
            or local parquet/jsonl/txt files (path, glob, directory, or ``{"train":..,
            "validation":..}``); see the module docstring.
        vocab_size: size of the default BPE trained when no tokenizer is given.
        num_tokens: use only the first ``num_tokens`` tokens of the split (prepares only the
            shards that hold them). ``None``: the whole split. For ``validation`` this is the
            fixed held-out set: the same first tokens for every trial.
        tokenizer: a loaded fast tokenizer or its tokenizer.json string (what a sweep driver
            ships to workers); when given, ``tokenizer_name`` and ``vocab_size`` are ignored
            (the driver resolved them already).
        stories_per_shard: stories per cache shard (tests use small shards).
        tokenizer_train_stories: stories the default BPE is trained on.

    ``labels`` equals ``input_ids``: the model shifts them. ``get_batch(indices)`` is the
    trainer's fast path; ``num_tokens_available`` (= ``len * seq_len``) and
    ``split_exhausted`` (the split held fewer than ``num_tokens``) tell the trainer
    whether it must repeat epochs.
    """

    def __init__(self, split: str = "train", seq_len: int = 256, cache_dir: str | os.PathLike[str] | None = None,
                 tokenizer_name: str | None = None, source: Any = HUB_DATASET, vocab_size: int = DEFAULT_VOCAB_SIZE,
                 num_tokens: int | None = None, tokenizer: Any = None, *,
                 stories_per_shard: int = STORIES_PER_SHARD,
                 tokenizer_train_stories: int = DEFAULT_TOKENIZER_STORIES) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        for name, value, low in (("seq_len", seq_len, 1), ("vocab_size", vocab_size, 257),
                                 ("stories_per_shard", stories_per_shard, 1),
                                 ("tokenizer_train_stories", tokenizer_train_stories, 1)):
            if not _is_int(value) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if num_tokens is not None and (not _is_int(num_tokens) or num_tokens < 1):
            raise ValueError(f"num_tokens must be a positive integer or None, got {num_tokens!r}")
        if tokenizer is not None and not isinstance(tokenizer, (str, DataTokenizer)) \
                and not hasattr(tokenizer, "backend_tokenizer"):
            raise TypeError("tokenizer= must be a fast tokenizer or its tokenizer.json string")
        self.split, self.seq_len = split, int(seq_len)
        self.num_tokens = None if num_tokens is None else int(num_tokens)
        self.source, self.tokenizer_name, self.vocab_size = source, tokenizer_name, vocab_size
        self.spec = SourceSpec.parse(source)  # raises ValueError on an unknown source kind
        self.cache_dir = default_cache_dir(cache_dir)
        self.stories_per_shard, self.tokenizer_train_stories = stories_per_shard, tokenizer_train_stories
        self._tokenizer_arg = tokenizer
        self._tok: DataTokenizer | None = None
        self._shard_dir: Path | None = None
        self._arrays: list[np.ndarray] = []
        self._ends = np.zeros(0, dtype=np.int64)  # cumulative tokens at the end of each shard
        self._len = 0
        self._exhausted = False
        self._prepared = False

    # ------------------------------------------------------------------ preparation
    def prepare_data(self) -> TinyStoriesDataset:
        """Resolve the tokenizer and prepare (or open) the needed shards. Idempotent."""
        if self._prepared:
            return self
        self._tok = resolve_tokenizer(self.source, self.cache_dir, self.tokenizer_name, self.vocab_size,
                                      self._tokenizer_arg, self.tokenizer_train_stories)
        self._tokenizer_arg = None  # keep one copy (the DataTokenizer) for pickling
        store = ShardStore(self.cache_dir, self.spec, self.split, self._tok, self.stories_per_shard)
        self._shard_dir = store.dir
        arrays, self._exhausted = store.prepare_until(self.num_tokens)
        self._set_arrays(arrays)
        self._prepared = True
        return self

    def _set_arrays(self, arrays: list[np.ndarray]) -> None:
        self._arrays = arrays
        self._ends = np.cumsum([a.size for a in arrays], dtype=np.int64)
        total = int(self._ends[-1]) if arrays else 0
        usable = total if self.num_tokens is None else min(total, self.num_tokens)
        self._len = usable // self.seq_len

    def _ready(self) -> None:
        if not self._prepared:
            self.prepare_data()

    # ------------------------------------------------------------------ properties
    @property
    def data_tokenizer(self) -> DataTokenizer:
        self._ready()
        assert self._tok is not None
        return self._tok

    @property
    def tokenizer(self) -> Any:
        """The tokenizer as a ``PreTrainedTokenizerFast`` (built on each access)."""
        return self.data_tokenizer.to_transformers()

    @property
    def tokenizer_fingerprint(self) -> str:
        return self.data_tokenizer.fingerprint

    @property
    def eos_token_id(self) -> int:
        return self.data_tokenizer.eos_id

    @property
    def vocab_size_actual(self) -> int:
        """Embedding rows the model needs (tokenizer size including EOS)."""
        return self.data_tokenizer.vocab_size

    @property
    def shard_dir(self) -> Path:
        self._ready()
        assert self._shard_dir is not None
        return self._shard_dir

    @property
    def num_tokens_available(self) -> int:
        """Tokens reachable through the windows: ``len(self) * seq_len``."""
        self._ready()
        return self._len * self.seq_len

    @property
    def split_exhausted(self) -> bool:
        """True when the split ended before ``num_tokens`` (or ``num_tokens`` is None)."""
        self._ready()
        return self._exhausted

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        self._ready()
        return self._len

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"index must be an integer, got {type(i).__name__}")
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"window {i} out of range for {n} windows")
        x = self.get_batch([int(i) % n])[0]
        return x, x.clone()

    def get_batch(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """Windows ``indices`` as one ``LongTensor (B, seq_len)``: vectorised gathers, one
        per shard touched (not per item), and one ``torch.from_numpy``."""
        self._ready()
        idx = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self._len):
            raise IndexError(f"window indices must be in [0, {self._len}), got [{idx.min()}, {idx.max()}]")
        L = self.seq_len
        out = np.empty((idx.size, L), dtype=np.int64)
        starts = idx * L
        first = np.searchsorted(self._ends, starts, side="right")  # shard holding each window's start
        last = np.searchsorted(self._ends, starts + L - 1, side="right")
        offsets = np.arange(L, dtype=np.int64)
        base = np.concatenate(([0], self._ends[:-1]))
        within = first == last
        for s in np.unique(first[within]):
            rows = np.flatnonzero(within & (first == s))
            out[rows] = self._arrays[s][(starts[rows] - base[s])[:, None] + offsets]
        for r in np.flatnonzero(~within):  # at most one window per shard boundary
            out[r] = self._stream_slice(int(starts[r]), int(starts[r]) + L)
        return torch.from_numpy(out)

    def _stream_slice(self, a: int, b: int) -> np.ndarray:
        """Tokens ``[a, b)`` of the prepared stream, across shard boundaries."""
        base = np.concatenate(([0], self._ends[:-1]))
        parts = []
        for s in range(int(np.searchsorted(self._ends, a, side="right")), len(self._arrays)):
            if base[s] >= b:
                break
            parts.append(self._arrays[s][max(a - base[s], 0): min(b - base[s], self._arrays[s].size)])
        return np.concatenate(parts).astype(np.int64)

    def tokens(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Tokens ``[start, stop)`` of the usable stream (default: all ``len*seq_len``)."""
        self._ready()
        stop = self.num_tokens_available if stop is None else min(stop, self.num_tokens_available)
        return self._stream_slice(start, stop) if stop > start else np.zeros(0, dtype=np.int64)

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        # memmaps would pickle as full copies: drop them, re-open (verified) on first use.
        state = self.__dict__.copy()
        state.update(_arrays=[], _ends=np.zeros(0, dtype=np.int64), _len=0, _prepared=False,
                     _tokenizer_arg=self._tok if self._tok is not None else self._tokenizer_arg, _tok=None)
        return state

    def __repr__(self) -> str:
        return (f"TinyStoriesDataset(split={self.split!r}, seq_len={self.seq_len}, source={self.source!r}, "
                f"num_tokens={self.num_tokens}, windows={self._len if self._prepared else '?'})")


def validation_set(source: Any = HUB_DATASET, cache_dir: str | os.PathLike[str] | None = None, tokenizer: Any = None,
                   seq_len: int = 256, num_tokens: int = 1_000_000, **kwargs: Any) -> TinyStoriesDataset:
    """The fixed held-out set: the first ``num_tokens`` tokens of the validation split,
    identical for every trial that uses the same tokenizer. Prepared on return."""
    return TinyStoriesDataset("validation", seq_len, cache_dir, source=source, num_tokens=num_tokens,
                              tokenizer=tokenizer, **kwargs).prepare_data()


def _bench(cache_dir: str, num_tokens: int = 4_000_000, seq_len: int = 256) -> None:  # pragma: no cover
    """``python -m flops_fit.data.tinystories [cache_dir]``: default tokenizer training,
    shard preparation, cached re-open and ``get_batch`` throughput on the offline sample."""
    import time

    from flops_fit.data import shards

    t = time.perf_counter()
    tok = resolve_tokenizer("sample", cache_dir)
    print(f"default tokenizer (vocab {tok.vocab_size}): {time.perf_counter() - t:.1f} s (trained or loaded)")
    spent, real = [0.0, 0], shards.tokenize_stories

    def timed(*args: Any) -> np.ndarray:
        t0 = time.perf_counter()
        out = real(*args)
        spent[0] += time.perf_counter() - t0
        spent[1] += out.size
        return out

    shards.tokenize_stories = timed
    kw = dict(cache_dir=cache_dir, source="sample", num_tokens=num_tokens, tokenizer=tok.json)
    t = time.perf_counter()
    ds = TinyStoriesDataset("train", seq_len, **kw).prepare_data()
    wall = time.perf_counter() - t
    if spent[1]:
        print(f"prepared {spent[1] / 1e6:.2f}M tokens in {wall:.1f} s ({spent[1] / wall / 1e6:.2f}M tok/s end to end, "
              f"tokenizer alone {spent[1] / spent[0] / 1e6:.2f}M tok/s)")
    t = time.perf_counter()
    TinyStoriesDataset("train", seq_len, **kw).prepare_data()
    print(f"re-open {len(ds._arrays)} cached shards with sha256 check: {(time.perf_counter() - t) * 1e3:.0f} ms")
    rng = np.random.default_rng(0)
    for b in (16, 64):
        batches = [rng.integers(0, len(ds), b) for _ in range(200)]
        t = time.perf_counter()
        for idx in batches:
            ds.get_batch(idx)
        dt = (time.perf_counter() - t) / len(batches)
        print(f"get_batch({b} x {seq_len}): {dt * 1e6:.0f} us = {b * seq_len / dt / 1e6:.0f}M tok/s")


if __name__ == "__main__":  # pragma: no cover
    import sys
    import tempfile

    _bench(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp())
