"""Checks for the exercises of chapter 07 (flow matching).

- Exercise 7.1 :func:`check_cosine_path`: x_t and u_t of the cosine (trigonometric) path
  α_t = sin(πt/2), σ_t = cos(πt/2) (Albergo & Vanden-Eijnden 2023), a Gaussian path like the OT one.
- Exercise 7.2 :func:`check_heun_sampler`: Heun's second-order sampler for dx/dt = v(x, t), from t = 0 to 1.
- Exercise 7.3 :func:`check_hutchinson_divergence`: Hutchinson's trace estimator of div v
  (Grathwohl et al. 2019, eq. 7) with given probe vectors.
"""

from __future__ import annotations

import math

import torch

from ..flow.solvers import divergence, odeint
from .core import ExerciseFailed, call_student, expect_close

COSINE = "Exercise 7.1 (cosine_path)"
HEUN = "Exercise 7.2 (heun_sample)"
HUTCHINSON = "Exercise 7.3 (hutchinson_divergence)"


def check_cosine_path(fn) -> None:
    """``fn(x0, x1, t) -> (x_t, u_t)``, x0, x1 (B, D), t (B,): x_t = sin(πt/2) x1 + cos(πt/2) x0, u_t = dx_t/dt."""
    g = torch.Generator().manual_seed(7)
    x0, x1 = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(6, 3, generator=g, dtype=torch.float64)
    t = torch.tensor([0.0, 0.1, 0.35, 0.5, 0.9, 1.0], dtype=torch.float64)
    out = call_student(fn, x0, x1, t, exercise=COSINE)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise ExerciseFailed("cosine_path should return a pair (x_t, u_t).")
    a, s = torch.sin(math.pi * t / 2)[:, None], torch.cos(math.pi * t / 2)[:, None]
    expect_close(out[0], a * x1 + s * x0, what="x_t", atol=1e-6,
                 hint="x_t = sin(πt/2) x1 + cos(πt/2) x0; t has shape (B,): use t[:, None] to broadcast over D.")
    expect_close(out[1], math.pi / 2 * (s * x1 - a * x0), what="u_t", atol=1e-6,
                 hint="u_t = α̇_t x1 + σ̇_t x0 with α̇_t = (π/2) cos(πt/2) and σ̇_t = −(π/2) sin(πt/2).")
    if not torch.allclose(out[0][0], x0[0]) or not torch.allclose(out[0][-1], x1[-1]):
        raise ExerciseFailed("the path must start at the noise (x_0 at t = 0) and end at the data (x_1 at t = 1).")


def _spiral_field(x, t):
    """A smooth, time-dependent test field: a rotation that speeds up, plus a pull to (1, 0)."""
    rot = torch.stack([-x[:, 1], x[:, 0]], 1)
    return (1 + 2 * t[:, None]) * rot + torch.tensor([1.0, 0.0]) - 0.5 * x


def _curved_field(x, t):
    """A nonlinear, time-dependent test field: its Jacobian changes with x and with t (unlike the spiral's).

    v(x, t) = (1 + t) tanh(W x) + t (c ⊙ x²). A Jacobian taken at the wrong point or time, or a trace
    that ignores the probes, gives a different answer here.
    """
    W = torch.tensor([[0.8, -1.3], [1.1, 0.5]], dtype=x.dtype)
    c = torch.tensor([0.5, -0.3], dtype=x.dtype)
    return (1 + t[:, None]) * torch.tanh(x @ W.T) + t[:, None] * c * x.pow(2)


def check_heun_sampler(fn) -> None:
    """``fn(v, x0, steps) -> x1`` must take ``steps`` Heun steps of dx/dt = v(x, t) from t = 0 to t = 1."""
    x0 = torch.randn(5, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    calls = []

    def v(x, t):
        if not (isinstance(t, torch.Tensor) and t.shape == (x.shape[0],)):
            raise ExerciseFailed(f"call v(x, t) with t a tensor of shape (B,) = ({x.shape[0]},), one time per sample.")
        calls.append(1)
        return _spiral_field(x, t)

    for steps in (1, 4):
        calls.clear()
        got = call_student(fn, v, x0, steps, exercise=HEUN)
        want = odeint(_spiral_field, x0, steps=steps, method="heun")
        if isinstance(got, torch.Tensor) and torch.allclose(got, odeint(_spiral_field, x0, steps=steps)):
            raise ExerciseFailed("that is Euler's method: Heun averages the slope at the start, k1 = v(x, t), "
                                 "with the slope at the Euler guess, k2 = v(x + h k1, t + h).")
        expect_close(got, want, what=f"heun_sample(v, x0, steps={steps})", atol=1e-8, rtol=1e-8,
                     hint="x ← x + h/2 (k1 + k2) with h = 1/steps and t going 0, h, 2h, ...")
        if len(calls) != 2 * steps:
            raise ExerciseFailed(f"{steps} Heun steps should call v {2 * steps} times, yours called it {len(calls)}.")


def check_hutchinson_divergence(fn) -> None:
    """``fn(v, x, t, probes) -> (B,)``: mean over the K probes ε (K, B, D) of εᵀ (∂v/∂x) ε."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 2, generator=g, dtype=torch.float64)
    t = torch.full((4,), 0.3, dtype=torch.float64)
    probes = torch.randn(3, 4, 2, generator=g, dtype=torch.float64)
    with torch.enable_grad():
        xr = x.clone().requires_grad_(True)
        out = _curved_field(xr, t)
        want = torch.zeros(4, dtype=torch.float64)
        for eps in probes:  # εᵀ J ε with a vector–Jacobian product: (εᵀ J) · ε
            (vjp,) = torch.autograd.grad(out, xr, eps, retain_graph=True)
            want = want + (vjp * eps).sum(1)
    want = want / len(probes)
    got = call_student(fn, _curved_field, x, t, probes, exercise=HUTCHINSON)
    expect_close(got, want, what="hutchinson_divergence(v, x, t, probes)", atol=1e-8, rtol=1e-8,
                 hint="for each probe ε: (εᵀ J) by torch.autograd.grad(v(x, t), x, grad_outputs=ε), "
                      "then the dot product with ε; average over the probes.")
    # with many Gaussian probes the estimate approaches the exact divergence (a sanity check of the idea)
    exact = divergence(_curved_field, x, t)[1]
    many = torch.randn(1000, 4, 2, generator=g, dtype=torch.float64)  # estimate's std here: 1/sqrt(1000)
    estimate = call_student(fn, _curved_field, x, t, many, exercise=HUTCHINSON)
    if not torch.allclose(estimate, exact, atol=0.15):
        raise ExerciseFailed(f"with 1000 probes your estimate {estimate.tolist()} should be close to the exact "
                             f"divergence {exact.tolist()}.")
