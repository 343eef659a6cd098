"""The reference GPT's accounting: parameter groups, FLOPs-per-token conventions, the shape
rule and the training memory model.

Pure Python (no torch, no numpy) so that planning a sweep of 1e9-parameter models
never allocates a weight: the counts here are exact closed forms of the reference GPT in
``flops_fit/models/gpt.py`` (tested against the instantiated model over many shapes).

The reference GPT (pre-norm, RMSNorm with a learnable gain, fused bias-free QKV, rotary
positions with no learned position table, SwiGLU MLP, untied output head)::

    embedding      V·d                      (token table; a lookup, costs no matmul FLOPs)
    per layer      2·d                      (two RMSNorm gains)
                 + 3·d·d + d·d              (fused QKV, attention output projection)
                 + 3·d·f                    (SwiGLU: gate, up, down)
    final norm     d
    output head    d·V                      (a matmul: at small scale it dominates compute)

Which parameters to count moves fitted exponents a lot (Kaplan et al. 2020 count
non-embedding parameters, Chinchilla counts all; Pearce & Song 2024, "Reconciling Kaplan
and Chinchilla scaling laws", show the choice explains most of the gap between them), so
every trial records every group and every FLOPs convention, and the fit chooses.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

#: FLOPs-per-token conventions a sweep can budget with. ``6n`` is the default: it is
#: Chinchilla's C = 6·N·D with N the total parameter count ``n()``, so fitted numbers
#: compare directly with the published ones and with how people size big runs.
FLOPS_CONVENTIONS = ("6n", "6n_non_embedding", "attention")
DEFAULT_FLOPS_CONVENTION = "6n"

#: Parameter counts the fit can use as "N".
PARAM_COUNTS = ("n", "n_non_embedding", "n_matmul")

#: The default trained BPE's vocabulary (planner default and tokenizer default).
# 2048: tiny scaling-study models (d_model 16-256) must not be mostly embedding and output
# head: at d_model=64 a 2048 vocabulary costs 131k parameters per matrix, already as much as
# a 2-layer body; 32k (GPT-2/Llama) would be 2M, and the head would dominate FLOPs too.
# TinyStories keeps to a ~1.5k-word child lexicon (Eldan & Li 2023), and the offline sample
# is smaller still, so 2048 BPE merges keep nearly every word one token (llama2.c trains its
# small TinyStories models with 512-4096 vocabularies for the same reason).
DEFAULT_VOCAB_SIZE = 2048


@dataclass(frozen=True)
class ModelShape:
    """The numbers that fix the reference GPT's parameter count and FLOPs."""

    vocab_size: int
    d_model: int
    num_layers: int
    num_heads: int
    d_ff: int
    max_seq_len: int

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "num_layers", "num_heads", "d_ff", "max_seq_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ModelShape.{name} must be a positive int, got {value!r}")
        if self.d_model % self.num_heads:
            raise ValueError(
                f"d_model={self.d_model} must be divisible by num_heads={self.num_heads}"
            )
        if (self.d_model // self.num_heads) % 2:
            raise ValueError(
                f"head dim d_model/num_heads={self.d_model // self.num_heads} must be even: "
                "rotary embeddings rotate pairs of channels"
            )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads


def swiglu_hidden(d_model: int) -> int:
    """SwiGLU hidden width: 8/3·d (keeps the MLP at ~8·d² like a 4·d GELU MLP; Shazeer
    2020), rounded up to a multiple of 8 for friendly matmul shapes."""
    return max(8, 8 * math.ceil(8 * d_model / 3 / 8))


@dataclass(frozen=True)
class ParamGroups:
    """Exact parameter counts of the reference GPT, by group."""

    embedding: int  # token table V·d
    head: int  # output projection d·V (untied)
    non_embedding: int  # everything but the token table and the head
    matmul: int  # weights that cost matmul FLOPs: non-embedding matrices + head

    @property
    def total(self) -> int:
        """All trainable parameters: what ``GPT.n()`` returns."""
        return self.embedding + self.head + self.non_embedding

    def as_dict(self) -> dict[str, int]:
        return {
            "n": self.total,
            "n_non_embedding": self.non_embedding,
            "n_embedding": self.embedding,
            "n_head": self.head,
            "n_matmul": self.matmul,
        }


def param_groups(shape: ModelShape) -> ParamGroups:
    d, f, L, V = shape.d_model, shape.d_ff, shape.num_layers, shape.vocab_size
    per_layer_matrices = 4 * d * d + 3 * d * f
    per_layer_norms = 2 * d
    non_embedding = L * (per_layer_matrices + per_layer_norms) + d  # + final norm
    return ParamGroups(
        embedding=V * d,
        head=d * V,
        non_embedding=non_embedding,
        matmul=L * per_layer_matrices + d * V,
    )


def flops_per_token(shape: ModelShape, seq_len: int, convention: str = DEFAULT_FLOPS_CONVENTION) -> float:
    """Training FLOPs per token (forward + backward) under a named convention.

    - ``6n``: 6·N with N = all parameters (Chinchilla, Hoffmann et al. 2022, §3).
    - ``6n_non_embedding``: 6·N with Kaplan et al. 2020's non-embedding count (which
      also leaves out the output head; Kaplan counts it as part of the embedding).
    - ``attention``: 6·N_matmul + 12·L·d·T: every weight matmul including the output head,
      plus attention scores and the weighted sum over a T-token context (PaLM, Chowdhery et
      al. 2022, App. B). This is the compute really spent; it ignores causal masking savings.
    """
    groups = param_groups(shape)
    if convention == "6n":
        return 6.0 * groups.total
    if convention == "6n_non_embedding":
        return 6.0 * groups.non_embedding
    if convention == "attention":
        return 6.0 * groups.matmul + 12.0 * shape.num_layers * shape.d_model * seq_len
    raise ValueError(f"unknown FLOPs convention {convention!r}; choose one of {FLOPS_CONVENTIONS}")


def all_flops_per_token(shape: ModelShape, seq_len: int) -> dict[str, float]:
    """Every convention at once, keyed ``flops_<convention>`` (what a trial records)."""
    return {f"flops_{c}": flops_per_token(shape, seq_len, c) for c in FLOPS_CONVENTIONS}


# --- shape rule --------------------------------------------------------------------------

#: Width/depth ratio the shape rule aims for. Kaplan et al. 2020 (Fig. 5) find loss nearly
#: flat for d_model/n_layer between ~20 and ~200; 64 is nanochat's choice (d = 64·depth).
ASPECT_RATIO = 64
#: Head width the rule aims for once the model is wide enough (GPT-2 / GPT-3 use 64).
TARGET_HEAD_DIM = 64


def _depth_for(non_embedding_target: float) -> int:
    # Per layer ~12·d² parameters (4·d² attention + 8·d² SwiGLU) and d = ASPECT·L, so
    # N ≈ 12·ASPECT²·L³.
    return max(1, round((non_embedding_target / (12.0 * ASPECT_RATIO**2)) ** (1.0 / 3.0)))


#: From this width on, shapes are tensor-core aligned: head_dim exactly 64 (d_model a multiple
#: of 64) and d_ff a multiple of 128, so bf16 GEMMs take the fast paths and flash attention
#: needs no padding. Below it (the CPU presets' models) the finer rule keeps small targets close.
ALIGN_FROM = 256
#: A shape this close to its parameter target counts as on target (the shape rule then picks
#: by aspect ratio); every trial records its exact count.
SHAPE_TOLERANCE = 0.05


def _shape(d_model: int, num_layers: int, vocab_size: int, max_seq_len: int) -> ModelShape:
    heads = max(1, round(d_model / TARGET_HEAD_DIM))
    head_dim = max(2, 2 * round(d_model / heads / 2))
    d_ff = None
    if heads * head_dim >= ALIGN_FROM:
        head_dim = TARGET_HEAD_DIM
        d_ff = 128 * math.ceil(8 * heads * head_dim / 3 / 128)
    return ModelShape(
        vocab_size=vocab_size,
        d_model=heads * head_dim,
        num_layers=num_layers,
        num_heads=heads,
        d_ff=d_ff or swiglu_hidden(heads * head_dim),
        max_seq_len=max_seq_len,
    )


def count_params(shape: ModelShape, count: str) -> int:
    groups = param_groups(shape).as_dict()
    if count not in PARAM_COUNTS:
        raise ValueError(f"unknown parameter count {count!r}; choose one of {PARAM_COUNTS}")
    return groups[count]


def shape_for_params(
    target_params: float,
    vocab_size: int,
    max_seq_len: int = 256,
    count: str = "n_non_embedding",
    num_layers: int | None = None,
) -> ModelShape:
    """The shape whose ``count`` parameters land closest to ``target_params``.

    ``num_layers`` fixes the depth (flops-fit v1.0's rule: depth given, width solved).

    Rule: depth from the aspect-ratio prior (d_model ≈ 64·num_layers, so depth and width
    grow together), heads = round(d_model / 64) (at least 1), head dim even (rotary), then
    for each nearby depth the width that brings the count closest to the target; among those
    within ``SHAPE_TOLERANCE`` (5%) of it the one nearest the aspect prior, else the closest
    (worst 7% off and 3x off the prior over 1e5.5..1e9.5, tests/test_gpt.py).

    ``count`` defaults to the non-embedding count: a total-parameter target of 1e4 is
    impossible with any useful vocabulary (the token table alone is V·d), while the
    non-embedding count spans 1e4..1e9 with the same rule.
    """
    if not (isinstance(target_params, (int, float)) and math.isfinite(target_params) and target_params > 0):
        raise ValueError(f"target_params must be a positive finite number, got {target_params!r}")
    count_params(ModelShape(vocab_size, 2, 1, 1, 8, max_seq_len), count)  # validates `count`
    if count == "n_non_embedding":
        depth0 = _depth_for(target_params)
    else:  # the depth whose aspect-prior shape (d = ASPECT·L) has this count, embeddings included
        depth0 = min(range(1, 65), key=lambda L: abs(math.log(
            count_params(_shape(ASPECT_RATIO * L, L, vocab_size, max_seq_len), count) / target_params)))
    best: tuple[float, float, ModelShape] | None = None
    # Aligned widths come in steps of 64, so two more depths on each side keep the target
    # within a few percent (worst 7% over 1e5.5..1e9.5, tests/test_gpt.py); the finer
    # widths below ALIGN_FROM search one depth either side, as before. ``num_layers`` fixes it.
    depths = [num_layers] if num_layers else sorted({max(1, depth0 + k) for k in (-2, -1, 0, 1, 2)})
    for depth in depths:
        shape = _closest_width(target_params, depth, vocab_size, max_seq_len, count)
        if shape is None or (not num_layers and abs(depth - depth0) > 1 and shape.d_model < ALIGN_FROM):
            continue
        err = abs(count_params(shape, count) - target_params) / target_params
        aspect_penalty = abs(math.log(shape.d_model / (ASPECT_RATIO * depth)))
        # Within SHAPE_TOLERANCE of the target, the aspect prior picks. Aligned widths come in
        # steps of 64, so the exact count is often an extreme shape (512 wide, 1 layer, where
        # the prior says 256 x 6). Kaplan et al. 2020 (§3.1) found loss nearly flat in shape
        # over a wide range of aspect ratios but rising at the extremes, so an off-prior shape
        # would add its own error to the IsoFLOP curve; the exact count is what is recorded.
        tol_err = 0.0 if err <= SHAPE_TOLERANCE else round(err, 2)
        key = (tol_err, aspect_penalty)
        if best is None or key < best[:2]:
            best = (key[0], key[1], shape)
    if best is None:
        raise ValueError(
            f"no model shape has {count}≈{target_params:.3g} with vocab_size={vocab_size}"
        )
    return best[2]


def _closest_width(target: float, depth: int, vocab: int, seq: int, count: str) -> ModelShape | None:
    # The count is increasing in d_model: bisect on d, then check the neighbours that the
    # head/rounding rule can produce.
    lo, hi = 2, 2
    while count_params(_shape(hi, depth, vocab, seq), count) < target:
        hi *= 2
        if hi > 1 << 20:
            return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count_params(_shape(mid, depth, vocab, seq), count) < target:
            lo = mid
        else:
            hi = mid
    candidates = {_shape(d, depth, vocab, seq) for d in range(max(2, lo - 8), hi + 9)}
    return min(candidates, key=lambda s: abs(count_params(s, count) - target))


# --- training memory ----------------------------------------------------------------------
# Bytes, for ``n`` parameters and a micro-batch of ``b`` sequences of ``T`` tokens:
#
#     state        16·n                      fp32 weights + fp32 grads + AdamW's two fp32 moments
#     activations  b·T·(L·(26·d + 8·f) + 8·d)
#     head         one chunk of logits: CE_CHUNK_ELEMENTS · 10 bytes (bf16 logits, fp32 upcast,
#                  fp32 grad; ``models.gpt.chunked_cross_entropy`` never holds B·T·V)
#
# Per token and layer, the tensors autograd saves under bf16 autocast with a fused (flash)
# attention that stores only its output and log-sum-exp (Korthikanti et al. 2022, "Reducing
# activation recomputation", §4.1, redone for this block): the fp32 residual into each of the
# two RMSNorms (4d + 4d), their bf16 outputs (2d + 2d), QKV (6d), rotated q and k (4d), the
# attention output (2d) and the projection's input (2d) = 26·d; SwiGLU's gate/up output (4f),
# silu(gate) (2f) and the product (2f) = 8·f. The final norm keeps 4d + 2d, the embedding
# output 2d (8·d). ``SAFETY`` covers the allocator's fragmentation and kernel workspaces.

#: Logit elements per chunk of the head + loss (64M: 256 MiB in fp32): ``models.gpt``'s
#: chunked cross-entropy never holds B·T·V logits at once, and the memory model counts one chunk.
CE_CHUNK_ELEMENTS = 1 << 26
#: Headroom on top of the model: fragmentation, cuBLAS/flash workspaces, the CUDA context.
SAFETY = 1.2
CONTEXT_BYTES = 1 << 30


def state_bytes(shape: ModelShape, shards: int = 1) -> int:
    """fp32 weights + fp32 grads + AdamW's two fp32 moments: 16 bytes a parameter, a
    ``shards``-th of it on each GPU when the model is sharded (FSDP2: Zhao et al. 2023, "PyTorch
    FSDP"), plus the unsharded fp32 weights and gradients of the largest unit being gathered
    (each block is one unit, the root holds the token table and the head) and of the next one
    prefetched."""
    if shards == 1:
        return 16 * param_groups(shape).total
    groups = param_groups(shape)
    block = (groups.non_embedding - shape.d_model) // shape.num_layers
    gathered = 2 * 8 * max(block, groups.embedding + groups.head)
    return -(-16 * groups.total // shards) + gathered


def activation_bytes_per_sequence(shape: ModelShape, seq_len: int) -> int:
    d, f, L = shape.d_model, shape.d_ff, shape.num_layers
    return seq_len * (L * (26 * d + 8 * f) + 8 * d)


def training_bytes(shape: ModelShape, micro_batch: int, seq_len: int, shards: int = 1) -> int:
    """Estimated peak bytes on one GPU of a trial at ``micro_batch`` sequences per
    forward/backward, its model sharded over ``shards`` GPUs."""
    head = min(CE_CHUNK_ELEMENTS, micro_batch * seq_len * shape.vocab_size) * 10
    raw = state_bytes(shape, shards) + micro_batch * activation_bytes_per_sequence(shape, seq_len) + head
    return int(raw * SAFETY) + CONTEXT_BYTES


def micro_batch_for(shape: ModelShape, batch_size: int, seq_len: int, free_bytes: int, shards: int = 1) -> int:
    """The largest ``batch_size / 2^k`` (a divisor, so every micro-batch is the same size and
    the accumulated update is the full batch's) whose estimate fits in ``free_bytes``; 1 when
    none does (the trainer then still halves on OOM until it is 1, and fails with the model's
    estimate in the error)."""
    micro = batch_size
    while micro > 1 and (training_bytes(shape, micro, seq_len, shards) > free_bytes or batch_size % micro):
        micro = micro // 2 if micro % 2 == 0 else 1
    return micro


def gpt_shape(model: dict[str, Any]) -> ModelShape:
    """The ModelShape a GPT TrialSpec's ``model`` description holds."""
    return ModelShape(**{f.name: model[f.name] for f in dataclasses.fields(ModelShape)})
