"""Where TinyStories text comes from, and how it is cut into cached token shards.

Sources (hub, local files, the offline sample): see ``flops_fit.examples.tinystories``.

Shards: a split is cut into fixed contiguous blocks of ``stories_per_shard`` stories, so
shard k is the same tokens on every machine. Each shard is tokenized once and stored as
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
import glob as globlib
import hashlib
import itertools
import json
import os
import re
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from filelock import FileLock

from flops_fit.atomic import atomic_write

if TYPE_CHECKING:
    from flops_fit.examples.tokenizer import DataTokenizer

HUB_DATASET = "roneneldan/TinyStories"
SPLITS = ("train", "validation")
FORMAT_VERSION = 1
# ~1.2M tokens per shard on TinyStories-like text: big enough that a trial opens few
# files, small enough that a tiny budget prepares seconds of work, not the whole split.
STORIES_PER_SHARD = 4096
LOCK_TIMEOUT_S = 1800.0
HUB_PROBE_TIMEOUT_S = 3.0
_EXTENSIONS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".txt": "text"}
_SPLIT_WORDS = {"train": ("train",), "validation": ("validation", "valid", "val", "dev")}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_ALTERNATIVES = ("Use source='sample' for the built-in offline synthetic corpus, or point source= at local "
                 ".parquet/.jsonl/.txt files (a file, a glob, a directory with train*/validation* files, or "
                 "a dict {'train': ..., 'validation': ...}).")


class HubUnavailableError(ConnectionError):
    """The Hugging Face hub could not be reached (or the dataset could not be loaded)."""


def holdout_size(num_stories: int) -> int:
    """Stories carved off the tail of a single local corpus as its validation split:
    1% (TinyStories' own ratio is ~1%), at least 1, at most 20,000."""
    return min(20_000, max(1, num_stories // 100))


@dataclass(frozen=True)
class SourceSpec:
    """A classified ``source=`` value. Pure: parsing does no I/O beyond one ``isdir``
    for a relative ``owner/name`` that might be a local directory."""

    kind: Literal["hub", "local", "sample"]
    name: str  # hub id, "sample", or the user's path/glob (repr of the dict for dicts)
    paths: tuple[tuple[str, tuple[str, ...]], ...] = ()  # local: ((split|"*", patterns), ...)

    @classmethod
    def parse(cls, source: Any) -> SourceSpec:
        if isinstance(source, dict):
            bad = set(source) - set(SPLITS)
            if bad or not source:
                raise ValueError(f"source dict keys must be among {SPLITS}, got {sorted(map(str, source))}")
            paths = tuple((s, _patterns(source[s])) for s in SPLITS if s in source)
            return cls("local", repr(source), paths)
        if isinstance(source, os.PathLike):
            return cls("local", os.fspath(source), (("*", (os.fspath(source),)),))
        if not isinstance(source, str) or not source.strip():
            raise ValueError(f"source must be 'sample', a hub dataset id, or local file path(s); got {source!r}")
        if source == "sample":
            return cls("sample", "sample")
        # Path-like spellings are local; so is a relative "owner/name" that exists as a dir.
        looks_local = (source.startswith(("/", ".", "~")) or any(c in source for c in "*?[\\")
                       or Path(source).suffix in _EXTENSIONS or source.count("/") > 1 or ".." in source)
        if looks_local or os.path.isdir(source):
            return cls("local", source, (("*", (source,)),))
        if _HUB_ID.match(source):
            return cls("hub", source)
        raise ValueError(f"unknown source kind {source!r}: not 'sample', a hub id like 'owner/name', "
                         f"or a local path. {_ALTERNATIVES}")


def _patterns(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, (str, os.PathLike)) else list(value)
    if not items or not all(isinstance(x, (str, os.PathLike)) for x in items):
        raise ValueError(f"local source entries must be paths or globs, got {value!r}")
    return tuple(os.fspath(x) for x in items)


def _expand(pattern: str) -> list[Path]:
    p = os.path.expanduser(pattern)
    if os.path.isdir(p):
        found = [Path(f) for f in globlib.glob(os.path.join(globlib.escape(p), "**", "*"), recursive=True)]
    else:
        found = [Path(f) for f in globlib.glob(p, recursive=True)]
    return sorted(f.resolve() for f in found if f.is_file() and f.suffix in _EXTENSIONS)


def _split_of(path: Path) -> str | None:
    words = set(re.split(r"[-_.\s]+", path.name.lower()))
    words |= {re.sub(r"\d+$", "", w) for w in words}
    for split, names in _SPLIT_WORDS.items():
        if words & set(names):
            return split
    return None


def local_files(spec: SourceSpec, split: str) -> tuple[list[Path], bool]:
    """The files holding ``split`` of a local source, and whether the split must be
    carved from a single corpus (train = all but the tail, validation = the tail)."""
    explicit = dict(spec.paths)
    if "*" not in explicit:  # a dict source: each split names its own files
        if split not in explicit:
            raise ValueError(f"local source {spec.name} has no {split!r} entry")
        files = sorted({f for pat in explicit[split] for f in _expand(pat)})
        carve = False
    else:
        every = sorted({f for pat in explicit["*"] for f in _expand(pat)})
        named = [f for f in every if _split_of(f) == split]
        carve = not any(_split_of(f) for f in every)
        files = every if carve else named
    if not files:
        raise FileNotFoundError(f"no .parquet/.jsonl/.json/.txt files for split {split!r} in local source "
                                f"{spec.name!r}. {_ALTERNATIVES}")
    kinds = {_EXTENSIONS[f.suffix] for f in files}
    if len(kinds) > 1:
        raise ValueError(f"split {split!r} mixes file kinds {sorted(kinds)}; use one kind per split")
    return files, carve


def source_key(spec: SourceSpec, split: str) -> str:
    """Stable identity of one split's stories; the cache is keyed by its hash. Local files
    count by resolved path, size and mtime, so an edited file invalidates its shards."""
    if spec.kind == "sample":
        from flops_fit.examples import sample

        return f"sample:{sample.SAMPLE_VERSION}:{split}"
    if spec.kind == "hub":
        return f"hub:{spec.name}:{split}"
    files, carve = local_files(spec, split)
    stats = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return "local:" + json.dumps({"split": split, "carve": carve, "files": stats}, sort_keys=True)


def _hub_offline() -> bool:
    from huggingface_hub import constants  # what datasets itself obeys

    return bool(constants.HF_HUB_OFFLINE)


def _probe_hub() -> str | None:
    """None if the hub endpoint accepts a TCP connection within a few seconds, else why
    not. huggingface_hub alone retries a dead network for ~25 s before giving up. DNS
    runs in a daemon thread because getaddrinfo ignores socket timeouts. Behind a proxy
    we cannot tell, so we do not probe."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    result: list[str | None] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT_S).close()
            result.append(None)
        except OSError as e:
            result.append(f"{type(e).__name__}: {e}")

    (t := threading.Thread(target=attempt, daemon=True)).start()
    t.join(HUB_PROBE_TIMEOUT_S + 1.0)
    return result[0] if result else f"no answer from {host}:{port} in {HUB_PROBE_TIMEOUT_S + 1:.0f} s"


def _text_column(ds: Any, where: str) -> str:
    if "text" in ds.column_names:
        return "text"
    strings = [c for c, f in ds.features.items() if getattr(f, "dtype", None) in {"string", "large_string"}]
    if len(strings) == 1:
        return strings[0]
    raise ValueError(f"{where}: need a 'text' column (or exactly one string column); columns are {ds.column_names}")


def _txt_stories(files: list[str], stamps: list[Any]) -> Any:
    """Generator for ``Dataset.from_generator``; ``stamps`` only keys its cache."""
    for name in files:
        with open(name, encoding="utf-8") as f:
            marker = "<|endoftext|>" in f.read(1 << 20)
            f.seek(0)
            block: list[str] = []
            for line in itertools.chain(f, ["<|endoftext|>" if marker else "\n"]):  # sentinel ends the last story
                if (line.strip() == "<|endoftext|>") if marker else not line.strip():
                    if text := "".join(block).strip():
                        yield {"text": text}
                    block = []
                else:
                    block.append(line)


class StorySource:
    """Opened stories of one split: ``len`` and ``stories(start, count)``. Hub and local
    files load through ``datasets`` (memory-mapped Arrow) on first use only."""

    def __init__(self, spec: SourceSpec, split: str, hf_cache: Path) -> None:
        self.spec, self.split, self.hf_cache = spec, split, hf_cache
        self._ds: Any = None
        self._col = "text"
        self._offset = 0
        self._len: int | None = None

    def _load(self) -> None:
        if self._ds is not None or self.spec.kind == "sample":
            return
        import datasets

        if self.spec.kind == "hub":
            self._ds = _load_hub(self.spec.name, self.split, self.hf_cache)
        else:
            files, carve = local_files(self.spec, self.split)
            kind = _EXTENSIONS[files[0].suffix]
            names = [str(f) for f in files]
            if kind == "text":
                stamps = [(f.stat().st_size, f.stat().st_mtime_ns) for f in files]
                ds = datasets.Dataset.from_generator(_txt_stories, gen_kwargs={"files": names, "stamps": stamps},
                                                     cache_dir=str(self.hf_cache))
            else:
                ds = datasets.load_dataset(kind, data_files=names, split="train", cache_dir=str(self.hf_cache))
            if carve:
                n_val = holdout_size(len(ds))
                if len(ds) < 2:
                    raise ValueError(f"local source {self.spec.name!r} has {len(ds)} stories; "
                                     "need 2+ to carve a validation split")
                self._offset = 0 if self.split == "train" else len(ds) - n_val
                self._len = len(ds) - n_val if self.split == "train" else n_val
            self._ds = ds
        self._col = _text_column(self._ds, self.spec.name)
        self._ds = self._ds.select_columns([self._col])

    def __len__(self) -> int:
        if self.spec.kind == "sample":
            from flops_fit.examples import sample

            return int(sample.SPLIT_SIZES[self.split])
        self._load()
        return self._len if self._len is not None else len(self._ds)

    def stories(self, start: int, count: int) -> list[str]:
        count = max(0, min(count, len(self) - start))
        if self.spec.kind == "sample":
            from flops_fit.examples import sample

            return list(sample.generate_stories(self.split, start, count))
        a = self._offset + start
        return [t or "" for t in self._ds[a : a + count][self._col]]


def _load_hub(name: str, split: str, hf_cache: Path) -> Any:
    import datasets

    if not _hub_offline():
        why = _probe_hub()
        if why is not None:
            raise HubUnavailableError(f"cannot reach the Hugging Face hub to load {name!r} ({why}). {_ALTERNATIVES} "
                                      f"If the dataset is already in {hf_cache}, set HF_HUB_OFFLINE=1 to use it.")
    try:
        return datasets.load_dataset(name, split=split, cache_dir=str(hf_cache))
    except Exception as e:  # noqa: BLE001 - every hub failure gets the same actionable message
        raise HubUnavailableError(f"could not load {name!r} split {split!r} from the Hugging Face hub: {e}. "
                                  f"{_ALTERNATIVES}") from e


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
        arrays: list[np.ndarray] = []
        total, k = 0, 0
        while num_tokens is None or total < num_tokens:
            hit = self.prepare(k)
            if hit is None:
                return arrays, True
            arrays.append(hit[0])
            total += hit[1].num_tokens
            if hit[1].final:
                return arrays, num_tokens is None or total < num_tokens
            k += 1
        return arrays, False
