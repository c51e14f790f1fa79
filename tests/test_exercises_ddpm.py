"""Chapter 05's exercise checks pass correct answers and explain wrong ones."""

import pytest
import torch

from genbook.exercises import ExerciseFailed
from genbook.exercises.ddpm import check_eps_and_x0_from_v, check_posterior, check_x0_from_output


def alphas_bar_prev(t, schedule):
    return torch.cat([torch.ones(1, dtype=torch.float64), schedule.alphas_bar[:-1]])[t]


def posterior(x0, x_t, t, schedule):  # eq. 7
    a, a_prev = schedule.alphas_bar[t], alphas_bar_prev(t, schedule)
    beta, alpha = schedule.betas[t], schedule.alphas[t]
    c0 = (a_prev.sqrt() * beta / (1 - a)).reshape(-1, 1, 1, 1)
    ct = (alpha.sqrt() * (1 - a_prev) / (1 - a)).reshape(-1, 1, 1, 1)
    return c0 * x0 + ct * x_t, (1 - a_prev) / (1 - a) * beta


def eps_and_x0_from_v(x_t, v, t, schedule):
    a = schedule.alphas_bar[t].reshape(-1, 1, 1, 1)
    return a.sqrt() * v + (1 - a).sqrt() * x_t, a.sqrt() * x_t - (1 - a).sqrt() * v


def test_correct_answers_pass():
    check_posterior(posterior)
    check_eps_and_x0_from_v(eps_and_x0_from_v)


def test_stubs_say_not_solved():
    def stub(*args):
        raise NotImplementedError("Exercise 5.1: write posterior")
    with pytest.raises(ExerciseFailed, match="not solved yet"):
        check_posterior(stub)
    with pytest.raises(ExerciseFailed, match="not solved yet"):
        check_eps_and_x0_from_v(stub)


def test_wrapping_around_at_t_zero_gets_a_hint():
    def wrapped(x0, x_t, t, schedule):
        a, a_prev = schedule.alphas_bar[t], schedule.alphas_bar[t - 1]  # t - 1 = -1 at t = 0: the last entry
        beta, alpha = schedule.betas[t], schedule.alphas[t]
        mean = (a_prev.sqrt() * beta / (1 - a)).reshape(-1, 1, 1, 1) * x0 + (
            alpha.sqrt() * (1 - a_prev) / (1 - a)).reshape(-1, 1, 1, 1) * x_t
        return mean, (1 - a_prev) / (1 - a) * beta
    with pytest.raises(ExerciseFailed, match="except at t = 0"):
        check_posterior(wrapped)


def test_wrong_variance_fails():
    def beta_variance(x0, x_t, t, schedule):
        return posterior(x0, x_t, t, schedule)[0], schedule.betas[t]  # σ² = β_t is not the posterior's
    with pytest.raises(ExerciseFailed, match="posterior variance"):
        check_posterior(beta_variance)


def test_swapped_or_wrong_v_conversions_fail():
    with pytest.raises(ExerciseFailed, match="return \\(eps, x0\\), in that order"):
        check_eps_and_x0_from_v(lambda *a: eps_and_x0_from_v(*a)[::-1])
    def wrong_sign(x_t, v, t, schedule):
        a = schedule.alphas_bar[t].reshape(-1, 1, 1, 1)
        return a.sqrt() * v - (1 - a).sqrt() * x_t, a.sqrt() * x_t - (1 - a).sqrt() * v
    with pytest.raises(ExerciseFailed, match="rotation"):
        check_eps_and_x0_from_v(wrong_sign)
    with pytest.raises(ExerciseFailed, match="pair"):
        check_eps_and_x0_from_v(lambda *a: a[0])


def x0_from_output(out, x_t, t, schedule, skip):
    a = schedule.alphas_bar[t].reshape(-1, 1, 1, 1).to(out.dtype)
    if skip:
        return a.sqrt() * x_t - (1 - a).sqrt() * out
    return (x_t - (1 - a).sqrt() * out) / a.sqrt()


def test_x0_from_output_passes_and_catches_mistakes():
    check_x0_from_output(x0_from_output)

    def via_eps(out, x_t, t, schedule, skip):  # right in float64, loses precision in float32 near t = T
        a = schedule.alphas_bar[t].reshape(-1, 1, 1, 1).to(out.dtype)
        eps = (1 - a).sqrt() * x_t + a.sqrt() * out if skip else out
        return (x_t - (1 - a).sqrt() * eps) / a.sqrt()
    with pytest.raises(ExerciseFailed, match="in float32"):
        check_x0_from_output(via_eps)

    def ignores_skip(out, x_t, t, schedule, skip):  # treats F as ε
        return x0_from_output(out, x_t, t, schedule, False)
    with pytest.raises(ExerciseFailed, match="skip in time"):
        check_x0_from_output(ignores_skip)

    def wrong_index(out, x_t, t, schedule, skip):  # ᾱ_{t+1} instead of ᾱ_t
        return x0_from_output(out, x_t, (t + 1).clamp(max=schedule.T - 1), schedule, skip)
    with pytest.raises(ExerciseFailed):
        check_x0_from_output(wrong_index)

    with pytest.raises(ExerciseFailed, match="not solved yet"):
        check_x0_from_output(lambda *args: (_ for _ in ()).throw(NotImplementedError("Exercise 5.3")))
