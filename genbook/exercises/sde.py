"""Checks for the exercises of chapter 06 (score-based models and SDEs).

* Exercise 6.1: the marginal x_t | x_0 of the VP SDE (Song et al. 2021, eq. 29), checked against
  a numerical quadrature of ∫β and a Monte Carlo simulation of the SDE, both independent of the closed form.
* Exercise 6.2: one Euler–Maruyama step of the reverse-time VP SDE (Anderson 1982; Song et al. 2021, eq. 6).
* Exercise 6.3: the score from a noise prediction, s = −ε/σ_t (Ho et al. 2020; Song et al. 2021, appendix B),
  checked on a Gaussian whose score is known in closed form.
"""

from __future__ import annotations

import math

import torch

from .core import ExerciseFailed, call_student, expect_close

EXERCISE_MARGINAL = "Exercise 6.1 (vp_mean_std)"
EXERCISE_STEP = "Exercise 6.2 (reverse_sde_step)"
EXERCISE_SCORE = "Exercise 6.3 (score_from_eps)"
BETA_MIN, BETA_MAX = 0.1, 20.0


def _beta(t, beta_min=BETA_MIN, beta_max=BETA_MAX):
    return beta_min + t * (beta_max - beta_min)


def _integral_by_quadrature(t: torch.Tensor, beta_min: float, beta_max: float) -> torch.Tensor:
    """∫₀ᵗ β(s) ds by the trapezoidal rule on 2001 points (exact for a linear β up to rounding)."""
    grid = torch.linspace(0, 1, 2001, dtype=torch.float64)[None] * t[:, None]  # (B, 2001)
    return torch.trapezoid(_beta(grid, beta_min, beta_max), grid, dim=1)


def _as_pair(out, what: str):
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise ExerciseFailed(f"{what} should return a pair of tensors.")
    return out


def check_vp_mean_std(fn) -> None:
    """Check ``fn(x0, t, beta_min, beta_max) -> (mean, std)`` of x_t | x_0 under the VP SDE.

    x0: (B, D) float64, t: (B,) float64 in [0, 1]; mean: (B, D); std: (B,) (or (B, 1)).
    The reference integrates β numerically, and a Monte Carlo run of the SDE itself checks the result.
    """
    g = torch.Generator().manual_seed(0)
    t = torch.tensor([0.0, 1e-3, 0.05, 0.2, 0.5, 0.8, 1.0], dtype=torch.float64)
    x0 = torch.randn(len(t), 3, generator=g, dtype=torch.float64) + 1.5
    for beta_min, beta_max in ((BETA_MIN, BETA_MAX), (0.5, 5.0)):
        mean, std = _as_pair(call_student(fn, x0, t, beta_min, beta_max, exercise=EXERCISE_MARGINAL),
                             "vp_mean_std(...)")
        integral = _integral_by_quadrature(t, beta_min, beta_max)
        alpha = torch.exp(-0.5 * integral)
        want_mean, want_std = alpha[:, None] * x0, (1 - alpha**2).sqrt()
        if isinstance(std, torch.Tensor) and std.shape == (len(t), 1):
            std = std[:, 0]
        if isinstance(mean, torch.Tensor) and mean.shape == x0.shape:
            m = mean.double()
            if torch.allclose(m, torch.exp(-integral)[:, None] * x0, atol=1e-6):
                raise ExerciseFailed("the mean decays as exp(−∫β), twice too fast: the drift is −½ β x, so "
                                     "α_t = exp(−½ ∫₀ᵗ β(s) ds).")
            if torch.allclose(m, torch.exp(-0.5 * _beta(t, beta_min, beta_max) * t)[:, None] * x0, atol=1e-6):
                raise ExerciseFailed("you used β(t)·t for ∫₀ᵗ β(s) ds; β changes with s: "
                                     "∫₀ᵗ β = β_min t + ½ (β_max − β_min) t².")
        if isinstance(std, torch.Tensor) and std.shape == want_std.shape:
            if torch.allclose(std.double(), 1 - alpha**2, atol=1e-6) and not torch.allclose(want_std, 1 - alpha**2):
                raise ExerciseFailed("the second output is the variance 1 − α_t²; return the std √(1 − α_t²).")
            if torch.allclose(std.double(), 1 - alpha, atol=1e-6):
                raise ExerciseFailed("std = 1 − α_t is not variance-preserving: α_t² + σ_t² = 1, so σ_t = √(1 − α_t²).")
        hint = "α_t = exp(−½ ∫₀ᵗ β(s) ds), mean α_t x_0, std √(1 − α_t²) (Song et al. 2021, eq. 29)."
        expect_close(mean, want_mean, what=f"the mean (β from {beta_min} to {beta_max})", atol=1e-6, rtol=1e-6,
                     hint=hint)
        expect_close(std, want_std, what=f"the std (β from {beta_min} to {beta_max})", atol=1e-6, rtol=1e-6,
                     hint=hint)
    # An independent check of the whole picture: simulate dx = −½ β x dt + √β dw to t = 0.5 from one x_0.
    n, steps, t_end = 4000, 200, 0.5
    x = torch.full((n, 1), 2.0, dtype=torch.float64)
    h = t_end / steps
    for i in range(steps):
        b = _beta(torch.tensor((i + 0.5) * h, dtype=torch.float64))
        x = x - 0.5 * b * x * h + torch.sqrt(b * h) * torch.randn(n, 1, generator=g, dtype=torch.float64)
    mean, std = fn(torch.full((1, 1), 2.0, dtype=torch.float64), torch.tensor([t_end], dtype=torch.float64),
                   BETA_MIN, BETA_MAX)
    if abs(float(mean.reshape(-1)[0]) - x.mean().item()) > 5 * x.std().item() / math.sqrt(n) + 5e-3:
        raise ExerciseFailed(f"a simulation of the SDE ends with mean {x.mean().item():.4f}; yours says "
                             f"{float(mean.reshape(-1)[0]):.4f}.")


def check_reverse_sde_step(fn) -> None:
    """Check ``fn(x, t, dt, score, z, beta_min, beta_max) -> x`` at time t − dt.

    One Euler–Maruyama step of the reverse-time VP SDE dx = [f − g² s] dt + g dw̄ run backwards from t by
    dt > 0: x − [f(x, t) − g(t)² s] dt + g(t) √dt z, with f = −½ β(t) x and g = √β(t). x, score, z: (B, D);
    t: (B,); dt: a float.
    """
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 2, generator=g, dtype=torch.float64)
    score = torch.randn(6, 2, generator=g, dtype=torch.float64)
    z = torch.randn(6, 2, generator=g, dtype=torch.float64)
    t = torch.tensor([1.0, 0.9, 0.6, 0.3, 0.1, 0.02], dtype=torch.float64)
    dt = 0.01
    out = call_student(fn, x, t, dt, score, z, BETA_MIN, BETA_MAX, exercise=EXERCISE_STEP)
    b = _beta(t)[:, None]
    drift = -0.5 * b * x - b * score  # f − g² s
    want = x - drift * dt + (b * dt).sqrt() * z
    wrong = {
        "the probability-flow drift f − ½ g² s (that is the ODE, which adds no noise); the SDE needs f − g² s":
            x - (-0.5 * b * x - 0.5 * b * score) * dt + (b * dt).sqrt() * z,
        "a step forward in time (x + drift · dt): the reverse process runs from t to t − dt":
            x + drift * dt + (b * dt).sqrt() * z,
        "noise scaled by g dt; Brownian increments scale with √dt: g √dt z": x - drift * dt + b.sqrt() * dt * z,
        "noise without g(t) = √β(t)": x - drift * dt + math.sqrt(dt) * z,
        "no drift f(x, t) = −½ β x: only the score term": x - (-b * score) * dt + (b * dt).sqrt() * z,
    }
    if isinstance(out, torch.Tensor) and out.shape == want.shape and torch.isfinite(out).all():
        for message, value in wrong.items():
            if torch.allclose(out.double(), value, atol=1e-9):
                raise ExerciseFailed(f"your step is {message}.")
    expect_close(out, want, what="x at t − dt", atol=1e-9, rtol=1e-9,
                 hint="x_{t−dt} = x − [−½ β(t) x − β(t) s] dt + √(β(t) dt) z.")


def check_score_from_eps(fn) -> None:
    """Check ``fn(eps, t, sde) -> score``: the score of p_t from a noise prediction ε(x_t, t).

    The data are one Gaussian N(μ, s² I), so p_t = N(α_t μ, (α_t² s² + σ_t²) I) has a closed-form score, and the
    best noise prediction E[ε | x_t] is known too: the reader's conversion must turn the second into the first.
    eps: (B, D); t: (B,); sde: a genbook VPSDE or VESDE (use ``sde.alpha(t)`` and ``sde.sigma(t)``).
    """
    from genbook.diffusion.sde import VESDE, VPSDE

    g = torch.Generator().manual_seed(2)
    mu, s2 = torch.tensor([1.0, -2.0], dtype=torch.float64), 0.3**2
    t = torch.tensor([0.01, 0.1, 0.4, 0.7, 1.0], dtype=torch.float64)
    for sde in (VPSDE(), VESDE(0.01, 10.0)):
        a, sig = sde.alpha(t)[:, None], sde.sigma(t)[:, None]
        var = a**2 * s2 + sig**2
        x_t = a * mu + var.sqrt() * torch.randn(len(t), 2, generator=g, dtype=torch.float64)
        want = -(x_t - a * mu) / var  # ∇ log N(x_t; α μ, var I)
        eps = sig * (x_t - a * mu) / var  # E[ε | x_t]: the noise's share of the deviation from the mean
        out = call_student(fn, eps, t, sde, exercise=EXERCISE_SCORE)
        if isinstance(out, torch.Tensor) and out.shape == want.shape:
            o = out.double()
            for message, value in (("−ε/σ_t²: divide by σ_t once; x_t = α_t x_0 + σ_t ε", -eps / sig**2),
                                   ("+ε/σ_t: the score points back towards the data, against the noise", eps / sig),
                                   ("scaled by α_t: the score of x_t does not involve α_t here", -a * eps / sig)):
                if not torch.allclose(value, want) and torch.allclose(o, value, atol=1e-8):
                    raise ExerciseFailed(f"your score is {message}.")
        expect_close(out, want, what=f"the score ({type(sde).__name__})", atol=1e-8, rtol=1e-6,
                     hint="∇ log p(x_t | x_0) = −(x_t − α_t x_0)/σ_t² = −ε/σ_t, so s = −ε_θ/σ_t.")
