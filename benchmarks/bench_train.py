"""Item 1: training throughput of one trial (tokens/s) and model FLOPs utilisation.

MFU = (FLOPs per token x tokens/s) / peak, FLOPs per token under the attention-inclusive
convention (every weight matmul incl. the head + attention scores: the compute really done),
peak = the fp32 matmul peak (bf16 on CUDA) measured in the same process on the same thread
count, right before each throughput measurement (load from other processes moves both).
Every figure is the median of ``--repeats`` runs. Tiny models also get a profile of where
the time goes (matmuls, the softmax/cross-entropy over the vocabulary, optimizer, the rest).

    python benchmarks/bench_train.py [--quick] [--threads 1 2] [--compile]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, load, median, table  # noqa: E402

from flops_fit.models import gpt_spec as accounting  # noqa: E402
from flops_fit.models.gpt_spec import ModelShape  # noqa: E402


def shape(d: int, layers: int, vocab: int, seq: int) -> ModelShape:
    heads = max(1, round(d / 64))
    return ModelShape(vocab, d, layers, heads, accounting.swiglu_hidden(d), seq)


#: (label, shape, batch): the reference model of the issue, wider ones, and the distinct
#: shapes of the CPU preset ``tiny`` (its batch sizes, seq 128, vocab 2048).
FULL = [
    ("ref 256x4 T256", shape(256, 4, 4096, 256), 16),
    ("384x6 T256", shape(384, 6, 4096, 256), 16),
    ("512x8 T256", shape(512, 8, 4096, 256), 8),
    ("tiny 16x1", shape(16, 1, 2048, 128), 16),
    ("tiny 50x1", shape(50, 1, 2048, 128), 16),
    ("tiny 86x2", shape(86, 2, 2048, 128), 32),
    ("tiny 120x2", shape(120, 2, 2048, 128), 16),
    ("tiny 162x1", shape(162, 1, 2048, 128), 32),
]
QUICK = [("ref 64x2 T64", shape(64, 2, 512, 64), 4), ("tiny 16x1 T32", shape(16, 1, 512, 32), 4)]


def where_time_goes(s: ModelShape, batch: int, threads: int) -> dict[str, float]:
    """Fractions of a training step's CPU time by op family (torch.profiler, 3 steps)."""
    import torch
    from torch.profiler import profile

    from flops_fit.models.gpt import GPT, GPTConfig
    from flops_fit.trainer import accelerator
    from flops_fit.trainer import steps as train

    torch.set_num_threads(threads)
    model = GPT(GPTConfig.from_shape(s))
    opt = train.make_optimizer(model, torch.device("cpu"), 0.1, 1e-3)
    x = torch.randint(0, s.vocab_size, (batch, s.max_seq_len))
    auto = accelerator.autocast_for(torch.device("cpu"))
    for _ in range(2):
        train.train_step(model, opt, x, auto)
    with profile() as prof:
        for _ in range(3):
            train.train_step(model, opt, x, auto)
    groups = {"matmul": 0.0, "softmax_xent": 0.0, "optimizer": 0.0, "attention": 0.0, "other": 0.0}
    total = 0.0
    for ev in prof.key_averages():
        t = ev.self_cpu_time_total
        total += t
        name = ev.key
        if name in ("aten::mm", "aten::addmm", "aten::bmm"):
            groups["matmul"] += t
        elif "softmax" in name or "nll_loss" in name or "cross_entropy" in name or name == "aten::fill_":
            groups["softmax_xent"] += t
        elif "Optimizer" in name or "adam" in name.lower():
            groups["optimizer"] += t
        elif "scaled_dot_product" in name or "flash_attention" in name:
            groups["attention"] += t
        else:
            groups["other"] += t
    return {k: round(v / total, 3) for k, v in groups.items()}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="two small shapes, one repeat (CI smoke run)")
    p.add_argument("--threads", type=int, nargs="+", default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--compile", action="store_true", help="torch.compile the model (default on CUDA)")
    p.add_argument("--only", nargs="+", default=None, help="cases whose label contains one of these words")
    args = p.parse_args(argv)

    import torch

    from flops_fit.trainer.throughput import matmul_peak_flops, probe_tokens_per_s

    cuda = torch.cuda.is_available()
    cases = QUICK if args.quick else FULL
    if args.only:
        cases = [c for c in cases if any(w in c[0] for w in args.only)]
    threads_list = args.threads or ([1] if args.quick else [1, 2])
    repeats = args.repeats or (1 if args.quick else 3)
    steps = 2 if args.quick else 6
    compile_ = args.compile or cuda
    rows, load_start = [], load()
    for threads in threads_list:
        for label, s, batch in cases:
            if cuda:
                batch *= 8
            fpt = accounting.flops_per_token(s, s.max_seq_len, "attention")
            tps, peaks, mfus, details = [], [], [], None
            for _ in range(repeats):
                if compile_:  # each case compiled afresh: a stale cache past the recompile limit runs eager
                    torch._dynamo.reset()
                peak = matmul_peak_flops(threads, n=256 if args.quick else None, repeats=2 if args.quick else 5)
                d = probe_tokens_per_s(s, batch, s.max_seq_len, steps=steps, warmup=3 if compile_ else 2,
                                       threads=threads, compile=compile_, detail=True)
                tps.append(d["tokens_per_s"])
                peaks.append(peak)
                mfus.append(fpt * d["tokens_per_s"] / peak)
                details = d
            row = {"case": label, "threads": threads, "d_model": s.d_model, "layers": s.num_layers,
                   "vocab": s.vocab_size, "seq": s.max_seq_len, "batch": batch,
                   "flops_per_token": fpt, "tokens_per_s": median(tps), "peak_gflops": median(peaks) / 1e9,
                   "mfu": median(mfus), "mfu_runs": [round(m, 3) for m in mfus],
                   "frac_forward": details["frac_forward"], "frac_backward": details["frac_backward"],
                   "frac_optimizer": details["frac_optimizer"], "load": load()}
            if label.startswith("tiny") and not cuda:
                row["profile"] = where_time_goes(s, batch, threads)
            rows.append(row)
            print(f"  {label} threads={threads}: {row['tokens_per_s']:.0f} tok/s, MFU {row['mfu']:.3f}", file=sys.stderr)
    result = {"benchmark": "train", "quick": args.quick, "device": "cuda" if cuda else "cpu",
              "dtype": "bf16-autocast" if cuda else "fp32", "compile": compile_, "repeats": repeats,
              "load_start": load_start, "rows": rows}
    text = table(rows, ["case", "threads", "batch", "tokens_per_s", "peak_gflops", "mfu", "frac_optimizer", "load"])
    prof = [{"case": r["case"], "threads": r["threads"], **r["profile"]} for r in rows if "profile" in r]
    if prof:
        text += "\n\nwhere the time goes (fraction of step CPU time)\n" + table(prof, ["case", "threads", *prof[0].keys() - {"case", "threads"}])
    emit(result, text)
    return result


if __name__ == "__main__":
    main()
