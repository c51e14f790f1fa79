"""Held-out cross-entropy and the unigram / bigram baselines."""

import math

import pytest
import torch

from genbook.metrics.text import (
    bigram_baseline,
    bits_per_token,
    cross_entropy_per_token,
    perplexity,
    unigram_baseline,
)


def test_cross_entropy_matches_log_softmax_and_uniform_is_log_v():
    g = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(2, 5, 7, generator=g), torch.randint(0, 7, (2, 5), generator=g)
    expected = -torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).mean().item()
    assert cross_entropy_per_token(logits, targets) == pytest.approx(expected, rel=1e-6)
    assert cross_entropy_per_token(torch.zeros(10, 50), torch.arange(10)) == pytest.approx(math.log(50), rel=1e-6)


def test_ignore_index_is_left_out():
    logits = torch.tensor([[[5.0, 0.0], [0.0, 5.0], [0.0, 0.0]]])
    targets = torch.tensor([[0, 1, -1]])
    assert cross_entropy_per_token(logits, targets, ignore_index=-1) == pytest.approx(math.log(1 + math.exp(-5)))


def test_cross_entropy_errors():
    with pytest.raises(ValueError, match="shape"):
        cross_entropy_per_token(torch.zeros(2, 5, 7), torch.zeros(2, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"0\.\.6"):
        cross_entropy_per_token(torch.zeros(2, 7), torch.tensor([1, 7]))
    with pytest.raises(TypeError):
        cross_entropy_per_token(torch.zeros(2, 7), torch.tensor([1.0, 2.0]))


def test_unigram_by_hand():
    train, val = torch.tensor([0, 0, 0, 1]), torch.tensor([0, 1, 2])
    # add-1, V = 3: p = (3+1)/7, (1+1)/7, (0+1)/7
    expected = -(math.log(4 / 7) + math.log(2 / 7) + math.log(1 / 7)) / 3
    assert unigram_baseline(train, val, 3) == pytest.approx(expected)
    assert unigram_baseline(train, val, 3, k=1e9) == pytest.approx(math.log(3), rel=1e-6)  # k -> inf: uniform


def naive_bigram(train, val, vocab, k):
    counts = torch.zeros(vocab, vocab, dtype=torch.float64)
    for a, b in zip(train[:-1].tolist(), train[1:].tolist(), strict=True):
        counts[a, b] += 1
    probs = (counts + k) / (counts.sum(1, keepdim=True) + k * vocab)
    return -torch.log(probs[val[:-1], val[1:]]).mean().item()


def test_bigram_matches_a_dense_count_table():
    g = torch.Generator().manual_seed(1)
    train, val = torch.randint(0, 12, (500,), generator=g), torch.randint(0, 12, (80,), generator=g)
    assert bigram_baseline(train, val, 12, k=0.3) == pytest.approx(naive_bigram(train, val, 12, 0.3), rel=1e-12)


def test_bigram_beats_unigram_on_structured_text():
    train = torch.tensor([0, 1, 2, 3] * 200)
    val = torch.tensor([0, 1, 2, 3] * 20)
    unigram, bigram = unigram_baseline(train, val, 10), bigram_baseline(train, val, 10, k=0.01)
    assert unigram == pytest.approx(math.log(4), rel=0.02)
    assert bigram < 0.1 < unigram
    assert bits_per_token(math.log(2)) == pytest.approx(1.0) and perplexity(math.log(7)) == pytest.approx(7.0)


def test_baseline_errors():
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        unigram_baseline(torch.tensor([0, 10]), torch.tensor([1]), 10)
    with pytest.raises(ValueError, match="k"):
        bigram_baseline(torch.tensor([0, 1, 2]), torch.tensor([1, 2]), 10, k=0)
    with pytest.raises(ValueError, match="shape"):
        unigram_baseline(torch.tensor([[0, 1]]), torch.tensor([1]), 10)
    with pytest.raises(TypeError):
        unigram_baseline(torch.tensor([0.0, 1.0]), torch.tensor([1]), 10)
