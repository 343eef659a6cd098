"""In-memory token windows and the reference GPT on them: the trainer's tests without a token
cache or a tokenizer (imported by tests and by ``ddp_trial.py``, which torchrun starts)."""

from __future__ import annotations

import numpy as np
import torch

VOCAB, SEQ = 64, 16


class Windows:
    """A dataset of fixed random token windows, answering get_batch like the real ones."""

    def __init__(self, n: int, seed: int):
        self.data = torch.randint(0, VOCAB, (n, SEQ), generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.data)

    def get_batch(self, idx) -> torch.Tensor:
        return self.data[torch.as_tensor(np.asarray(idx), dtype=torch.long)]


class TinyGPTWorkload:
    """The reference GPT's model on in-memory windows; keeps every model it built (to compare
    trained weights)."""

    def __init__(self, train_windows: int = 200, val_windows: int = 8):
        self.sizes = (train_windows, val_windows)
        self.models: list[torch.nn.Module] = []

    def open_data(self, spec):
        return Windows(self.sizes[0], 1), Windows(self.sizes[1], 2)

    def build_model(self, spec):
        from flops_fit.workloads.gpt import ReferenceGPT

        self.models.append(ReferenceGPT().build_model(spec))
        return self.models[-1]
