"""find_optimal: a user's own model class and dataset through the same Ray engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from flops_fit.api import find_optimal
from flops_fit.errors import PlanError
from flops_fit.workloads.user import count_sizes

SEQ, VOCAB = 16, 32


class TinyLM(nn.Module):
    """A user's model: embedding, one MLP block, head; its size knob is `width`."""

    def __init__(self, width: int, vocab: int = VOCAB, max_len: int = SEQ):
        super().__init__()
        self.max_len = max_len
        self.emb = nn.Embedding(vocab, width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))
        self.head = nn.Linear(width, vocab)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, x):
        if x.shape[1] > self.max_len:
            raise ValueError(f"sequence length {x.shape[1]} exceeds max_len {self.max_len}")
        h = self.emb(x)
        return self.head(h + self.mlp(h))


def next_token_loss(logits, labels):
    return nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))


def counting_dataset(n: int = 512, seq: int = SEQ):
    """Sequences that count up mod VOCAB from a random start: learnable, not trivial."""
    g = torch.Generator().manual_seed(0)
    starts = torch.randint(0, VOCAB, (n,), generator=g)
    rows = (starts[:, None] + torch.arange(seq)[None, :]) % VOCAB
    return [(r.clone(), r.clone()) for r in rows]


def test_sizes_are_counted_on_the_meta_device_without_allocating():
    # 1e9-parameter sizes cost nothing to count: nothing is allocated on the meta device
    counts = count_sizes(TinyLM, "width", {"vocab": 50_000}, [8, 64, 4096, 16384])
    assert counts[16384] > 1e9
    assert counts[8] == TinyLM(8, vocab=50_000).num_params()


def test_a_user_model_sweeps_through_ray(ray_session, tmp_path):
    result = find_optimal(
        TinyLM, "width", model_kwargs={"vocab": VOCAB}, dataset=counting_dataset(), loss_fn=next_token_loss,
        compute_budgets=(2e8, 4e8, 8e8), points_per_budget=3, size_values=[4, 6, 8, 12, 16, 24, 32, 48, 64],
        storage_path=str(tmp_path), name="user", min_steps=8, max_batch_size=16, max_epochs=1000.0,
        checkpoint_every_s=60.0, n_boot=10,
    )
    table = result.results
    assert len(table) >= 9 and (table["status"] == "ok").all(), table[["trial_id", "status", "error"]]
    by_width = {TinyLM(w).num_params(): w for w in (4, 6, 8, 12, 16, 24, 32, 48, 64)}
    assert set(table["n"]) <= set(by_width)  # n is the user's own num_params()
    assert (table["loss"] < torch.log(torch.tensor(float(VOCAB))).item()).all()  # learned something


def _bad(**changes):
    kwargs = dict(model_kwargs={"vocab": VOCAB}, dataset=counting_dataset(64), loss_fn=next_token_loss,
                  compute_budgets=(2e8, 4e8, 8e8), points_per_budget=3, size_values=[4, 8, 16, 32, 64],
                  min_steps=8, max_epochs=1000.0)
    kwargs.update(changes)
    return kwargs


@pytest.mark.parametrize(
    "model_cls, size_param, changes, message",
    [
        (TinyLM, "hidden", {}, "rejects the size parameter 'hidden'"),
        (lambda width, vocab: object(), "width", {}, "not a torch.nn.Module"),
        (lambda width, vocab: nn.Linear(width, vocab), "width", {}, "neither n\\(\\) nor num_params\\(\\)"),
        (TinyLM, "width", {"dataset": counting_dataset(64, seq=SEQ * 2)}, "exceeds max_len"),
        (TinyLM, "width", {"loss_fn": lambda logits, labels: logits.sum() * float("nan")}, "initial loss is nan"),
    ],
)
def test_bad_models_are_refused_before_any_trial(tmp_path, model_cls, size_param, changes, message):
    with pytest.raises(PlanError, match=message):
        find_optimal(model_cls, size_param, storage_path=str(tmp_path / "runs"), **_bad(**changes))
    assert not (tmp_path / "runs").exists()  # nothing ran, nothing was written


def test_without_a_dataset_a_user_model_trains_on_tinystories(ray_session, tmp_path):
    """dataset=None is the README's "TinyStories": the sweep's tokenizer (the offline sample's
    BPE here) feeds the user's model; its vocabulary reaches the data pipeline, not a GPT-only zero."""
    vocab = 512
    result = find_optimal(
        TinyLM, "width", model_kwargs={"vocab": vocab, "max_len": 64}, loss_fn=next_token_loss,
        compute_budgets=(1e9, 2e9, 4e9), points_per_budget=3, size_values=[4, 8, 16, 32, 64],
        seq_len=64, vocab_size=vocab, source="sample", val_tokens=4096, cache_dir=str(tmp_path / "cache"),
        storage_path=str(tmp_path), name="stories", min_steps=8, max_batch_size=8, n_boot=10,
    )
    table = result.results
    assert len(table) >= 6 and (table["status"] == "ok").all(), table[["trial_id", "status", "error"]]
    assert set(table["seq_len"]) == {64}
    assert (table["loss"] < np.log(vocab)).all()  # learned something about the stories
    assert table["d_model"].isna().all()  # a user model has no GPT shape: null, not a sentinel zero
