"""TinyStories pipeline: real datasets/tokenizers/pyarrow on files in tmp_path, no network.

Top-level imports stay light (no torch): the concurrency test's spawned workers import
this module.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest

from flops_fit.data import sample, shards, sources
from flops_fit.data import tokenizer as tkz
from flops_fit.data.shards import ShardStore
from flops_fit.data.sources import HubUnavailableError, SourceSpec
from flops_fit.data.tokenizer import DataTokenizer


@pytest.fixture
def TS():
    from flops_fit.data.tinystories import TinyStoriesDataset

    return TinyStoriesDataset


def expected_stream(tok_json: str, stories: list[str]) -> np.ndarray:
    """The packing rule, computed independently through the transformers wrapper."""
    tok = DataTokenizer.from_json(tok_json).to_transformers()
    ids: list[int] = []
    for s in stories:
        ids += tok(s, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    return np.asarray(ids, dtype=np.int64)


def count_tokenize(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = shards.tokenize_stories

    def counting(backend, stories, dtype):
        calls.append(len(stories))
        return real(backend, stories, dtype)

    monkeypatch.setattr(shards, "tokenize_stories", counting)
    return calls


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


# ---------------------------------------------------------------- construction


def test_construct_does_no_io_and_validates(TS, tmp_path, sample_tokenizer_json):
    cache = tmp_path / "cache"
    for source in ("sample", "roneneldan/TinyStories", str(tmp_path / "nothing-*.parquet"), {"train": "x.jsonl"}):
        TS("train", 16, cache_dir=cache, source=source)
        TS("validation", 16, cache_dir=cache, source=source, tokenizer=sample_tokenizer_json, num_tokens=100)
    assert not cache.exists()
    with pytest.raises(ValueError, match="split"):
        TS("test", source="sample", cache_dir=cache)
    with pytest.raises(ValueError, match="seq_len"):
        TS("train", 0, source="sample", cache_dir=cache)
    with pytest.raises(ValueError, match="num_tokens"):
        TS("train", 8, source="sample", cache_dir=cache, num_tokens=0)
    for bad in ("not a/valid id!", "", 42, {"test": "x.txt"}):
        with pytest.raises(ValueError):
            TS("train", 8, source=bad, cache_dir=cache)
    with pytest.raises(TypeError):
        TS(source="sample", cache_dir=cache, tokenizer=123)
    assert not cache.exists()


def test_cache_dir_default(TS, monkeypatch, tmp_path):
    monkeypatch.setenv("FLOPS_FIT_CACHE", str(tmp_path / "env"))
    assert TS(source="sample").cache_dir == tmp_path / "env"
    monkeypatch.delenv("FLOPS_FIT_CACHE")
    assert TS(source="sample").cache_dir == Path("~/.cache/flops_fit").expanduser()


# ---------------------------------------------------------------- items, batches, packing


def test_items_shapes_dtypes_labels(TS, sample_data):
    ds = TS("train", 64, source="sample", num_tokens=50_000, **sample_data).prepare_data()
    assert len(ds) == 50_000 // 64 and ds.num_tokens_available == len(ds) * 64 and not ds.split_exhausted
    x, y = ds[3]
    assert x.shape == y.shape == (64,)
    assert str(x.dtype) == str(y.dtype) == "torch.int64"
    assert (x == y).all() and x.data_ptr() != y.data_ptr()
    assert (ds[-1][0] == ds[len(ds) - 1][0]).all()
    with pytest.raises(IndexError):
        ds[len(ds)]
    b = ds.get_batch(np.array([5, 0, 5, len(ds) - 1]))
    assert b.shape == (4, 64) and str(b.dtype) == "torch.int64"
    import torch

    assert torch.equal(b, torch.stack([ds[i][0] for i in (5, 0, 5, len(ds) - 1)]))
    assert torch.equal(ds.get_batch(torch.tensor([1, 2])), ds.get_batch([1, 2]))
    with pytest.raises(IndexError):
        ds.get_batch([0, len(ds)])
    assert ds.get_batch([]).shape == (0, 64)


def test_packing_is_the_eos_joined_stream(TS, sample_data):
    ds = TS("train", 50, source="sample", num_tokens=120_000, **sample_data).prepare_data()
    assert len(ds) > 1000
    # windows cover several 64-story shards; shard 0 does not end on a window boundary,
    # so at least one window straddles two shard files
    assert json.loads((ds.shard_dir / "shard-00000.json").read_text())["num_tokens"] % 50 != 0
    stream = expected_stream(sample_data["tokenizer"], sample.generate_stories("train", 0, 400))
    n = len(ds) * 50
    assert stream.size >= n
    windows = ds.get_batch(np.arange(len(ds))).numpy()
    assert np.array_equal(windows.reshape(-1), stream[:n])
    assert np.array_equal(ds.tokens(), stream[:n])
    eos = ds.eos_token_id
    assert (stream == eos).sum() == 400 and stream[-1] == eos
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(ds), 256)
    assert np.array_equal(ds.get_batch(idx).numpy(), stream[:n].reshape(-1, 50)[idx])
    # pickling (DataLoader workers, Ray) drops the memmaps and re-opens them
    again = pickle.loads(pickle.dumps(ds))
    assert np.array_equal(again.get_batch(idx).numpy(), windows[idx])


def test_validation_set_is_fixed_prefix(TS, sample_data):
    from flops_fit.data.tinystories import validation_set

    v1 = validation_set("sample", seq_len=32, num_tokens=10_000, **sample_data)
    v2 = TS("validation", 32, source="sample", num_tokens=10_000, **sample_data).prepare_data()
    assert len(v1) == 10_000 // 32
    assert np.array_equal(v1.tokens(), v2.tokens())
    stream = expected_stream(sample_data["tokenizer"], sample.generate_stories("validation", 0, 40))
    assert np.array_equal(v1.tokens(), stream[: len(v1) * 32])


# ---------------------------------------------------------------- local sources


def _stories(n: int, split: str = "validation") -> list[str]:
    return sample.generate_stories(split, 0, n)


def test_local_parquet_carves_validation_tail(TS, tmp_path, sample_tokenizer_json):
    import pyarrow as pa
    import pyarrow.parquet as pq

    stories = _stories(300)
    for i in range(2):  # a glob over two files: their concatenation is the corpus
        pq.write_table(pa.table({"id": list(range(150)), "text": stories[150 * i: 150 * (i + 1)]}),
                       tmp_path / f"part{i}.parquet")
    kw = dict(cache_dir=tmp_path / "c", tokenizer=sample_tokenizer_json, stories_per_shard=50)
    tr = TS("train", 16, source=str(tmp_path / "part*.parquet"), **kw).prepare_data()
    va = TS("validation", 16, source=str(tmp_path / "part*.parquet"), **kw).prepare_data()
    n_val = sources.holdout_size(300)
    assert n_val == 3 and tr.split_exhausted and va.split_exhausted
    assert np.array_equal(tr.tokens(), expected_stream(sample_tokenizer_json, stories[:-n_val])[: len(tr) * 16])
    assert np.array_equal(va.tokens(), expected_stream(sample_tokenizer_json, stories[-n_val:])[: len(va) * 16])
    # more tokens asked than the split has: everything, flagged exhausted
    big = TS("train", 16, source=str(tmp_path / "part*.parquet"), num_tokens=10**9, **kw).prepare_data()
    assert big.split_exhausted and len(big) == len(tr)


def test_local_directory_jsonl_and_txt(TS, tmp_path, sample_tokenizer_json):
    train, val = _stories(120, "train"), _stories(30)
    d = tmp_path / "corpus"
    d.mkdir()
    with open(d / "tiny-train.jsonl", "w") as f:
        for s in train:
            f.write(json.dumps({"text": s}) + "\n")
    # TinyStoriesV2-style txt: stories end at a '<|endoftext|>' line; blank lines inside stories
    (d / "tiny-valid.txt").write_text("".join(s + "\n<|endoftext|>\n" for s in val))
    kw = dict(cache_dir=tmp_path / "c", tokenizer=sample_tokenizer_json, stories_per_shard=40)
    tr = TS("train", 16, source=str(d), **kw).prepare_data()
    va = TS("validation", 16, source=str(d), **kw).prepare_data()
    assert np.array_equal(tr.tokens(), expected_stream(sample_tokenizer_json, train)[: len(tr) * 16])
    assert np.array_equal(va.tokens(), expected_stream(sample_tokenizer_json, val)[: len(va) * 16])
    # a plain txt corpus without markers: one story per blank-line-separated paragraph
    flat = [s.replace("\n\n", " ") for s in val]
    (tmp_path / "plain.txt").write_text("\n\n".join(flat) + "\n")
    both = {"train": str(d / "tiny-train.jsonl"), "validation": tmp_path / "plain.txt"}
    va2 = TS("validation", 16, source=both, **kw).prepare_data()
    assert np.array_equal(va2.tokens(), expected_stream(sample_tokenizer_json, flat)[: len(va2) * 16])


# ---------------------------------------------------------------- cache behaviour


def test_cache_reused_without_retokenizing(TS, tmp_path, sample_tokenizer_json, monkeypatch):
    calls = count_tokenize(monkeypatch)
    kw = dict(source="sample", cache_dir=tmp_path / "c", tokenizer=sample_tokenizer_json, stories_per_shard=32)
    a = TS("train", 32, num_tokens=40_000, **kw).prepare_data()
    built = len(calls)
    assert built >= 2 and all(c == 32 for c in calls)
    mtimes = {p: p.stat().st_mtime_ns for p in a.shard_dir.glob("shard-*")}
    b = TS("train", 32, num_tokens=40_000, **kw).prepare_data()
    assert len(calls) == built  # no re-tokenization
    assert {p: p.stat().st_mtime_ns for p in a.shard_dir.glob("shard-*")} == mtimes
    assert np.array_equal(a.tokens(), b.tokens())
    # a bigger budget extends the cache by the missing shards only
    c = TS("train", 32, num_tokens=80_000, **kw).prepare_data()
    assert len(calls) > built and all(p.stat().st_mtime_ns == m for p, m in mtimes.items())
    assert np.array_equal(c.tokens()[: a.num_tokens_available], a.tokens())
    manifest = json.loads((a.shard_dir / "shard-00000.json").read_text())
    assert manifest["dtype"] == "uint16" and manifest["tokenizer"] == a.tokenizer_fingerprint
    assert manifest["sha256"] == hashlib.sha256((a.shard_dir / "shard-00000.bin").read_bytes()).hexdigest()


@pytest.mark.parametrize("damage", ["truncate", "flip", "manifest", "missing"])
def test_corrupted_shard_is_rebuilt(TS, tmp_path, sample_tokenizer_json, monkeypatch, damage):
    kw = dict(source="sample", cache_dir=tmp_path / "c", tokenizer=sample_tokenizer_json, stories_per_shard=32)
    good = TS("train", 32, num_tokens=5_000, **kw).prepare_data()
    want = good.tokens()
    bin_path = good.shard_dir / "shard-00000.bin"
    data = bin_path.read_bytes()
    if damage == "truncate":
        bin_path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        bin_path.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    elif damage == "manifest":
        (good.shard_dir / "shard-00000.json").write_text('{"format_version": 1, "sha2')
    else:
        bin_path.unlink()
    calls = count_tokenize(monkeypatch)
    again = TS("train", 32, num_tokens=5_000, **kw).prepare_data()
    assert calls == [32]
    assert np.array_equal(again.tokens(), want)
    assert bin_path.read_bytes() == data


def _race_worker(cache: str, tok_json: str, barrier, queue) -> None:
    built: list[int] = []
    real = shards.tokenize_stories

    def counting(backend, stories, dtype):
        built.append(1)
        return real(backend, stories, dtype)

    shards.tokenize_stories = counting
    store = ShardStore(Path(cache), SourceSpec.parse("sample"), "train", DataTokenizer.from_json(tok_json), 200)
    barrier.wait()
    tokens, man = store.prepare(0)
    queue.put((hashlib.sha256(np.asarray(tokens).tobytes()).hexdigest(), man.sha256, len(built)))


def test_concurrent_processes_build_one_valid_shard(tmp_path, sample_tokenizer_json):
    ctx = mp.get_context("spawn")
    n = 4
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_race_worker, args=(str(tmp_path), sample_tokenizer_json, barrier, queue))
             for _ in range(n)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in range(n)]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len({r[0] for r in results}) == 1 and all(r[0] == r[1] for r in results)
    assert sum(r[2] for r in results) == 1  # the lock let exactly one process tokenize
    store = ShardStore(tmp_path, SourceSpec.parse("sample"), "train", DataTokenizer.from_json(sample_tokenizer_json), 200)
    assert store.open(0) is not None
    assert sorted(p.name for p in store.dir.iterdir()) == ["shard-00000.bin", "shard-00000.json", "shard-00000.lock"]


# ---------------------------------------------------------------- hub, tokenizer, names


def test_hub_unreachable_fails_fast_naming_alternatives(TS, tmp_path, sample_tokenizer_json, monkeypatch):
    # HF_HUB_OFFLINE=1 (conftest): datasets refuses at once.
    for tok in (sample_tokenizer_json, None):  # data loading, and default-tokenizer training
        t0 = time.perf_counter()
        with pytest.raises(HubUnavailableError) as err:
            TS("validation", 16, cache_dir=tmp_path, tokenizer=tok, source="roneneldan/TinyStories").prepare_data()
        assert time.perf_counter() - t0 < 10
        assert "source='sample'" in str(err.value) and "local" in str(err.value)
    # Online mode with a dead endpoint: our probe answers in seconds instead of ~25 s of
    # huggingface_hub retries (mocked: only the offline flag, and load_dataset must not run).
    import datasets
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("hub was contacted"))
    t0 = time.perf_counter()
    with pytest.raises(HubUnavailableError, match="cannot reach the Hugging Face hub.*source='sample'"):
        TS("train", 16, cache_dir=tmp_path, tokenizer=sample_tokenizer_json, source="roneneldan/TinyStories").prepare_data()
    assert time.perf_counter() - t0 < 10


def test_default_tokenizer_deterministic_cached_and_roundtrips(TS, tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    kw = dict(vocab_size=400, train_stories=200)
    t1 = tkz.load_tokenizer("sample", tmp_path / "a", **kw)
    t2 = tkz.load_tokenizer("sample", tmp_path / "b", **kw)
    fp = tkz.tokenizer_fingerprint(t1)
    assert fp == tkz.tokenizer_fingerprint(t2) and len(fp) == 64
    assert len(t1) == 400 and t1.eos_token == tkz.EOS_TOKEN
    saved = tmp_path / "a" / "tokenizers" / fp / "tokenizer.json"
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == fp  # keyed by content
    # loaded again, not retrained
    monkeypatch.setattr(tkz, "train_bpe", lambda *a, **k: pytest.fail("retrained"))
    assert tkz.tokenizer_fingerprint(tkz.load_tokenizer("sample", tmp_path / "a", **kw)) == fp
    # the JSON string a driver ships round-trips to the same tokenizer
    js = tkz.tokenizer_json(t1)
    assert tkz.tokenizer_fingerprint(js) == fp
    raw = t1.backend_tokenizer.to_str()  # the wrapper's own JSON works too (EOS = its only special token)
    assert tkz.tokenizer_fingerprint(raw) == fp and DataTokenizer.from_json(raw).vocab_size == len(t1)
    back = DataTokenizer.from_json(js).to_transformers()
    text = "Lily saw a big dog. It was happy!"
    assert back(text)["input_ids"] == t1(text)["input_ids"] and back.decode(back(text)["input_ids"]) == text
    assert back(text)["input_ids"][-1] != back.eos_token_id  # prompts do not get EOS appended
    # a worker materialises the shipped string in its own cache, keyed by hash
    small = dict(source="sample", num_tokens=500, stories_per_shard=4)
    ds = TS("validation", 16, cache_dir=tmp_path / "w", tokenizer=js, **small).prepare_data()
    assert ds.tokenizer_fingerprint == fp and (tmp_path / "w" / "tokenizers" / fp / "tokenizer.json").exists()
    # the saved dir is a normal HF tokenizer dir, usable as tokenizer_name
    assert tkz.tokenizer_fingerprint(AutoTokenizer.from_pretrained(str(saved.parent))) == fp
    named = TS("validation", 16, cache_dir=tmp_path / "w", tokenizer_name=str(saved.parent), **small).prepare_data()
    assert np.array_equal(named.tokens(), ds.tokens())
    # tokenizer= wins over tokenizer_name= (a driver resolved the name and shipped the JSON)
    both = TS("validation", 16, cache_dir=tmp_path / "w", tokenizer_name="no/such-tokenizer", tokenizer=js, **small)
    assert both.prepare_data().tokenizer_fingerprint == fp
    # the dataset's default path uses the same cached tokenizer
    dflt = TS("validation", 16, cache_dir=tmp_path / "a", vocab_size=400, tokenizer_train_stories=200,
              **small).prepare_data()
    assert dflt.tokenizer_fingerprint == fp


def test_hostile_names_are_contained(TS, tmp_path, monkeypatch, sample_tokenizer_json):
    work = tmp_path / "a" / "b" / "c"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    cache = work / "cache"
    before = files_under(tmp_path)
    with pytest.raises(FileNotFoundError, match="source='sample'"):
        TS(source="../../x", cache_dir=cache, tokenizer=sample_tokenizer_json).prepare_data()
    for name in ("../../x", "../../../etc/passwd", "..\\..\\x"):
        with pytest.raises(OSError, match="cannot load tokenizer"):
            TS(source="sample", cache_dir=cache, tokenizer_name=name).prepare_data()
    assert SourceSpec.parse("owner/../../x").kind == "local"
    new = files_under(tmp_path) - before
    assert all(p == cache or cache in p.parents for p in new), sorted(map(str, new))
    # a legitimate dataset's shards sit under hash-named dirs inside cache_dir
    ds = TS(source="sample", cache_dir=cache, tokenizer=sample_tokenizer_json, stories_per_shard=8,
            num_tokens=100).prepare_data()
    assert cache.resolve() in ds.shard_dir.resolve().parents
    assert all(len(part) >= 32 for part in ds.shard_dir.relative_to(cache).parts[1:])
    assert os.path.commonpath([cache, *files_under(cache)]) == str(cache)
