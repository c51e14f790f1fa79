"""Exercise checks pass on a correct answer and fail, helpfully, on wrong ones and on stubs."""

import pytest
import torch

from genbook.exercises import ExerciseFailed, expect_close
from genbook.exercises.preface import check_sample_mixture


def correct(n, logits, means, log_stds, generator):
    k = torch.multinomial(logits.softmax(0), n, replacement=True, generator=generator)
    return means[k] + log_stds[k].exp() * torch.randn(n, generator=generator)


def test_correct_sampler_passes():
    check_sample_mixture(correct)


def test_stub_says_not_solved():
    def stub(*args):
        raise NotImplementedError("Exercise 0.1: write sample_mixture")
    with pytest.raises(ExerciseFailed, match="not solved yet: Exercise 0.1"):
        check_sample_mixture(stub)


def test_averaging_components_gets_a_hint():
    def averaged(n, logits, means, log_stds, generator):
        w = logits.softmax(0)
        return (w * means).sum() + (w * log_stds.exp()).sum() * torch.randn(n, generator=generator)
    with pytest.raises(ExerciseFailed, match="pick ONE component per sample"):
        check_sample_mixture(averaged)


def test_ignoring_the_generator_is_caught():
    def unseeded(n, logits, means, log_stds, generator):
        return correct(n, logits, means, log_stds, None)
    with pytest.raises(ExerciseFailed, match="same seed gave different samples"):
        check_sample_mixture(unseeded)


def test_wrong_weights_fail():
    def uniform_weights(n, logits, means, log_stds, generator):
        return correct(n, torch.zeros_like(logits), means, log_stds, generator)
    with pytest.raises(ExerciseFailed, match="do not follow the mixture"):
        check_sample_mixture(uniform_weights)


def test_wrong_shape_fails():
    with pytest.raises(ExerciseFailed, match=r"shape \(100000,\)"):
        check_sample_mixture(lambda n, *a: torch.zeros(n, 1))


def test_expect_close_messages():
    expect_close(torch.ones(3), torch.ones(3), what="x")
    with pytest.raises(ExerciseFailed, match=r"x has shape \(2,\), expected \(3,\)"):
        expect_close(torch.ones(2), torch.ones(3), what="x")
    with pytest.raises(ExerciseFailed, match=r"differs .* by up to 1 \(at index \[1\]"):
        expect_close(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 1.0]), what="x")
    with pytest.raises(ExerciseFailed, match="not finite at index"):
        expect_close(torch.tensor([1.0, float("-inf")]), torch.ones(2), what="x", hint="use logsumexp")
