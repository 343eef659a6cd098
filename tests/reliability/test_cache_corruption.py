"""Fault 6: a truncated or corrupted tokenizer file is detected and rebuilt, never used.

(Token shards: tests/test_tinystories.py::test_corrupted_shard_is_rebuilt covers truncation,
flipped bytes, a torn manifest and a missing file; here the tokenizer files, which that test
does not damage.) The cache keys a tokenizer by the sha256 of its canonical JSON, so any
change to the bytes is a mismatch.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from flops_fit.data import tokenizer as tkz

KW = dict(vocab_size=300, train_stories=100)


def _damage(path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flip":  # still valid JSON: one vocabulary entry renamed
        text = data.decode()
        i = text.index('"vocab":{') + len('"vocab":{"')
        path.write_text(text[:i] + ("X" if text[i] != "X" else "Y") + text[i + 1:])
    elif how == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()


@pytest.mark.parametrize("how", ["truncate", "flip", "empty", "missing"])
def test_damaged_default_tokenizer_is_retrained_not_used(tmp_path, monkeypatch, how):
    tok = tkz.load_tokenizer("sample", tmp_path, **KW)
    fp = tkz.tokenizer_fingerprint(tok)
    path = tmp_path / "tokenizers" / fp / "tokenizer.json"
    good = path.read_bytes()
    _damage(path, how)
    trained = []
    real = tkz.train_bpe
    monkeypatch.setattr(tkz, "train_bpe", lambda *a, **k: trained.append(1) or real(*a, **k))
    again = tkz.load_tokenizer("sample", tmp_path, **KW)
    assert trained == [1]  # detected and rebuilt, never silently used
    assert tkz.tokenizer_fingerprint(again) == fp and path.read_bytes() == good


def test_damaged_recipe_index_is_rebuilt(tmp_path, monkeypatch):
    tkz.load_tokenizer("sample", tmp_path, **KW)
    (recipe,) = (tmp_path / "tokenizers" / "recipes").glob("*.json")
    recipe.write_text('{"fingerprint": "')  # torn
    again = tkz.load_tokenizer("sample", tmp_path, **KW)
    assert json.loads(recipe.read_text())["fingerprint"] == tkz.tokenizer_fingerprint(again)


@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_worker_rewrites_a_damaged_shipped_tokenizer(tmp_path, how):
    """A worker materialises the driver's tokenizer JSON in its own cache; a damaged copy
    there is overwritten from the shipped string (checked by hash), not loaded."""
    js = tkz.tokenizer_json(tkz.load_tokenizer("sample", tmp_path / "driver", **KW))
    fp = tkz.tokenizer_fingerprint(js)
    first = tkz.resolve_tokenizer("sample", tmp_path / "worker", tokenizer=js)
    path = tmp_path / "worker" / "tokenizers" / fp / "tokenizer.json"
    _damage(path, how)
    again = tkz.resolve_tokenizer("sample", tmp_path / "worker", tokenizer=js)
    assert first.fingerprint == again.fingerprint == fp
    assert hashlib.sha256(path.read_bytes()).hexdigest() == fp
