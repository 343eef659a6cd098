"""Cached token shards of one split: cut, tokenized once, verified on every open.

A split is cut into fixed contiguous blocks of ``stories_per_shard`` stories, so shard k is
the same tokens on every machine. Each shard is tokenized once and stored as
``shard-XXXXX.bin`` (flat uint16/uint32 tokens, each story followed by EOS) plus a JSON
manifest, in a directory named by a hash of (source, split, tokenizer, shard size,
format): no user-supplied name ever becomes a path. Writes are atomic (temp file in the
same directory, fsync, ``os.replace``; the manifest is written last and is the commit
marker) and serialised per shard by a ``FileLock``. Every open re-checks the manifest,
the file size and the sha256 of the token bytes (~2 ms per 1.4M-token shard, 1.5 GB/s), so a
truncated or corrupted shard is rebuilt, never read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from flops_fit.atomic import atomic_write
from flops_fit.data.sources import LOCK_TIMEOUT_S, SourceSpec, StorySource, source_key
from flops_fit.data.tokenizer import DataTokenizer, progress_enabled

FORMAT_VERSION = 1
# ~1.2M tokens per shard on TinyStories-like text: big enough that a trial opens few
# files, small enough that a tiny budget prepares seconds of work, not the whole split.
STORIES_PER_SHARD = 4096


@dataclass(frozen=True)
class ShardManifest:
    """What a ``shard-XXXXX.json`` holds; written after the token file, as its commit marker."""

    format_version: int
    source: str
    split: str
    tokenizer: str  # sha256 fingerprint of the canonical tokenizer.json
    eos_id: int
    stories_per_shard: int
    shard_index: int
    story_start: int
    story_end: int
    final: bool  # the last shard of the split
    num_tokens: int
    dtype: str
    sha256: str  # of the token bytes


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def tokenize_stories(backend: Any, stories: list[str], dtype: np.dtype) -> np.ndarray:
    """One flat token array: every story then EOS (the canonical tokenizer's post-processor
    appends it), batched through the Rust tokenizer. Module-level so tests can count calls."""
    ids = [e.ids for e in backend.encode_batch_fast(stories, add_special_tokens=True)]
    return np.fromiter(itertools.chain.from_iterable(ids), dtype=dtype, count=sum(map(len, ids)))


class ShardStore:
    """The token shards of one (source, split, tokenizer, shard size) in one directory."""

    def __init__(self, cache_dir: Path, spec: SourceSpec, split: str, tok: DataTokenizer,
                 stories_per_shard: int = STORIES_PER_SHARD) -> None:
        self.spec, self.split, self.tok, self.stories_per_shard = spec, split, tok, stories_per_shard
        self.source_key = source_key(spec, split)
        identity = json.dumps([FORMAT_VERSION, self.source_key, split, tok.fingerprint, tok.eos_id, stories_per_shard])
        self.dir = Path(cache_dir) / "tokens" / hashlib.sha256(identity.encode()).hexdigest()[:32]
        self._source = StorySource(spec, split, Path(cache_dir) / "hf")

    def _paths(self, k: int) -> tuple[Path, Path, Path]:
        stem = self.dir / f"shard-{k:05d}"
        return stem.with_suffix(".bin"), stem.with_suffix(".json"), stem.with_suffix(".lock")

    def open(self, k: int) -> tuple[np.ndarray, ShardManifest] | None:
        """The verified shard k, or None if missing, truncated, corrupted or foreign."""
        bin_path, man_path, _ = self._paths(k)
        try:
            man = ShardManifest(**json.loads(man_path.read_text()))
            size = bin_path.stat().st_size
        except (OSError, ValueError, TypeError):
            return None
        expect = (FORMAT_VERSION, self.source_key, self.split, self.tok.fingerprint, self.tok.eos_id,
                  self.stories_per_shard, k, self.tok.dtype.name)
        got = (man.format_version, man.source, man.split, man.tokenizer, man.eos_id,
               man.stories_per_shard, man.shard_index, man.dtype)
        if got != expect or size != man.num_tokens * self.tok.dtype.itemsize or _sha256_file(bin_path) != man.sha256:
            return None
        if man.num_tokens == 0:
            return np.zeros(0, dtype=self.tok.dtype), man
        return np.memmap(bin_path, dtype=self.tok.dtype, mode="r"), man

    def prepare(self, k: int) -> tuple[np.ndarray, ShardManifest] | None:
        """Shard k, built once across processes; None if the split has fewer shards."""
        if (hit := self.open(k)) is not None:
            return hit
        self.dir.mkdir(parents=True, exist_ok=True)
        bin_path, man_path, lock_path = self._paths(k)
        with FileLock(str(lock_path), timeout=LOCK_TIMEOUT_S):
            if (hit := self.open(k)) is not None:  # another process built it while we waited
                return hit
            n = len(self._source)
            start = k * self.stories_per_shard
            if start >= n:
                if n == 0:
                    raise ValueError(f"split {self.split!r} of source {self.spec.name!r} has no stories")
                return None
            end = min(n, start + self.stories_per_shard)
            tokens = tokenize_stories(self.tok.backend, self._source.stories(start, end - start), self.tok.dtype)
            man = ShardManifest(FORMAT_VERSION, self.source_key, self.split, self.tok.fingerprint, self.tok.eos_id,
                                self.stories_per_shard, k, start, end, end == n, int(tokens.size),
                                self.tok.dtype.name, hashlib.sha256(tokens.tobytes()).hexdigest())
            atomic_write(bin_path, tokens.tobytes())
            atomic_write(man_path, json.dumps(dataclasses.asdict(man), indent=1).encode())
        hit = self.open(k)
        if hit is None:
            raise OSError(f"shard {k} in {self.dir} failed verification right after it was written")
        return hit

    def prepare_until(self, num_tokens: int | None) -> tuple[list[np.ndarray], bool]:
        """Shards 0, 1, ... in order until they hold ``num_tokens`` (all if None). Returns
        the token arrays and whether the split ran out first."""
        from tqdm.auto import tqdm

        arrays: list[np.ndarray] = []
        total, k = 0, 0
        bar = tqdm(total=num_tokens, unit="tok", unit_scale=True, desc=f"token shards ({self.split})",
                   disable=not progress_enabled(), leave=False)  # shards done, tokens/s, ETA
        with bar:
            while num_tokens is None or total < num_tokens:
                hit = self.prepare(k)
                if hit is None:
                    return arrays, True
                arrays.append(hit[0])
                total += hit[1].num_tokens
                bar.update(hit[1].num_tokens)
                bar.set_postfix(shards=k + 1)
                if hit[1].final:
                    return arrays, num_tokens is None or total < num_tokens
                k += 1
        return arrays, False
