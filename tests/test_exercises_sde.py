"""Chapter 06's exercise checks pass correct answers and explain typical wrong ones."""

import pytest
import torch

from genbook.exercises import ExerciseFailed
from genbook.exercises.sde import check_reverse_sde_step, check_score_from_eps, check_vp_mean_std


def integral(t, beta_min, beta_max):
    return beta_min * t + 0.5 * (beta_max - beta_min) * t**2


def vp_mean_std(x0, t, beta_min, beta_max):
    alpha = torch.exp(-0.5 * integral(t, beta_min, beta_max))
    return alpha[:, None] * x0, torch.sqrt(1 - alpha**2)


def reverse_sde_step(x, t, dt, score, z, beta_min, beta_max):
    beta = (beta_min + t * (beta_max - beta_min))[:, None]
    return x - (-0.5 * beta * x - beta * score) * dt + torch.sqrt(beta * dt) * z


def score_from_eps(eps, t, sde):
    return -eps / sde.sigma(t)[:, None]


def test_correct_answers_pass():
    check_vp_mean_std(vp_mean_std)
    check_reverse_sde_step(reverse_sde_step)
    check_score_from_eps(score_from_eps)


def test_stubs_say_not_solved():
    def stub(*args):
        raise NotImplementedError("write it")
    for check in (check_vp_mean_std, check_reverse_sde_step, check_score_from_eps):
        with pytest.raises(ExerciseFailed, match="not solved yet"):
            check(stub)


@pytest.mark.parametrize("wrong, message", [
    (lambda x0, t, lo, hi: (torch.exp(-integral(t, lo, hi))[:, None] * x0,
                            torch.sqrt(1 - torch.exp(-2 * integral(t, lo, hi)))), "twice too fast"),
    (lambda x0, t, lo, hi: (torch.exp(-0.5 * (lo + t * (hi - lo)) * t)[:, None] * x0, t), "β\\(t\\)·t"),
    (lambda x0, t, lo, hi: (vp_mean_std(x0, t, lo, hi)[0], vp_mean_std(x0, t, lo, hi)[1] ** 2), "variance"),
    (lambda x0, t, lo, hi: (vp_mean_std(x0, t, lo, hi)[0], 1 - torch.exp(-0.5 * integral(t, lo, hi))),
     "not variance-preserving"),
    (lambda x0, t, lo, hi: vp_mean_std(x0, t, lo, hi)[0], "pair"),
])
def test_wrong_marginals_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_vp_mean_std(wrong)


def _beta(t, lo, hi):
    return (lo + t * (hi - lo))[:, None]


@pytest.mark.parametrize("wrong, message", [
    (lambda x, t, dt, s, z, lo, hi: x - (-0.5 * _beta(t, lo, hi) * (x + s)) * dt
     + torch.sqrt(_beta(t, lo, hi) * dt) * z, "probability-flow drift"),
    (lambda x, t, dt, s, z, lo, hi: x + (-0.5 * _beta(t, lo, hi) * x - _beta(t, lo, hi) * s) * dt
     + torch.sqrt(_beta(t, lo, hi) * dt) * z, "step forward in time"),
    (lambda x, t, dt, s, z, lo, hi: x - (-0.5 * _beta(t, lo, hi) * x - _beta(t, lo, hi) * s) * dt
     + torch.sqrt(_beta(t, lo, hi)) * dt * z, "√dt"),
    (lambda x, t, dt, s, z, lo, hi: x + _beta(t, lo, hi) * s * dt + torch.sqrt(_beta(t, lo, hi) * dt) * z,
     "no drift f"),
    (lambda x, t, dt, s, z, lo, hi: x - (-0.5 * _beta(t, lo, hi) * x - _beta(t, lo, hi) * s) * dt,
     "differs from the reference"),
])
def test_wrong_reverse_steps_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_reverse_sde_step(wrong)


@pytest.mark.parametrize("wrong, message", [
    (lambda eps, t, sde: -eps / sde.sigma(t)[:, None] ** 2, "divide by σ_t once"),
    (lambda eps, t, sde: eps / sde.sigma(t)[:, None], "points back towards the data"),
    (lambda eps, t, sde: -sde.alpha(t)[:, None] * eps / sde.sigma(t)[:, None], "scaled by α_t"),
    (lambda eps, t, sde: -eps, "differs from the reference"),
])
def test_wrong_scores_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_score_from_eps(wrong)
