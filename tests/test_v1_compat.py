"""flops-fit v1.0 scripts run unchanged: its README quickstart and example calls, verbatim
but for a local stand-in dataset (nothing may download) and budgets a CPU finishes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import flops_fit
from flops_fit.errors import PlanError
from flops_fit.examples import GPT, GPTConfig, create_model_for_scaling
from flops_fit.fitting.synthetic import DEFAULT_SIMULATED_LAW, ScalingLaw
from flops_fit.planning.grid import TrialSpec
from flops_fit.workloads.user import _LossAdapter, predicts_current_token

SEQ = 16


class StandInTokens(torch.utils.data.Dataset):
    """v1.0's TinyStoriesDataset items (input_ids, labels = input_ids), from a counting law."""

    def __init__(self, n: int = 384, vocab: int = 50257):
        g = torch.Generator().manual_seed(0)
        starts = torch.randint(0, 64, (n,), generator=g)
        self.rows = (starts[:, None] + torch.arange(SEQ)[None, :]) % 64 + 100
        self.vocab = vocab

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i], self.rows[i]


def test_create_model_for_scaling_takes_v1_arguments():
    model = create_model_for_scaling(1_000_000)  # v1.0: every argument but the target defaults
    assert model.config.vocab_size == 50257
    groups = model.param_groups()
    assert abs(groups["n_non_embedding"] - 1e6) / 1e6 < 0.1
    fixed = create_model_for_scaling(1_000_000, num_layers=6, vocab_size=512, max_seq_len=64, parametrization="u-mup")
    assert fixed.config.num_layers == 6  # depth fixed, width solved
    assert abs(fixed.param_groups()["n_non_embedding"] - 1e6) / 1e6 < 0.15
    today = create_model_for_scaling(1e6, vocab_size=512, max_seq_len=64, count="n_non_embedding")
    assert abs(today.param_groups()["n_non_embedding"] - 1e6) / 1e6 < 0.1  # today's keyword callers


def _v1_quickstart_loss():
    config = GPTConfig(d_model=256, num_layers=6)

    def loss_fn(logits, labels):  # v1.0 README, verbatim: scores logits[t] against labels[t]
        return F.cross_entropy(logits.view(-1, config.vocab_size), labels.view(-1))

    return loss_fn


def test_v1_current_token_loss_is_detected_and_shifted():
    loss_fn = _v1_quickstart_loss()
    model = _LossAdapter(GPT(GPTConfig(d_model=32, num_layers=1, num_heads=1, max_seq_len=SEQ)), loss_fn)
    x = StandInTokens(4).rows
    assert predicts_current_token(model, x, x)  # v1.0's objective: copy the current token

    def shifting(logits, labels):  # a loss_fn that already shifts must be left alone
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))

    assert not predicts_current_token(_LossAdapter(model.model, shifting), x, x)
    assert not predicts_current_token(model, x, torch.roll(x, -1, dims=1))  # labels already shifted
    # shifted, loss_fn scores logits[t] against token t+1: the GPT's own next-token loss
    model.shift_labels = True
    _, shifted = model(x, x)
    logits, _ = model.model(x[:, :-1])
    want = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
    assert torch.allclose(shifted, want)


def test_v1_quickstart_runs_unchanged(ray_session, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # --- v1.0 README quickstart (dataset: a local stand-in for TinyStoriesDataset) --------
    model_cls = lambda d_model: GPT(GPTConfig(d_model=d_model, num_layers=6))  # noqa: E731
    dataset = StandInTokens()
    loss_fn = _v1_quickstart_loss()
    plan = flops_fit.find_optimal(model_cls=model_cls, model_size_param="d_model", dataset=dataset,
                                  loss_fn=loss_fn, compute_budgets=[1e10, 2e10, 4e10], train=False, min_steps=2,
                                  size_values=[8, 16, 32, 64], points_per_budget=3, progress=False)
    assert plan and all(isinstance(s, TrialSpec) for s in plan)
    assert not (tmp_path / "outputs").exists()  # train=False ran nothing
    result = flops_fit.find_optimal(
        model_cls=model_cls,
        model_size_param="d_model",
        dataset=dataset,
        loss_fn=loss_fn,
        compute_budgets=[1e10, 2e10, 4e10],
        train=True,
        output_dir="outputs/gpt_tinystories",
        size_values=[8, 16, 32, 64], points_per_budget=3, min_steps=2, max_batch_size=8,
        max_epochs=1000.0, n_boot=0, progress=False,
    )
    out = tmp_path / "outputs" / "gpt_tinystories"
    assert (out / "results.parquet").is_file() and (out / "report.html").is_file()
    assert (result.results["status"] == "ok").all(), result.results[["trial_id", "status", "error"]]
    # a next-token objective: a copy-the-current-token loss would fall near 0 on this data
    assert (result.results["loss"] > 0.5).all()
    table = result.chinchilla_table()
    assert table.startswith("| Compute Budget |") and table.count("\n") == 2 + 3 - 1
    pred = result.predict(1e11)
    assert pred["target_compute"] == 1e11 and pred["optimal_params"] == pred.n
    assert pred["optimal_tokens"] == pred.d and "expected_loss" in pred
    paths = result.plot(show=False)  # output directory: the sweep's own
    assert {p.parent for p in paths} == {out}
    # trial directories are named by trial id, not Tune's spelled-out config
    trial_dirs = sorted(p.name for p in out.iterdir() if p.is_dir() and p.name.startswith("C"))
    assert set(trial_dirs) == set(result.results["trial_id"])


class Square(nn.Module):
    """A user model as v1.0 asked for one: a size keyword and ``num_params()``."""

    def __init__(self, width: int):
        super().__init__()
        self.proj = nn.Linear(width, width)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def test_v1_mock_mode_and_resume_false(ray_session, tmp_path, capfd, monkeypatch):
    """mode="mock" trains nothing but plans what training would: the user's model sizes
    (here n = width² + width), each trial's loss from the simulated law at its own N and D."""
    monkeypatch.delenv("RAY_AIR_NEW_OUTPUT", raising=False)
    model_cls = Square
    budgets = [1e17, 1e18, 1e19]
    planned = flops_fit.find_optimal(model_cls=model_cls, model_size_param="width", compute_budgets=budgets,
                                     train=False, progress=False)  # what a real run would train
    capfd.readouterr()
    result = flops_fit.find_optimal(model_cls=model_cls, model_size_param="width",
                                    compute_budgets=budgets, mode="mock", output_dir=tmp_path / "mock",
                                    n_boot=0)
    table = result.results.set_index("trial_id")
    assert (table["status"] == "ok").all() and len(table) >= 9
    # the plan's N and D, not the reference GPT's sizes (was: the GPT's N on a linear layer's sweep)
    assert sorted(table.index) == sorted(s.trial_id for s in planned)
    for spec in planned:
        assert (table.loc[spec.trial_id, "n"], table.loc[spec.trial_id, "tokens"]) == (spec.n, spec.tokens)
        width = spec.model["size_value"]
        assert spec.n == width * width + width
    law = ScalingLaw(**{k: DEFAULT_SIMULATED_LAW[k] for k in ("E", "A", "B", "alpha", "beta")})
    exact = law.loss(table["n"].to_numpy(float), table["tokens"].to_numpy(float))
    assert abs(table["loss"].to_numpy() / exact - 1).max() < 5 * DEFAULT_SIMULATED_LAW["noise"]
    shown = capfd.readouterr()
    printed = shown.out + shown.err
    assert "done |" in printed and "ETA" in printed  # our progress lines, with the ETA
    assert "╭" not in printed and "/tmp/ray/session" not in printed  # not Ray's banner or its TensorBoard hint
    with pytest.raises(PlanError, match="resume=False"):
        flops_fit.find_optimal(model_cls=model_cls, model_size_param="width",
                               compute_budgets=budgets, mode="mock", output_dir=tmp_path / "mock",
                               resume=False, progress=False)
