"""genbook.metrics.evaluator_training: the evaluators' shared loop learns, repeats itself exactly, refuses bad sizes."""

import pytest
import torch
import torch.nn.functional as F

from genbook.metrics.evaluator_training import train_one_cycle


def _run(seed=0):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 5, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()  # a linearly separable task
    torch.manual_seed(seed)
    model = torch.nn.Linear(5, 2)
    losses = train_one_cycle(model, len(x), lambda i: F.cross_entropy(model(x[i]), y[i]),
                             epochs=5, batch_size=32, lr=0.1, seed=seed, threads=1)
    accuracy = (model(x).argmax(1) == y).float().mean().item()
    return model, losses, accuracy


def test_learns_and_reports_every_step():
    model, losses, accuracy = _run()
    assert losses.shape == (5 * (200 // 32),)  # the last incomplete batch of each epoch is dropped
    assert losses[-5:].mean() < 0.5 * losses[:5].mean()
    assert accuracy > 0.95
    assert not model.training  # handed back in eval mode


def test_same_seed_same_weights():
    a, b = _run(seed=3)[0], _run(seed=3)[0]
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert not torch.equal(a.weight, _run(seed=4)[0].weight)


def test_too_few_examples_raise():
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="need at least one batch"):
        train_one_cycle(model, 10, lambda i: model(torch.zeros(len(i), 2)).sum(), epochs=1, batch_size=32,
                        lr=0.1, seed=0, threads=1)
