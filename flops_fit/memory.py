"""Training memory of the reference GPT, the micro-batch that fits, and the GPU a trial needs.

Pure Python (no torch): the planner shows each trial's resources from it, and the trainer
picks its micro-batch from it at trial start (then checks the device's free memory and
halves on an out-of-memory error, so the model only has to be roughly right).

Bytes, for ``n`` parameters and a micro-batch of ``b`` sequences of ``T`` tokens:

    state        16·n                      fp32 weights + fp32 grads + AdamW's two fp32 moments
    activations  b·T·(L·(26·d + 8·f) + 8·d)
    head         one chunk of logits: CE_CHUNK_ELEMENTS · 10 bytes (bf16 logits, fp32 upcast,
                 fp32 grad; ``models.gpt.chunked_cross_entropy`` never holds B·T·V)

Per token and layer, the tensors autograd saves under bf16 autocast with a fused (flash)
attention that stores only its output and log-sum-exp (Korthikanti et al. 2022, "Reducing
activation recomputation", §4.1, redone for this block): the fp32 residual into each of the
two RMSNorms (4d + 4d), their bf16 outputs (2d + 2d), QKV (6d), rotated q and k (4d), the
attention output (2d) and the projection's input (2d) = 26·d; SwiGLU's gate/up output (4f),
silu(gate) (2f) and the product (2f) = 8·f. The final norm keeps 4d + 2d, the embedding
output 2d (8·d). ``SAFETY`` covers the allocator's fragmentation and kernel workspaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flops_fit.accounting import ModelShape, param_groups

#: Must match ``flops_fit.models.gpt.CE_CHUNK_ELEMENTS`` (tested).
CE_CHUNK_ELEMENTS = 1 << 26
#: Headroom on top of the model: fragmentation, cuBLAS/flash workspaces, the CUDA context.
SAFETY = 1.2
CONTEXT_BYTES = 1 << 30
#: A trial whose estimate is at most this fraction of a GPU shares it (``gpus_per_trial="auto"``).
SHARE_FRACTIONS = (0.25, 0.5)
#: ``gpus_per_trial="auto"``: each trial's share from ``gpus_for``.
AUTO = "auto"


def state_bytes(shape: ModelShape) -> int:
    return 16 * param_groups(shape).total


def activation_bytes_per_sequence(shape: ModelShape, seq_len: int) -> int:
    d, f, L = shape.d_model, shape.d_ff, shape.num_layers
    return seq_len * (L * (26 * d + 8 * f) + 8 * d)


def training_bytes(shape: ModelShape, micro_batch: int, seq_len: int) -> int:
    """Estimated peak bytes of one trial at ``micro_batch`` sequences per forward/backward."""
    head = min(CE_CHUNK_ELEMENTS, micro_batch * seq_len * shape.vocab_size) * 10
    raw = state_bytes(shape) + micro_batch * activation_bytes_per_sequence(shape, seq_len) + head
    return int(raw * SAFETY) + CONTEXT_BYTES


def micro_batch_for(shape: ModelShape, batch_size: int, seq_len: int, free_bytes: int) -> int:
    """The largest ``batch_size / 2^k`` (a divisor, so every micro-batch is the same size and
    the accumulated update is the full batch's) whose estimate fits in ``free_bytes``; 1 when
    none does (the trainer then still halves on OOM until it is 1, and fails with the model's
    estimate in the error)."""
    micro = batch_size
    while micro > 1 and (training_bytes(shape, micro, seq_len) > free_bytes or batch_size % micro):
        micro = micro // 2 if micro % 2 == 0 else 1
    return micro


def gpus_for(shape: ModelShape, batch_size: int, seq_len: int, gpu_bytes: int) -> float:
    """``--gpus-per-trial auto``: a quarter or half a GPU for a trial whose full batch fits
    in that share, else a whole GPU (larger trials accumulate micro-batches on it). Trials
    that share a GPU are capped to their share by ``torch.cuda.set_per_process_memory_fraction``."""
    need = training_bytes(shape, batch_size, seq_len)
    for share in SHARE_FRACTIONS:
        if need <= share * gpu_bytes:
            return share
    return 1.0


@dataclass(frozen=True)
class ResourceRule:
    """What each trial asks Ray for: ``cpus`` cores and ``gpus`` GPUs, a number or ``"auto"``
    (``gpus_for`` on the trial's shape, with ``gpu_bytes`` per GPU). A workload whose model
    the memory model does not describe (a user's own model) gets a whole GPU under auto."""

    cpus: float
    gpus: float | str = 0.0
    gpu_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.gpus == AUTO and not self.gpu_bytes:
            raise ValueError("gpus='auto' needs gpu_bytes (the memory of one GPU)")

    def gpus_for(self, spec: Any) -> float:
        if self.gpus != AUTO:
            return float(self.gpus)
        if not spec.model or "d_model" not in spec.model:
            return 1.0
        from flops_fit.sizes import gpt_shape

        return gpus_for(gpt_shape(spec.model), spec.batch_size, spec.seq_len, self.gpu_bytes)

    def for_spec(self, spec: Any) -> dict[str, float]:
        """Ray's resource dict for one trial (``{"CPU": 1.0, "GPU": 0.25}``)."""
        gpus = self.gpus_for(spec)
        return {"CPU": float(self.cpus), **({"GPU": gpus} if gpus else {})}

    def describe(self, spec: Any) -> str:
        res = self.for_spec(spec)
        return f"{res['CPU']:g}c" + (f"/{res['GPU']:g}g" if "GPU" in res else "")
