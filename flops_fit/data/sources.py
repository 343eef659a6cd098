"""Where stories come from: the Hugging Face hub, local files, or the offline sample.

A ``SourceSpec`` names a source (a hub id, a local file/glob/directory, a per-split dict,
or ``"sample"``); a ``StorySource`` is one split of it with its length known and stories
read by index range. ``source_key`` is the content identity the shard cache is keyed by.
"""

from __future__ import annotations

import glob as globlib
import itertools
import json
import os
import re
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

HUB_DATASET = "roneneldan/TinyStories"
SPLITS = ("train", "validation")
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
        from flops_fit.data import sample

        return f"{sample.SAMPLE_NAME}:{split}"
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


#: Above this fraction of stories without text (null, or a row with another key than the text
#: column) a source is refused; below it the loss is stated.
MAX_MISSING_TEXT = 0.05


def _text_column(ds: Any, where: str) -> str:
    strings = [c for c, f in ds.features.items() if getattr(f, "dtype", None) in {"string", "large_string"}]
    if "text" in ds.column_names:
        dtype = getattr(ds.features["text"], "dtype", None)
        if dtype not in {"string", "large_string", "null"}:
            raise ValueError(f"{where}: the 'text' column holds {dtype} values, not text; "
                             "write each story as a JSON string")
        return "text"
    if len(strings) == 1:
        return strings[0]
    raise ValueError(f"{where}: need a 'text' column (or exactly one string column); columns are {ds.column_names}")


def _check_files(files: list[Path], where: str) -> None:
    """Empty or non-UTF-8 files are refused by name before ``datasets`` turns them into a
    SchemaInferenceError, StopIteration or UnicodeDecodeError deep in its builder."""
    for f in files:
        if f.stat().st_size == 0:
            raise ValueError(f"{where}: {f} is empty; add stories to it or remove it")
        if f.suffix in (".txt", ".jsonl", ".json"):
            with open(f, "rb") as fh:
                data = fh.read()
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{where}: {f} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                                 f"re-encode it, e.g. iconv -f latin1 -t utf-8 {f.name}") from None
            if not data.strip():
                raise ValueError(f"{where}: {f} holds only whitespace; add stories to it or remove it")


def _check_missing_text(ds: Any, col: str, where: str) -> None:
    """Stories without text (null, or rows that used another key) would train as empty
    strings without a word: stated, and refused above ``MAX_MISSING_TEXT``."""
    missing = int(ds.data.column(col).null_count)
    if not missing:
        return
    others = [c for c in ds.column_names if c != col]
    hint = f" (rows with another key: columns are {ds.column_names})" if others else ""
    text = f"{where}: {missing:,} of {len(ds):,} stories have no '{col}'{hint}"
    if missing > MAX_MISSING_TEXT * len(ds):
        raise ValueError(f"{text}; more than {MAX_MISSING_TEXT:.0%} is refused: fix the file")
    print(f"note: {text}; they are skipped as empty", file=sys.stderr)


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


def _broken_arrow_dirs(hf_cache: Path) -> list[Path]:
    """Builder directories under the ``datasets`` cache holding an Arrow file that does not
    read back whole (a truncated write, a damaged disk)."""
    import pyarrow as pa

    broken = set()
    for path in hf_cache.rglob("*.arrow"):
        try:
            with pa.memory_map(str(path)) as source:
                pa.ipc.open_stream(source).read_all()
        except (pa.ArrowInvalid, OSError):
            broken.add(path.parent)
    return sorted(broken)


def _with_cache_repair(build: Any, hf_cache: Path, where: str) -> Any:
    """``build()``; when it fails on a damaged ``datasets`` cache, the damaged builder
    directories are removed and it runs once more (the cache is rebuilt like a bad shard).
    Otherwise the error names the cache directory and the fix instead of blaming the source."""
    import shutil

    try:
        return build()
    except Exception as exc:  # noqa: BLE001 - datasets raises many types for one damaged cache
        first = exc
    broken = _broken_arrow_dirs(hf_cache) if hf_cache.exists() else []
    for d in broken:
        shutil.rmtree(d, ignore_errors=True)
    if broken:
        print(f"note: {where}: rebuilt {len(broken)} damaged datasets cache dir(s) under {hf_cache}", file=sys.stderr)
        try:
            return build()
        except Exception as exc:  # noqa: BLE001
            first = exc
    raise ValueError(f"{where} cannot be read ({type(first).__name__}: {str(first).splitlines()[0] if str(first) else ''}); "
                     f"if its datasets cache {hf_cache} is damaged, delete that directory and rerun") from first


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
            _check_files(files, f"local source {self.spec.name!r}")
            kind = _EXTENSIONS[files[0].suffix]
            names = [str(f) for f in files]
            def build() -> Any:
                if kind == "text":
                    stamps = [(f.stat().st_size, f.stat().st_mtime_ns) for f in files]
                    return datasets.Dataset.from_generator(
                        _txt_stories, gen_kwargs={"files": names, "stamps": stamps}, cache_dir=str(self.hf_cache))
                return datasets.load_dataset(kind, data_files=names, split="train", cache_dir=str(self.hf_cache))

            ds = _with_cache_repair(build, self.hf_cache, f"local source {self.spec.name!r}")
            if carve:
                n_val = holdout_size(len(ds))
                if len(ds) < 2:
                    raise ValueError(f"local source {self.spec.name!r} has {len(ds)} stories; "
                                     "need 2+ to carve a validation split")
                self._offset = 0 if self.split == "train" else len(ds) - n_val
                self._len = len(ds) - n_val if self.split == "train" else n_val
            self._ds = ds
        self._col = _text_column(self._ds, self.spec.name)
        if self.spec.kind != "hub":
            _check_missing_text(self._ds, self._col, f"local source {self.spec.name!r}")
        self._ds = self._ds.select_columns([self._col])

    def __len__(self) -> int:
        if self.spec.kind == "sample":
            from flops_fit.data import sample

            return int(sample.SPLIT_SIZES[self.split])
        self._load()
        return self._len if self._len is not None else len(self._ds)

    def stories(self, start: int, count: int) -> list[str]:
        count = max(0, min(count, len(self) - start))
        if self.spec.kind == "sample":
            from flops_fit.data import sample

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
