"""A run that ends on the initial plateau is recorded ``undertrained``,
kept in the table and left out of the fits with a note; the plateau level comes from the
text itself (halfway from its unigram to its bigram cross-entropy)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from flops_fit.data.baselines import cross_entropies, plateau_level
from flops_fit.planning.grid import plan


def test_baselines_recover_known_entropies():
    rng = np.random.default_rng(0)
    iid = rng.integers(0, 16, 200_000)  # no context to use: bigram = unigram = ln 16
    uni, bi = cross_entropies(iid[:150_000], iid[150_000:], 16)
    assert uni == pytest.approx(math.log(16), abs=0.01) and bi == pytest.approx(uni, abs=0.02)
    # a Markov chain that repeats its token with probability 0.9, else one of 8 uniformly
    x = [0]
    for u, r in zip(rng.random(100_000), rng.integers(0, 8, 100_000)):
        x.append(x[-1] if u < 0.9 else int(r))
    x = np.array(x)
    uni, bi = cross_entropies(x[:80_000], x[80_000:], 8)
    p_same = 0.9 + 0.1 / 8
    conditional = -(p_same * math.log(p_same) + 7 * (0.1 / 8) * math.log(0.1 / 8))
    assert uni == pytest.approx(math.log(8), abs=0.02) and bi == pytest.approx(conditional, abs=0.02)
    assert plateau_level(uni, bi) == pytest.approx((uni + bi) / 2)
    with pytest.raises(ValueError, match="two"):
        cross_entropies(x[:1], x, 8)


class _SampleWorkload:
    """The reference GPT on the session's sample cache, with the plateau level of that text."""

    def __init__(self, sample_data):
        from flops_fit.data.tinystories import TinyStoriesDataset

        self.kwargs = dict(sample_data)
        train = TinyStoriesDataset("train", 64, source="sample", num_tokens=200_000, **self.kwargs).prepare_data()
        val = TinyStoriesDataset("validation", 64, source="sample", num_tokens=8_192, **self.kwargs).prepare_data()
        self.unigram, self.bigram = cross_entropies(train.tokens(), val.tokens(), train.vocab_size_actual)
        self.plateau_loss = plateau_level(self.unigram, self.bigram)

    def open_data(self, spec):
        from flops_fit.data.tinystories import TinyStoriesDataset

        return (TinyStoriesDataset("train", spec.seq_len, source="sample", num_tokens=spec.tokens,
                                   **self.kwargs).prepare_data(),
                TinyStoriesDataset("validation", spec.seq_len, source="sample", num_tokens=8_192,
                                   **self.kwargs).prepare_data())

    def build_model(self, spec):
        from flops_fit.workloads.gpt import ReferenceGPT

        return ReferenceGPT().build_model(spec)


def test_a_run_still_on_the_plateau_is_undertrained_and_left_out_of_the_fits(sample_data):
    from flops_fit.config import TrainOptions
    from flops_fit.results.result import Result
    from flops_fit.trainer.trial import run_trial

    workload = _SampleWorkload(sample_data)
    assert workload.bigram + 1.0 < workload.unigram < math.log(512)  # the text has structure to learn
    base = plan([3e10], 3, vocab_size=512, seq_len=64, min_steps=8, max_batch_size=16, tokens_per_param=10.0,
                recipe="tiny")[1]  # the measured learning rate: 63 steps at a flat 3e-3 stay on the plateau
    short = dataclasses.replace(base, trial_id="short", steps=6, warmup_steps=1)
    rows = [run_trial(s, workload, TrainOptions(threads=1, checkpoint_every_s=1e9)).metrics for s in (base, short)]
    trained, stuck = rows
    assert trained["status"] == "ok" and trained["loss"] < workload.plateau_loss, trained["loss"]
    assert stuck["status"] == "undertrained" and stuck["loss"] > workload.plateau_loss
    assert "plateau" in stuck["error"] and stuck["plateau_loss"] == pytest.approx(workload.plateau_loss)
    assert trained["epochs"] == pytest.approx(base.tokens / (len(workload.open_data(base)[0]) * 64))
    # kept in the table, out of the fits, with the reason in the notes
    result = Result(pd.DataFrame(rows), n_boot=0)
    assert list(result.results["status"]) == ["ok", "undertrained"]
    assert any("short (undertrained: loss" in n for n in result.notes), result.notes
    assert any(n.startswith("undertrained: ") for n in result.notes)
