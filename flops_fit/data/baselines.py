"""How far a language model got: the unigram and bigram cross-entropies of its text.

Training a language model from scratch first drops the loss from ln V to about the unigram
entropy (it learns token frequencies) and often stalls there before it uses context: the
initial plateau. A run that ends before it is well on the way to the bigram level has not
measured its size's loss at this budget, only how few steps it had (on the tiny
demo the largest model of each budget ended at 4.1-4.2 nats where the budget's best run
reached 1.0-2.7; unigram 5.18, bigram 2.79). ``plateau_level`` is the line between the two:
halfway from the unigram to the bigram cross-entropy of the validation text, both estimated
from a prefix of the training text. Pure numpy.
"""

from __future__ import annotations

import math

import numpy as np

#: Training tokens the baselines are counted on (the cached first shards every trial reads).
BASELINE_TOKENS = 1 << 18
#: Strength (in tokens) of the Dirichlet prior that smooths each bigram row towards the
#: unigram distribution (MacKay & Peto 1995): unseen pairs keep the unigram's probability.
BIGRAM_PRIOR = 10.0


def cross_entropies(train: np.ndarray, val: np.ndarray, vocab_size: int) -> tuple[float, float]:
    """(unigram, bigram) cross-entropy in nats/token of ``val`` under models counted on ``train``."""
    train = np.asarray(train, dtype=np.int64)
    val = np.asarray(val, dtype=np.int64)
    if train.size < 2 or val.size < 2:
        raise ValueError("need at least two training and two validation tokens")
    counts = np.bincount(train, minlength=vocab_size).astype(np.float64) + 0.5  # add-half: no zero probability
    p1 = counts / counts.sum()
    unigram = float(-np.mean(np.log(p1[val])))
    # Bigram counts on pair codes (sparse: V^2 cells would not fit for V = 50k).
    pairs, pair_counts = np.unique(train[:-1] * vocab_size + train[1:], return_counts=True)
    context = np.bincount(train[:-1], minlength=vocab_size).astype(np.float64)
    a, b = val[:-1], val[1:]
    codes = a * vocab_size + b
    at = np.minimum(np.searchsorted(pairs, codes), len(pairs) - 1)
    seen = np.where(pairs[at] == codes, pair_counts[at], 0).astype(np.float64)
    p2 = (seen + BIGRAM_PRIOR * p1[b]) / (context[a] + BIGRAM_PRIOR)
    bigram = float(-np.mean(np.log(p2)))
    return unigram, bigram


def plateau_level(unigram: float, bigram: float) -> float:
    """The validation loss a trained run gets below: halfway from unigram to bigram."""
    if not (math.isfinite(unigram) and math.isfinite(bigram)):
        raise ValueError(f"baselines must be finite, got {unigram}, {bigram}")
    return (unigram + bigram) / 2
