"""Checks for the exercise of chapter 00 (the preface): sampling from a Gaussian mixture."""

from __future__ import annotations

import math

import torch

from .core import ExerciseFailed, call_student

EXERCISE = "Exercise 0.1 (sample_mixture)"


def mixture_cdf(x: torch.Tensor, logits, means, log_stds) -> torch.Tensor:
    """P(X <= x) of a 1-D Gaussian mixture, in closed form (the independent reference)."""
    weights = logits.double().softmax(-1)
    z = (x.double()[:, None] - means.double()) / log_stds.double().exp()
    return (weights * 0.5 * (1 + torch.erf(z / math.sqrt(2)))).sum(-1)


def check_sample_mixture(fn, n: int = 100_000) -> None:
    """Check ``fn(n, logits, means, log_stds, generator) -> (n,)`` draws from the mixture.

    The empirical CDF of ``n`` samples must match the closed-form CDF everywhere
    within 5/sqrt(n) (a Kolmogorov–Smirnov bound that a correct sampler breaks
    with probability far below one in a million), and the same generator seed
    must give the same samples.
    """
    logits = torch.tensor([0.0, 1.0, -0.5])
    means = torch.tensor([-3.0, 0.5, 4.0])
    log_stds = torch.tensor([-0.7, 0.0, -1.2])
    args = (logits, means, log_stds)
    x = call_student(fn, n, *args, torch.Generator().manual_seed(1), exercise=EXERCISE)
    if not isinstance(x, torch.Tensor) or x.shape != (n,):
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ExerciseFailed(f"sample_mixture(n={n}, ...) should return a tensor of shape ({n},), got {got}.")
    if not x.is_floating_point() or not torch.isfinite(x).all():
        raise ExerciseFailed("the samples should be finite floating point numbers.")
    again = call_student(fn, n, *args, torch.Generator().manual_seed(1), exercise=EXERCISE)
    if not torch.equal(x, again):
        raise ExerciseFailed("two calls with generators of the same seed gave different samples: "
                             "pass `generator=generator` to every torch random call.")
    xs = x.double().sort().values
    empirical = torch.arange(1, n + 1, dtype=torch.float64) / n
    gap = (empirical - mixture_cdf(xs, *args)).abs().max().item()
    if gap > 5 / math.sqrt(n):
        weights = logits.softmax(-1)
        true_var = (weights * (log_stds.exp() ** 2 + means**2)).sum() - ((weights * means).sum()) ** 2
        hint = ""
        if x.var() < 0.5 * true_var:
            hint = (" The samples spread far less than the mixture does: pick ONE component per sample "
                    "(torch.multinomial on the weights), then add that component's noise; do not average components.")
        raise ExerciseFailed(
            f"the samples do not follow the mixture: their CDF is {gap:.3f} away from the true CDF "
            f"(a correct sampler stays below {5 / math.sqrt(n):.3f}).{hint}"
        )
