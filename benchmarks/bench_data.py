"""Item 2: data pipeline speed. Shard preparation (tokens/s tokenized), the cache on a second
open (nothing re-tokenized), and the loader (``get_batch``) against each preset's step time.

- prepare: a fresh cache, the offline sample source, the default BPE: end-to-end
  ``prepare_data()`` tokens/s (story generation + Rust tokenizer on all cores + write + sha256)
  and the tokenizer alone (``encode_batch_fast`` on the same stories).
- reopen: a second ``prepare_data()`` on the same cache (a second sweep on the node): its
  time and how many times ``tokenize_stories`` ran (must be 0).
- loader: ``get_batch(BatchOrder.indices(step))`` tokens/s at each preset's (batch, seq_len),
  and its share of the step time of that preset's fastest trial (the worst case). CPU
  presets: step time measured with the trainer's step. GPU preset: step time estimated
  as FLOPs/step / (40% of an H100's 989 TFLOP/s bf16 peak) unless a GPU is present, and the
  loader measured as the trainer thread's wait with the CUDA path's background prefetch
  (a sleep of one step time stands in for the GPU).

    python benchmarks/bench_data.py [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, load, median, table  # noqa: E402

H100_BF16_PEAK = 989e12


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--tokens", type=int, default=None, help="tokens to prepare (default 2M, quick 100k)")
    args = p.parse_args(argv)
    n_tokens = args.tokens or (100_000 if args.quick else 2_000_000)
    repeats = 1 if args.quick else 3

    import numpy as np
    import torch

    from flops_fit.config import preset
    from flops_fit.data import shards, sources
    from flops_fit.data.tinystories import TinyStoriesDataset
    from flops_fit.data.tokenizer import resolve_tokenizer
    from flops_fit.planning.grid import plan
    from flops_fit.trainer.batches import BatchOrder, BatchStream

    load_start = load()
    result: dict = {"benchmark": "data", "quick": args.quick, "load_start": load_start}
    vocab = 512 if args.quick else 2048
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        t0 = time.perf_counter()
        tok = resolve_tokenizer("sample", tmp, vocab_size=vocab, train_stories=512 if args.quick else 4096)
        result["tokenizer_train_s"] = time.perf_counter() - t0

        prep, tok_only = [], []
        for r in range(repeats):
            cache = os.path.join(tmp, f"c{r}")
            ds = TinyStoriesDataset("train", 128, cache, source="sample", num_tokens=n_tokens, tokenizer=tok.json,
                                    stories_per_shard=1024 if args.quick else 4096)
            t0 = time.perf_counter()
            ds.prepare_data()
            prep.append(ds.num_tokens_available / (time.perf_counter() - t0))
            stories = sources.StorySource(sources.SourceSpec.parse("sample"), "train", None).stories(0, 1024 if args.quick else 4096)
            t0 = time.perf_counter()
            ids = shards.tokenize_stories(tok.backend, stories, tok.dtype)
            tok_only.append(ids.size / (time.perf_counter() - t0))
        result["prepare_tokens_per_s"] = median(prep)
        result["tokenize_only_tokens_per_s"] = median(tok_only)
        result["prepared_tokens"] = ds.num_tokens_available

        # A second sweep on the same node: same cache, fresh dataset objects.
        calls = {"n": 0}
        real = shards.tokenize_stories

        def counting(*a, **k):
            calls["n"] += 1
            return real(*a, **k)

        shards.tokenize_stories = counting
        try:
            t0 = time.perf_counter()
            again = TinyStoriesDataset("train", 128, os.path.join(tmp, "c0"), source="sample", num_tokens=n_tokens,
                                       tokenizer=tok.json, stories_per_shard=1024 if args.quick else 4096).prepare_data()
            result["reopen_s"] = time.perf_counter() - t0
        finally:
            shards.tokenize_stories = real
        result["reopen_tokenize_calls"] = calls["n"]

        # The loader against each preset's fastest (smallest) trial.
        loader_rows = []
        presets = ["smoke"] if args.quick else ["smoke", "tiny", "tinystories-gpu"]
        for name in presets:
            cfg = preset(name)
            specs = plan(dataclasses.replace(cfg.plan, vocab_size=vocab))
            cuda = bool(cfg.gpus_per_trial) and torch.cuda.is_available()
            worst = None
            for s in {(s.label, s.batch_size): s for s in specs}.values():
                step_tokens = s.batch_size * s.seq_len
                if cfg.gpus_per_trial and not cuda:
                    step_s, how = s.flops_per_token * step_tokens / (0.4 * H100_BF16_PEAK), "estimated (H100, 40% MFU)"
                else:
                    from flops_fit.trainer.throughput import probe_tokens_per_s

                    step_s = step_tokens / probe_tokens_per_s(s, steps=2 if args.quick else 4, threads=int(cfg.cpus_per_trial))
                    how = "measured"
                if worst is None or step_s < worst[1]:
                    worst = (s, step_s, how)
            s, step_s, how = worst
            ds = TinyStoriesDataset("train", s.seq_len, os.path.join(tmp, "c0"), source="sample", num_tokens=n_tokens,
                                    tokenizer=tok.json, stories_per_shard=1024 if args.quick else 4096).prepare_data()
            order = BatchOrder(len(ds), s.batch_size, 0)
            n_steps = 64 if args.quick else 512
            before, after = [], []
            for _ in range(repeats):
                # before: one gather per step (the trainer until BatchStream)
                t0 = time.perf_counter()
                for k in range(n_steps):
                    x = ds.get_batch(order.indices(k))
                before.append((time.perf_counter() - t0) / n_steps)
                # after: the trainer's BatchStream (one gather per chunk of steps)
                # (GPU preset: with the background prefetch the trainer uses on CUDA; the GPU's
                # step is stood in for by a sleep, and only the trainer thread's wait is timed.)
                gpu = bool(cfg.gpus_per_trial)
                stream = BatchStream(ds, order, n_steps, s.seq_len, torch.device("cpu"), prefetch=gpu)
                spent = 0.0
                for k in range(n_steps):
                    t0 = time.perf_counter()
                    x, _ = stream.get(k)
                    spent += time.perf_counter() - t0
                    if gpu:
                        time.sleep(step_s)
                stream.close()
                after.append(spent / n_steps)
            per_step, per_step_before = median(after), median(before)
            assert x.shape == (s.batch_size, s.seq_len)
            loader_rows.append({"preset": name, "trial": f"{s.label} b{s.batch_size} T{s.seq_len}",
                                "loader_ms_per_step": per_step * 1e3, "loader_tokens_per_s": s.batch_size * s.seq_len / per_step,
                                "step_ms": step_s * 1e3, "step_time": how, "loader_frac": per_step / step_s,
                                "per_step_gather_ms": per_step_before * 1e3, "loader_frac_per_step_gather": per_step_before / step_s,
                                "load": load()})
        result["loader"] = loader_rows
        result["loader_frac_max"] = max(r["loader_frac"] for r in loader_rows)
        del again, ds, np
    text = table([{k: result[k] for k in ("tokenizer_train_s", "prepare_tokens_per_s", "tokenize_only_tokens_per_s",
                                           "reopen_s", "reopen_tokenize_calls")}],
                 ["tokenizer_train_s", "prepare_tokens_per_s", "tokenize_only_tokens_per_s", "reopen_s", "reopen_tokenize_calls"])
    text += "\n\n" + table(loader_rows, ["preset", "trial", "step_ms", "per_step_gather_ms", "loader_frac_per_step_gather", "loader_ms_per_step", "loader_tokens_per_s", "loader_frac", "step_time"])
    emit(result, text)
    return result


if __name__ == "__main__":
    main()
