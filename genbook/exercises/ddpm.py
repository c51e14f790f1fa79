"""Checks for the exercises of chapter 05 (denoising diffusion probabilistic models).

* Exercise 5.1: the forward-process posterior q(x_{t−1} | x_t, x_0) (Ho et al. 2020, eqs. 6–7),
  checked against Bayes' rule for two Gaussians, computed independently here.
* Exercise 5.2: the v-parametrisation (Salimans & Ho 2022, "Progressive Distillation for Fast
  Sampling of Diffusion Models", appendix D): recover ε and x_0 from x_t and v.
* Exercise 5.3: the predicted clean image x̂_0 from the network's raw output, for plain ε-prediction
  (Ho et al. 2020) and for the chapter's skip in time ε_θ = √(1 − ᾱ_t) x_t + √ᾱ_t F_θ; in float32 the
  skip's x̂_0 must be computed without dividing by √ᾱ_t, or it loses its precision near t = T.
"""

from __future__ import annotations

import torch

from genbook.diffusion.schedules import NoiseSchedule

from .core import ExerciseFailed, call_student, expect_close

EXERCISE_POSTERIOR = "Exercise 5.1 (posterior)"
EXERCISE_V = "Exercise 5.2 (eps_and_x0_from_v)"
EXERCISE_X0 = "Exercise 5.3 (x0_from_output)"


def _problem(seed: int, schedule: NoiseSchedule):
    g = torch.Generator().manual_seed(seed)
    t = torch.tensor([0, 1, 10, 200, 500, schedule.T - 1])
    x0 = torch.rand(len(t), 1, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    a = schedule.alphas_bar[t].reshape(-1, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps  # eq. 4
    return t, x0, eps, x_t


def posterior_by_bayes(x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, schedule: NoiseSchedule):
    """Mean and variance of q(x_{t−1} | x_t, x_0) from Bayes' rule (the independent reference).

    prior q(x_{t−1} | x_0) = N(√ᾱ_{t−1} x_0, 1 − ᾱ_{t−1}), likelihood q(x_t | x_{t−1}) = N(√α_t x_{t−1}, β_t):
    the posterior precision is the sum of precisions, its mean the precision-weighted sum of the two estimates.
    At index 0 (the paper's t = 1), ᾱ_0 = 1: x_0 is x_{t−1} itself, with variance 0.
    """
    a_prev = torch.cat([torch.ones(1, dtype=torch.float64), schedule.alphas_bar[:-1]])[t].reshape(-1, 1, 1, 1)
    alpha, beta = schedule.alphas[t].reshape(-1, 1, 1, 1), schedule.betas[t].reshape(-1, 1, 1, 1)
    mean = torch.empty_like(x0)
    var = torch.zeros(len(t), 1, 1, 1, dtype=torch.float64)
    first = t == 0
    mean[first] = x0[first]
    rest = ~first
    precision = 1 / (1 - a_prev[rest]) + alpha[rest] / beta[rest]
    var[rest] = 1 / precision
    from_x0 = a_prev[rest].sqrt() * x0[rest] / (1 - a_prev[rest])  # prior mean × prior precision
    from_xt = alpha[rest].sqrt() * x_t[rest] / beta[rest]  # likelihood's estimate × its precision
    mean[rest] = var[rest] * (from_x0 + from_xt)
    return mean, var


def check_posterior(fn) -> None:
    """Check ``fn(x0, x_t, t, schedule) -> (mean, variance)`` of q(x_{t−1} | x_t, x_0).

    x0, x_t: (B, C, H, W); t: (B,) int64 indices 0..T−1; mean: (B, C, H, W); variance: (B,) or (B, 1, 1, 1).
    Tested on the linear and the cosine schedule (T = 1000), at indices 0 to T − 1, in float64.
    """
    for schedule in (NoiseSchedule.linear(1000), NoiseSchedule.cosine(1000)):
        t, x0, _, x_t = _problem(5, schedule)
        out = call_student(fn, x0, x_t, t, schedule, exercise=EXERCISE_POSTERIOR)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise ExerciseFailed("posterior(...) should return a pair (mean, variance).")
        mean, var = out
        want_mean, want_var = posterior_by_bayes(x0, x_t, t, schedule)
        if isinstance(var, torch.Tensor) and var.shape == (len(t),):
            var = var.reshape(-1, 1, 1, 1)
        hint0 = ("At index t = 0 (the paper's t = 1) use ᾱ_{t−1} = 1: then β̃ = 0 and the mean is x_0. "
                 "Did you index alphas_bar[t - 1] and wrap around to alphas_bar[-1]?")
        if isinstance(mean, torch.Tensor) and mean.shape == x0.shape and torch.isfinite(mean).all():
            wrong_first = not torch.allclose(mean[:1].double(), want_mean[:1], atol=1e-6)
            right_rest = torch.allclose(mean[1:].double(), want_mean[1:], atol=1e-6, rtol=1e-6)
            if wrong_first and right_rest:
                raise ExerciseFailed(f"the mean is right except at t = 0. {hint0}")
        expect_close(mean, want_mean, what=f"the posterior mean μ̃_t ({schedule.name} schedule)", atol=1e-6,
                     rtol=1e-6, hint="Eq. 7: μ̃_t = √ᾱ_{t−1} β_t/(1 − ᾱ_t) · x_0 + √α_t (1 − ᾱ_{t−1})/(1 − ᾱ_t) · x_t.")
        expect_close(var, want_var, what=f"the posterior variance β̃_t ({schedule.name} schedule)", atol=1e-9,
                     rtol=1e-6, hint="Eq. 7: β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t) · β_t, shape (B,) or (B, 1, 1, 1). " + hint0)


def check_eps_and_x0_from_v(fn) -> None:
    """Check ``fn(x_t, v, t, schedule) -> (eps, x0)`` where v = √ᾱ_t ε − √(1 − ᾱ_t) x_0.

    x_t, v: (B, C, H, W); t: (B,) int64 indices 0..T−1. The reference draws x_0 and ε,
    builds x_t (eq. 4) and v, and expects the reader's function to recover both.
    """
    schedule = NoiseSchedule.cosine(1000)
    t, x0, eps, x_t = _problem(7, schedule)
    a = schedule.alphas_bar[t].reshape(-1, 1, 1, 1)
    v = a.sqrt() * eps - (1 - a).sqrt() * x0
    out = call_student(fn, x_t, v, t, schedule, exercise=EXERCISE_V)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise ExerciseFailed("eps_and_x0_from_v(...) should return a pair (eps, x0).")
    got_eps, got_x0 = out
    swapped = isinstance(got_eps, torch.Tensor) and got_eps.shape == x0.shape
    if swapped and torch.allclose(got_eps.double(), x0, atol=1e-6):
        raise ExerciseFailed("the first output equals x_0: return (eps, x0), in that order.")
    hint = ("(x_t, v) is a rotation of (x_0, ε) by the angle φ with cos φ = √ᾱ_t, sin φ = √(1 − ᾱ_t): "
            "invert it with the transposed rotation.")
    expect_close(got_eps, eps, what="ε", atol=1e-6, rtol=1e-6, hint=hint)
    expect_close(got_x0, x0, what="x_0", atol=1e-6, rtol=1e-6, hint=hint)


def x0_from_output_reference(out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, schedule: NoiseSchedule,
                             skip: bool) -> torch.Tensor:
    """x̂_0 = (x_t − √(1 − ᾱ_t) ε̂)/√ᾱ_t (eq. 4 solved for x_0) with ε̂ = out (plain) or √(1 − ᾱ_t) x_t + √ᾱ_t out.

    Computed in float64 from the definitions: the reference the reader's float32 answer is compared with.
    """
    a = schedule.alphas_bar[t].reshape(-1, 1, 1, 1)
    out, x_t = out.double(), x_t.double()
    eps = (1 - a).sqrt() * x_t + a.sqrt() * out if skip else out
    return (x_t - (1 - a).sqrt() * eps) / a.sqrt()


def check_x0_from_output(fn) -> None:
    """Check ``fn(out, x_t, t, schedule, skip) -> x0_hat`` (B, C, H, W).

    ``out`` is the raw network output (B, C, H, W): ε̂ itself when ``skip`` is False, F_θ of the
    skip in time when it is True. Tested in float64 at indices 0..T−1, then in float32, where the
    skip's x̂_0 must come out accurate to 1e-5 at t = T too (no division by √ᾱ_t ≈ 5e-5).
    """
    schedule = NoiseSchedule.cosine(1000)
    t, x0, eps, x_t = _problem(11, schedule)
    out_plain = eps + 0.01 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    a = schedule.alphas_bar[t].reshape(-1, 1, 1, 1)
    out_skip = a.sqrt() * eps - (1 - a).sqrt() * x0  # the ideal F (v), slightly perturbed below
    out_skip = out_skip + 0.01 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(13), dtype=torch.float64)
    for skip, out in ((False, out_plain), (True, out_skip)):
        got = call_student(fn, out, x_t, t, schedule, skip, exercise=EXERCISE_X0)
        kind = "the skip in time (skip=True)" if skip else "plain ε-prediction (skip=False)"
        hint = ("Plain: ε̂ = out. Skip: ε̂ = √(1 − ᾱ_t) x_t + √ᾱ_t out. Then x̂_0 = (x_t − √(1 − ᾱ_t) ε̂)/√ᾱ_t; "
                "t holds indices into schedule.alphas_bar.")
        expect_close(got, x0_from_output_reference(out, x_t, t, schedule, skip), what=f"x̂_0 under {kind}, float64",
                     atol=1e-8, rtol=1e-8, hint=hint)
    # float32, the dtype of a network's output: the skip's x̂_0 simplifies to √ᾱ_t x_t − √(1 − ᾱ_t) F
    got = call_student(fn, out_skip.float(), x_t.float(), t, schedule, True, exercise=EXERCISE_X0)
    want = x0_from_output_reference(out_skip.float(), x_t.float(), t, schedule, True)
    expect_close(got, want, what="x̂_0 under the skip in time, in float32", atol=1e-5, rtol=1e-5,
                 hint="Correct in float64 but not in float32: at t = T, √ᾱ_t ≈ 5e-5, and computing ε̂ first, "
                      "then dividing by √ᾱ_t, multiplies float32's rounding error by 2e4. Substitute ε̂ into x̂_0 "
                      "and simplify: the x_t terms combine and nothing is divided.")
