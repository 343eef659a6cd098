"""The reference GPT that flops_fit sweeps: a small, modern decoder-only transformer.

Pre-norm RMSNorm blocks, rotary positions (no learned position table), fused bias-free
QKV, causal scaled-dot-product attention, SwiGLU MLP, final RMSNorm and an untied head.
Its parameter count is exactly ``gpt_spec.param_groups(config.shape).total`` (the pure-
Python closed form the planner uses without building a model; tests/test_gpt.py checks
the two agree over many shapes), so sizing a 1e9-parameter trial never allocates it.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from flops_fit.models import gpt_spec
from flops_fit.models.gpt_spec import CE_CHUNK_ELEMENTS, ModelShape

# Fields that fix the parameter count (gpt_spec.ModelShape's); everything else is a numerical knob.
_SHAPE_FIELDS = tuple(f.name for f in fields(ModelShape))


@dataclass
class GPTConfig:
    vocab_size: int = 50257  # tokenizer size (GPT-2 BPE by default); also the head width
    d_model: int = 256  # residual stream width d
    num_layers: int = 4  # transformer blocks L
    num_heads: int = 4  # attention heads; head dim d/heads must be even (rotary pairs)
    d_ff: int | None = None  # SwiGLU hidden width f; None -> gpt_spec.swiglu_hidden(d) ≈ 8/3·d
    max_seq_len: int = 256  # longest context; sizes the cached rotary tables
    rope_theta: float = 10000.0  # rotary base (Su et al. 2021); larger = slower rotation
    norm_eps: float = 1e-5  # RMSNorm epsilon
    init_std: float = 0.02  # std of the normal init of every weight matrix (GPT-2)

    def __post_init__(self) -> None:
        if self.d_ff is None:
            self.d_ff = gpt_spec.swiglu_hidden(self.d_model) if _is_pos_int(self.d_model) else None
        for name in _SHAPE_FIELDS:
            if _is_pos_int(getattr(self, name)):
                setattr(self, name, operator.index(getattr(self, name)))  # numpy ints from a planner -> int
        try:
            _ = self.shape  # one set of shape rules: gpt_spec.ModelShape validates (heads, rotary)
        except ValueError as exc:
            raise ValueError(str(exc).replace("ModelShape.", "GPTConfig.")) from None
        for name in ("rope_theta", "norm_eps", "init_std"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                math.isfinite(value) and value > 0
            ):
                raise ValueError(f"GPTConfig.{name} must be a positive finite number, got {value!r}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    @property
    def shape(self) -> ModelShape:
        """The numbers that fix parameters and FLOPs (what ``gpt_spec`` works on)."""
        return ModelShape(**{name: getattr(self, name) for name in _SHAPE_FIELDS})

    @classmethod
    def from_shape(cls, shape: ModelShape, **overrides) -> GPTConfig:
        return cls(**{name: getattr(shape, name) for name in _SHAPE_FIELDS}, **overrides)


def _is_pos_int(value: object) -> bool:
    if isinstance(value, bool):
        return False
    try:
        return operator.index(value) >= 1
    except TypeError:
        return False


# --- rotary positions --------------------------------------------------------------------


def rotary_tables(seq_len: int, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (seq_len, head_dim/2): channel pair i at position t turns by
    t·theta^(-2i/head_dim). Built once, in float32 (positions up to ~1e4 need it)."""
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (i, i + head_dim/2) of x (B, H, T, hd) by position. The dot
    product of a rotated query and key then depends only on their distance."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)  # bf16 under autocast: stay in x's dtype
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


# --- blocks ------------------------------------------------------------------------------


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.num_heads, self.head_dim = config.num_heads, config.head_dim
        # One matmul for q, k and v: fewer kernel launches than three Linears.
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, T, hd)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        # Fused kernel (flash / memory-efficient on CUDA); is_causal avoids building a mask.
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, hd)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)) (Shazeer 2020); gate and up fused into one matmul."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.gate_up = nn.Linear(config.d_model, 2 * config.d_ff, bias=False)
        self.down = nn.Linear(config.d_ff, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)  # each (B, T, f)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        # Pre-norm (normalise the branch input, not the residual stream): trains stably
        # without warmup tricks at any depth (Xiong et al. 2020).
        self.attn_norm = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        self.attn = CausalSelfAttention(config)
        self.mlp_norm = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        self.mlp = SwiGLU(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin)
        return x + self.mlp(self.mlp_norm(x))


def chunked_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                          chunk_rows: int | None = None) -> torch.Tensor:
    """mean cross-entropy of ``h @ weight.T`` (N, V) against ``targets`` (N,), -100 ignored,
    without ever holding the N·V logits: rows go through the head ``chunk_rows`` at a time
    and each chunk is recomputed in backward (activation checkpointing), so the vocab head
    costs one chunk of logits (bf16 + its fp32 upcast + grad) instead of N·V of each.
    Up to one chunk it is exactly the plain head + ``F.cross_entropy`` (CPU runs unchanged)."""
    rows = chunk_rows or max(1024, CE_CHUNK_ELEMENTS // weight.shape[0])
    if h.shape[0] <= rows:
        return F.cross_entropy(F.linear(h, weight).float(), targets, ignore_index=-100)
    total = h.new_zeros((), dtype=torch.float32)
    for start in range(0, h.shape[0], rows):
        total = total + checkpoint(_head_loss_sum, h[start:start + rows], weight, targets[start:start + rows],
                                   use_reentrant=False)
    return total / (targets != -100).sum()  # NaN when nothing is scored, as F.cross_entropy


def _head_loss_sum(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(F.linear(h, weight).float(), targets, ignore_index=-100, reduction="sum")


# --- the model ---------------------------------------------------------------------------


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.norm_f = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        # Untied: the accounting counts the head separately from the token table.
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        # Rotary tables: computed once, follow .to(device); non-persistent, so they are
        # neither parameters nor in checkpoints (they are a pure function of the config).
        cos, sin = rotary_tables(config.max_seq_len, config.head_dim, config.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        std = self.config.init_std
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=std)
            elif isinstance(module, nn.RMSNorm):
                nn.init.ones_(module.weight)
        # Each block adds two branches to the residual stream, so at init its variance
        # grows like 2·L·std²; scaling the branch output projections by 1/sqrt(2·L) keeps
        # it O(1) at any depth (GPT-2, Radford et al. 2019, §2.3).
        residual_std = std / math.sqrt(2 * self.config.num_layers)
        for block in self.blocks:
            nn.init.normal_(block.attn.proj.weight, mean=0.0, std=residual_std)
            nn.init.normal_(block.mlp.down.weight, mean=0.0, std=residual_std)

    def forward(
        self, input_ids: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """input_ids (B, T) -> (logits (B, T, V), None), or (None, loss) when labels are given:
        training never holds the B·T·V logits (see ``chunked_cross_entropy``).

        ``labels`` are aligned with ``input_ids`` (usually the same tensor): the model
        shifts them itself, so logits at position t are scored against labels[:, t + 1].
        Positions labelled -100 are ignored; the loss is the mean over the rest (NaN if
        none is left, as with ``F.cross_entropy``).
        """
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, seq_len), got shape {tuple(input_ids.shape)}")
        T = input_ids.shape[1]
        if T > self.config.max_seq_len:
            raise ValueError(
                f"sequence length {T} exceeds max_seq_len={self.config.max_seq_len}"
            )
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]  # (T, hd/2), broadcast over B, H
        x = self.wte(input_ids)  # (B, T, d)
        for block in self.blocks:
            x = block(x, cos, sin)
        h = self.norm_f(x)  # (B, T, d)
        if labels is None:
            return self.lm_head(h), None
        # Shift by padding the labels, not slicing: position t is scored against labels[:, t + 1].
        targets = F.pad(labels[:, 1:], (0, 1), value=-100)  # (B, T); last position unscored
        return None, chunked_cross_entropy(h.reshape(-1, h.size(-1)), self.lm_head.weight, targets.reshape(-1))

    # --- accounting (the library's model contract) ---------------------------------------

    def n(self) -> int:
        """Total trainable parameters (equals ``gpt_spec.param_groups(shape).total``)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def param_groups(self) -> dict[str, int]:
        """Counts by group, measured on the built modules (keys as
        ``gpt_spec.ParamGroups.as_dict()``): n, n_non_embedding, n_embedding, n_head,
        n_matmul (block weight matrices + head: what costs matmul FLOPs)."""
        embedding, head = self.wte.weight.numel(), self.lm_head.weight.numel()
        matmul = head + sum(m.weight.numel() for m in self.blocks.modules() if isinstance(m, nn.Linear))
        return {
            "n": self.n(),
            "n_non_embedding": self.n() - embedding - head,
            "n_embedding": embedding,
            "n_head": head,
            "n_matmul": matmul,
        }

    def flops_per_token(self, seq_len: int, convention: str = gpt_spec.DEFAULT_FLOPS_CONVENTION) -> float:
        """Training FLOPs per token (forward + backward), from ``gpt_spec.flops_per_token``:

        - ``6n``: 6·N, N = n() (Chinchilla's C = 6·N·D; the default);
        - ``6n_non_embedding``: 6·N_non_embedding (Kaplan et al. 2020; no table, no head);
        - ``attention``: 6·N_matmul + 12·L·d·seq_len (PaLM App. B: every weight matmul
          incl. the head, plus attention scores and weighted sum over the context).
        """
        return gpt_spec.flops_per_token(self.config.shape, seq_len, convention)

    def all_flops_per_token(self, seq_len: int) -> dict[str, float]:
        """Every convention, keyed ``flops_<convention>`` (what a trial records)."""
        return gpt_spec.all_flops_per_token(self.config.shape, seq_len)


# --- sizing for a sweep (no allocation) --------------------------------------------------


def estimate_params_from_config(config: GPTConfig) -> int:
    """Exactly ``GPT(config).n()``, without building it: V·d (table) + L·(2·d + 4·d² +
    3·d·f) + d (final norm) + d·V (head)."""
    return gpt_spec.param_groups(config.shape).total


def config_for_scaling(
    target_params: float,
    vocab_size: int = 50257,
    max_seq_len: int = 256,
    count: str = "n_non_embedding",
    num_layers: int | None = None,
    **overrides,
) -> GPTConfig:
    """The GPTConfig whose ``count`` parameters land closest to ``target_params``.

    Pure arithmetic (``gpt_spec.shape_for_params``): nothing is allocated, so planning
    1e9-parameter trials is instant. Shape rule: depth from the aspect prior d_model ≈
    64·num_layers (or the given ``num_layers``), heads = round(d_model/64) (at least 1) with
    an even head dim, d_ff = swiglu_hidden(d_model), then the width (and, unless the depth is
    given, a neighbouring depth) that hits the target.

    ``count`` is "n_non_embedding" by default (Kaplan et al. 2020): with a real vocabulary
    the token table and head alone exceed 1e4..1e6 total parameters, so only the
    non-embedding count spans a whole sweep with one rule. "n" and "n_matmul" also work.
    ``overrides`` may set the numerical knobs (rope_theta, norm_eps, init_std), not the
    shape: a shape override would silently miss the target (build a GPTConfig instead).
    """
    bad = sorted(set(overrides) - ({f.name for f in fields(GPTConfig)} - set(_SHAPE_FIELDS)))
    if bad:
        raise ValueError(
            f"config_for_scaling cannot override {bad}: the shape rule chooses them "
            "(only rope_theta, norm_eps, init_std); build GPTConfig directly for a fixed shape"
        )
    if num_layers is not None and not (_is_pos_int(num_layers) and num_layers <= 1000):
        raise ValueError(f"num_layers must be a positive depth, got {num_layers!r} "
                         "(pass the vocabulary as vocab_size=)")
    shape = gpt_spec.shape_for_params(target_params, vocab_size, max_seq_len, count, num_layers)
    return GPTConfig.from_shape(shape, **overrides)


def create_model_for_scaling(
    target_params: float,
    num_layers: int | None = None,
    vocab_size: int = 50257,
    max_seq_len: int = 256,
    parametrization: str | None = None,
    count: str = "n_non_embedding",
    **overrides,
) -> GPT:
    """Build the GPT of ``config_for_scaling(...)`` (same shape rule; see there): its
    ``count`` parameters are within a few percent of ``target_params``.

    The positional order is flops-fit v1.0's (``target_params, num_layers, vocab_size,
    max_seq_len, parametrization``), so v1.0 scripts run unchanged. ``parametrization`` is
    accepted for them and has no effect: the model is always standard-parametrized GPT-2
    init (``init_std``), as the reference sweep's learning rates assume.
    """
    del parametrization  # v1.0's u-muP switch; see the docstring
    return GPT(config_for_scaling(target_params, vocab_size, max_seq_len, count, num_layers, **overrides))
