"""The exercise checks of chapter 07 pass correct answers and catch typical mistakes."""

import math

import pytest
import torch

from genbook.exercises import ExerciseFailed
from genbook.exercises.flow_matching import check_cosine_path, check_heun_sampler, check_hutchinson_divergence


def cosine_path(x0, x1, t):
    a = (math.pi / 2 * t)[:, None]
    return torch.sin(a) * x1 + torch.cos(a) * x0, math.pi / 2 * (torch.cos(a) * x1 - torch.sin(a) * x0)


def heun(v, x, steps, correct=True):
    h = 1.0 / steps
    for n in range(steps):
        t = torch.full((len(x),), n * h, dtype=x.dtype)
        k1 = v(x, t)
        x = x + 0.5 * h * (k1 + v(x + h * k1, t + h)) if correct else x + h * k1
    return x


def hutchinson(v, x, t, probes):
    x = x.detach().requires_grad_(True)
    out = v(x, t)
    total = 0
    for eps in probes:
        (vjp,) = torch.autograd.grad(out, x, eps, retain_graph=True)
        total = total + (vjp * eps).sum(1)
    return total / len(probes)


def test_correct_answers_pass():
    check_cosine_path(cosine_path)
    check_heun_sampler(heun)
    check_hutchinson_divergence(hutchinson)


def test_stubs_say_not_solved():
    def stub(*args):
        raise NotImplementedError("write it")
    for check in (check_cosine_path, check_heun_sampler, check_hutchinson_divergence):
        with pytest.raises(ExerciseFailed, match="not solved yet"):
            check(stub)


def test_wrong_velocity_is_caught():
    def no_chain_rule(x0, x1, t):
        x_t, _ = cosine_path(x0, x1, t)
        return x_t, x1 - x0
    with pytest.raises(ExerciseFailed, match="u_t"):
        check_cosine_path(no_chain_rule)


def test_euler_instead_of_heun_is_named():
    with pytest.raises(ExerciseFailed, match="Euler"):
        check_heun_sampler(lambda v, x, steps: heun(v, x, steps, correct=False))


def test_trace_of_wrong_product_is_caught():
    def jacobian_sum(v, x, t, probes):
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(v(x, t).sum(), x)
        return g.sum(1)
    with pytest.raises(ExerciseFailed):
        check_hutchinson_divergence(jacobian_sum)


def test_hutchinson_at_the_wrong_point_or_time_is_caught():
    """The test field is nonlinear, so its Jacobian depends on x and t: the wrong point must fail."""
    def at_zero(v, x, t, probes):
        return hutchinson(v, torch.zeros_like(x), t, probes)

    def at_time_zero(v, x, t, probes):
        return hutchinson(v, x, torch.zeros_like(t), probes)

    for wrong in (at_zero, at_time_zero):
        with pytest.raises(ExerciseFailed):
            check_hutchinson_divergence(wrong)
