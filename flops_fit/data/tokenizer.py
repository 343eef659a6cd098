"""The data tokenizer: a small byte-level BPE trained on the corpus, keyed by its content.

Every worker of a sweep must tokenize with the identical tokenizer, or trials would not be
comparable. So a tokenizer is identified by its *content*: the sha256 of its canonical
``tokenizer.json`` (:func:`tokenizer_fingerprint`). Canonical means: the fields that do not
change ``encode`` (truncation, padding) are dropped, the post-processor is set to "append
EOS" (exactly the packing rule: every story ends with EOS), and keys are sorted so the hash
does not depend on Rust hash-map order. The driver calls :func:`load_tokenizer` (trains the
default once, or loads it from ``<cache_dir>/tokenizers``), ships ``tokenizer_json(tok)``
to workers, and each worker re-materialises it under ``<cache_dir>/tokenizers/<sha256>/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from flops_fit.atomic import atomic_write
from flops_fit.data.sources import LOCK_TIMEOUT_S, SourceSpec, StorySource, source_key
from flops_fit.models.gpt_spec import DEFAULT_VOCAB_SIZE

EOS_TOKEN = "<|endoftext|>"
# The default tokenizer trains on this many stories from the start of the train split:
# a fixed sample, so the result depends only on (source, vocab_size). Measured on the offline
# sample at vocab 2048: 1k, 4k and 8k stories give the same compression (4.03 chars/token)
# but train in 0.6, 2.9 and 6.6 s on 2 cores, so 4096.
DEFAULT_TOKENIZER_STORIES = 4096
TOKENIZER_RECIPE_VERSION = 1
_EOS_GUESSES = (EOS_TOKEN, "</s>", "<eos>", "<|end_of_text|>", "<|eot_id|>")


def _eos_post_processor(eos: str, eos_id: int) -> dict[str, Any]:
    a, b = {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}
    e = {"SpecialToken": {"id": eos, "type_id": 0}}
    return {"type": "TemplateProcessing", "single": [a, e], "pair": [a, e, b, e],
            "special_tokens": {eos: {"id": eos, "ids": [eos_id], "tokens": [eos]}}}


def _token_id(obj: dict[str, Any], token: str) -> int | None:
    for t in obj.get("added_tokens") or []:
        if t.get("content") == token:
            return int(t["id"])
    vocab = (obj.get("model") or {}).get("vocab")
    return int(vocab[token]) if isinstance(vocab, dict) and token in vocab else None


def _guess_eos(obj: dict[str, Any]) -> str:
    """EOS of a raw tokenizer.json: the one our canonical post-processor appends, else the
    only special token, else a well-known EOS name."""
    post = obj.get("post_processor") or {}
    if post.get("type") == "TemplateProcessing" and len(post.get("special_tokens") or {}) == 1:
        return next(iter(post["special_tokens"]))
    special = [t["content"] for t in obj.get("added_tokens") or [] if t.get("special")]
    if len(special) == 1:
        return special[0]
    for name in _EOS_GUESSES:
        if name in special:
            return name
    raise ValueError(f"cannot tell the EOS token of this tokenizer (special tokens {special}); pass eos_token=")


def canonical_json(raw: str, eos_token: str | None = None) -> tuple[str, str, int]:
    """(canonical tokenizer.json, eos token, eos id) for any tokenizer.json string."""
    obj = json.loads(raw)
    eos = eos_token or _guess_eos(obj)
    eos_id = _token_id(obj, eos)
    if eos_id is None:
        raise ValueError(f"EOS token {eos!r} is not in the tokenizer's vocabulary")
    obj["truncation"], obj["padding"] = None, None
    obj["post_processor"] = _eos_post_processor(eos, eos_id)
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")), eos, eos_id


@dataclass(frozen=True)
class DataTokenizer:
    """A canonical tokenizer as the data pipeline needs it; pickles as a string."""

    json: str = field(repr=False)
    eos_token: str
    eos_id: int
    fingerprint: str  # sha256 of ``json``
    vocab_size: int
    _backend: list[Any] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def from_json(cls, raw: str, eos_token: str | None = None) -> DataTokenizer:
        from tokenizers import Tokenizer

        text, eos, eos_id = canonical_json(raw, eos_token)
        backend = Tokenizer.from_str(text)
        return cls(text, eos, eos_id, hashlib.sha256(text.encode()).hexdigest(),
                   backend.get_vocab_size(with_added_tokens=True), [backend])

    @classmethod
    def from_any(cls, tok: Any) -> DataTokenizer:
        """From a DataTokenizer, a tokenizer.json string, or a fast transformers tokenizer."""
        if isinstance(tok, DataTokenizer):
            return tok
        if isinstance(tok, str):
            return cls.from_json(tok)
        backend = getattr(tok, "backend_tokenizer", None)
        if backend is None:
            raise TypeError(f"need a fast (Rust-backed) tokenizer or its tokenizer.json string, got {type(tok).__name__}")
        if not getattr(tok, "eos_token", None):
            raise ValueError("the tokenizer has no eos_token; packing joins stories with EOS")
        return cls.from_json(backend.to_str(), tok.eos_token)

    @property
    def backend(self) -> Any:
        """The ``tokenizers.Tokenizer`` (re-parsed after unpickling)."""
        if not self._backend:
            from tokenizers import Tokenizer

            self._backend.append(Tokenizer.from_str(self.json))
        return self._backend[0]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint16 if self.vocab_size < 65536 else np.uint32)

    def __getstate__(self) -> dict[str, Any]:
        return {"json": self.json, "eos_token": self.eos_token, "eos_id": self.eos_id,
                "fingerprint": self.fingerprint, "vocab_size": self.vocab_size}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in {**state, "_backend": []}.items():
            object.__setattr__(self, k, v)

    def to_transformers(self) -> Any:
        from tokenizers import Tokenizer
        from transformers import PreTrainedTokenizerFast

        # Without the EOS-appending post-processor: ``tok(prompt)`` must not end a prompt
        # with EOS. (Only the data pipeline appends it; the fingerprint ignores the field.)
        obj = json.loads(self.json)
        obj["post_processor"] = None
        return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(obj)), eos_token=self.eos_token)

    def save(self, cache_dir: Path) -> Path:
        """Write to ``<cache_dir>/tokenizers/<fingerprint>/`` (idempotent, atomic). The dir
        also loads with ``AutoTokenizer.from_pretrained``."""
        d = Path(cache_dir) / "tokenizers" / self.fingerprint
        path = d / "tokenizer.json"
        if path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == self.fingerprint:
            return d
        d.mkdir(parents=True, exist_ok=True)
        config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": self.eos_token}
        atomic_write(d / "tokenizer_config.json", json.dumps(config, indent=1).encode())
        atomic_write(path, self.json.encode())
        return d


def tokenizer_fingerprint(tok: Any) -> str:
    """sha256 of the canonical tokenizer.json of a tokenizer (or of its JSON string)."""
    return DataTokenizer.from_any(tok).fingerprint


def tokenizer_json(tok: Any) -> str:
    """The canonical tokenizer.json string: what the driver ships to workers."""
    return DataTokenizer.from_any(tok).json


def progress_enabled() -> bool:
    """Progress bars for long data work (tokenizer training, shard preparation), as
    ``datasets`` shows them: only on a terminal, and never with FLOPS_FIT_QUIET=1."""
    if os.environ.get("FLOPS_FIT_QUIET", "").strip() not in ("", "0"):
        return False
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def train_bpe(stories: list[str], vocab_size: int = DEFAULT_VOCAB_SIZE) -> Any:
    """Byte-level BPE (GPT-2 style: no unknown tokens, lossless decode) with one special
    token, EOS. Deterministic for a given input and ``tokenizers`` version."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS_TOKEN], show_progress=progress_enabled(),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(stories, trainer=trainer)
    return tok


def default_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``cache_dir``, else ``$FLOPS_FIT_CACHE``, else ``~/.cache/flops_fit`` (no I/O)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get("FLOPS_FIT_CACHE") or "~/.cache/flops_fit").expanduser()


def _load_named(name: str, cache_dir: Path) -> DataTokenizer:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(name, cache_dir=str(cache_dir / "hf"), trust_remote_code=False, use_fast=True)
    except Exception as e:  # noqa: BLE001 - one clear message for missing/offline/invalid names
        raise OSError(f"cannot load tokenizer {name!r} (a Hugging Face tokenizer id or local directory): {e}. "
                      "Leave tokenizer_name=None to train the default BPE on the corpus.") from e
    return DataTokenizer.from_any(tok)


def resolve_tokenizer(source: Any, cache_dir: str | os.PathLike[str] | None = None, tokenizer_name: str | None = None,
                      vocab_size: int = DEFAULT_VOCAB_SIZE, tokenizer: Any = None,
                      train_stories: int = DEFAULT_TOKENIZER_STORIES) -> DataTokenizer:
    """The DataTokenizer a dataset uses: ``tokenizer`` if given (saved into the cache, keyed
    by hash), else ``tokenizer_name``, else the default BPE trained on the train split."""
    cache = default_cache_dir(cache_dir)
    if tokenizer is not None:
        tok = DataTokenizer.from_any(tokenizer)
        tok.save(cache)
        return tok
    if tokenizer_name is not None:
        return _load_named(tokenizer_name, cache)
    spec = SourceSpec.parse(source)
    recipe = {"version": TOKENIZER_RECIPE_VERSION, "source": source_key(spec, "train"), "vocab_size": vocab_size,
              "stories": train_stories, "eos": EOS_TOKEN}
    rid = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:32]
    recipes = cache / "tokenizers" / "recipes"

    def cached() -> DataTokenizer | None:
        try:
            fp = json.loads((recipes / f"{rid}.json").read_text())["fingerprint"]
            text = (cache / "tokenizers" / fp / "tokenizer.json").read_text(encoding="utf-8")
            tok = DataTokenizer.from_json(text, EOS_TOKEN)
        except Exception:  # unreadable, or unparsable (tokenizers raises a bare Exception): retrain
            return None
        return tok if tok.fingerprint == fp else None  # edited or corrupted: retrain

    if (tok := cached()) is not None:
        return tok
    recipes.mkdir(parents=True, exist_ok=True)
    with FileLock(str(recipes / f"{rid}.lock"), timeout=LOCK_TIMEOUT_S):
        if (tok := cached()) is not None:
            return tok
        stories = StorySource(spec, "train", cache / "hf").stories(0, train_stories)
        if not stories:
            raise ValueError(f"source {spec.name!r} has no training stories to train a tokenizer on")
        tok = DataTokenizer.from_json(train_bpe(stories, vocab_size).to_str(), EOS_TOKEN)
        tok.save(cache)
        atomic_write(recipes / f"{rid}.json", json.dumps({"fingerprint": tok.fingerprint, "recipe": recipe}).encode())
    return tok


def load_tokenizer(source: Any = "roneneldan/TinyStories", cache_dir: str | os.PathLike[str] | None = None,
                   tokenizer_name: str | None = None, vocab_size: int = DEFAULT_VOCAB_SIZE,
                   train_stories: int = DEFAULT_TOKENIZER_STORIES) -> Any:
    """A ``PreTrainedTokenizerFast`` for ``source``: the named one, or the default BPE
    (trained once per (source, vocab_size), then loaded from the cache). Call it on the
    driver and ship ``tokenizer_json(tok)`` to workers as ``TinyStoriesDataset(tokenizer=...)``."""
    tok = resolve_tokenizer(source, cache_dir, tokenizer_name, vocab_size, None, train_stories)
    return tok.to_transformers()
