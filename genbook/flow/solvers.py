"""Fixed-step ODE solvers for dx/dt = v(x, t), and exact likelihoods of low-dimensional flows.

A flow model is sampled by integrating its velocity field from noise (t = 0) to data
(t = 1). Each solver advances x by a step h with a few evaluations of v (NFE: number
of function evaluations per step), and has global error O(h^order):

==========  ================================================  =====  =====
method      one step from (x, t)                              NFE    order
==========  ================================================  =====  =====
euler       x + h v(x, t)                                     1      1
midpoint    x + h v(x + h/2 v(x, t), t + h/2)                 2      2
heun        x + h/2 (k₁ + v(x + h k₁, t + h)), k₁ = v(x, t)   2      2
rk4         x + h/6 (k₁ + 2k₂ + 2k₃ + k₄)  (classic Runge–Kutta) 4      4
==========  ================================================  =====  =====

(Hairer, Nørsett & Wanner, *Solving Ordinary Differential Equations I*, ch. II.1.)

``v(x, t)`` takes x (B, ...) and t (B,) and returns (B, ...). Likelihoods use the
instantaneous change of variables (Chen et al. 2018, thm. 1):
d/dt log p_t(x_t) = −div v(x_t, t), so log p₁(x₁) = log p₀(x₀) − ∫₀¹ div v(x_t, t) dt,
computed here with the exact divergence (one autograd pass per dimension: fine in 2D,
too slow for images, where FFJORD's Hutchinson estimator is used instead).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..validation import check_tensor
from .paths import log_normal

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
NFE_PER_STEP = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}
ORDER = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}


def _call(v: Velocity, x: torch.Tensor, t: float) -> torch.Tensor:
    out = v(x, torch.full((x.shape[0],), float(t), device=x.device, dtype=x.dtype))
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:  # broadcasting would give a wrong result silently
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"v(x, t) must return a tensor of x's shape {tuple(x.shape)}, got {got}.")
    return out


def euler_step(v: Velocity, x: torch.Tensor, t: float, h: float) -> torch.Tensor:
    """x_{n+1} = x_n + h v(x_n, t_n)."""
    return x + h * _call(v, x, t)


def midpoint_step(v: Velocity, x: torch.Tensor, t: float, h: float) -> torch.Tensor:
    """x_{n+1} = x_n + h v(x_n + h/2 v(x_n, t_n), t_n + h/2)."""
    return x + h * _call(v, x + 0.5 * h * _call(v, x, t), t + 0.5 * h)


def heun_step(v: Velocity, x: torch.Tensor, t: float, h: float) -> torch.Tensor:
    """x_{n+1} = x_n + h/2 (k₁ + k₂), k₁ = v(x_n, t_n), k₂ = v(x_n + h k₁, t_n + h) (the trapezoidal rule)."""
    k1 = _call(v, x, t)
    k2 = _call(v, x + h * k1, t + h)
    return x + 0.5 * h * (k1 + k2)


def rk4_step(v: Velocity, x: torch.Tensor, t: float, h: float) -> torch.Tensor:
    """The classic fourth-order Runge–Kutta step."""
    k1 = _call(v, x, t)
    k2 = _call(v, x + 0.5 * h * k1, t + 0.5 * h)
    k3 = _call(v, x + 0.5 * h * k2, t + 0.5 * h)
    k4 = _call(v, x + h * k3, t + h)
    return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


STEPS = {"euler": euler_step, "midpoint": midpoint_step, "heun": heun_step, "rk4": rk4_step}


def nfe(method: str, steps: int) -> int:
    """Network evaluations of ``steps`` steps of ``method``."""
    return NFE_PER_STEP[_check_method(method)] * steps


def _check_method(method: str) -> str:
    if method not in STEPS:
        raise ValueError(f"method must be one of {sorted(STEPS)}, got {method!r}.")
    return method


def odeint(v: Velocity, x: torch.Tensor, *, steps: int, method: str = "euler", t0: float = 0.0, t1: float = 1.0,
           return_path: bool = False) -> torch.Tensor:
    """Integrate dx/dt = v(x, t) from t0 to t1 (t1 < t0 runs backwards) in ``steps`` equal steps.

    x: the state at t0, (B, ...). Returns the state at t1, or with ``return_path`` all
    ``steps + 1`` states stacked, (steps + 1, B, ...). Costs ``nfe(method, steps)`` calls of v.
    """
    check_tensor(x, "x", dtype="floating", min_batch=1)
    step = STEPS[_check_method(method)]
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}.")
    h = (t1 - t0) / steps
    path = [x]
    for n in range(steps):
        x = step(v, x, t0 + n * h, h)
        if return_path:
            path.append(x)
    return torch.stack(path) if return_path else x


def divergence(v: Velocity, x: torch.Tensor, t: torch.Tensor, *, create_graph: bool = False):
    """(v(x, t), div_x v(x, t)) exactly: Σ_i ∂v_i/∂x_i by one autograd pass per dimension. x (B, D) -> (B, D), (B,)."""
    check_tensor(x, "x", shape=("B", "D"), dtype="floating")
    with torch.enable_grad():
        x = x.detach().requires_grad_(True) if not x.requires_grad else x
        out = v(x, t)
        div = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        for i in range(x.shape[1]):
            (grad,) = torch.autograd.grad(out[:, i].sum(), x, create_graph=create_graph, retain_graph=True)
            div = div + grad[:, i]
    return (out, div) if create_graph else (out.detach(), div.detach())


def log_likelihood(v: Velocity, x1: torch.Tensor, *, steps: int = 100, method: str = "rk4") -> torch.Tensor:
    """log p₁(x₁) of a flow with base N(0, I) at t = 0, for low-dimensional x1 (B, D) -> (B,).

    Integrates the augmented ODE d/dt [x, ℓ] = [v(x, t), div v(x, t)] backwards from t = 1
    (ℓ = 0) to t = 0, then log p₁(x₁) = log N(x₀; 0, I) + ℓ(0), since ℓ(0) = −∫₀¹ div v dt
    (Chen et al. 2018, eq. 4; Grathwohl et al. 2019, eq. 3).
    """
    check_tensor(x1, "x1", shape=("B", "D"), dtype="floating", min_batch=1)
    d = x1.shape[1]

    def augmented(state, t):  # state (B, D + 1) = [x, ℓ]
        dx, div = divergence(v, state[:, :d], t)
        return torch.cat([dx, div[:, None]], 1)

    state = torch.cat([x1.detach(), torch.zeros_like(x1[:, :1])], 1)
    state = odeint(augmented, state, steps=steps, method=method, t0=1.0, t1=0.0)
    return log_normal(state[:, :d]) + state[:, d]
