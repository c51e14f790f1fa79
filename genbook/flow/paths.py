"""Gaussian probability paths of flow matching, and the conditional flow matching loss.

Convention of the book: **t = 0 is noise, t = 1 is data** (as in Lipman et al. 2023;
diffusion papers run time the other way). A Gaussian conditional path joins a noise
sample x₀ ~ N(0, I) to a data point x₁:

    x_t = α_t x₁ + σ_t x₀,        u_t(x_t | x₁) = α̇_t x₁ + σ̇_t x₀,

with α₀ ≈ 0, σ₀ = 1 (pure noise) and α₁ = 1, σ₁ ≈ 0 (the data point). The
conditional flow ψ_t(x₀) = α_t x₁ + σ_t x₀ pushes N(0, I) to N(α_t x₁, σ_t² I),
and u_t is its time derivative (Lipman et al. 2023, eqs. 10–15).

* :class:`OTPath`: α_t = t, σ_t = 1 − (1 − σ_min) t. Lipman et al. (2023), eqs. 20–23:
  ψ_t(x₀) = (1 − (1 − σ_min) t) x₀ + t x₁ and u_t = x₁ − (1 − σ_min) x₀, a straight line
  at constant speed. With σ_min = 0 it is rectified flow (Liu, Gong & Liu 2023, eq. 1).
* :class:`VPPath`: the variance-preserving diffusion path (Song et al. 2021) seen as a
  flow: α_t = exp(−½ T(1 − t)), σ_t = √(1 − α_t²), T(s) = ∫₀ˢ β(r) dr, β linear from
  β_min to β_max (Lipman et al. 2023, eqs. 18–19, with their time reversed to ours).

Shapes: x₀, x₁ (B, ...) and t (B,); the schedules broadcast t over the other dimensions.
"""

from __future__ import annotations

import math

import torch

from ..validation import check_tensor


def _expand(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """t (B,) -> (B, 1, ..., 1) so that it broadcasts against ``like`` (B, ...)."""
    return t.reshape(-1, *([1] * (like.dim() - 1)))


class GaussianPath:
    """x_t = α_t x₁ + σ_t x₀ and its velocity u_t = α̇_t x₁ + σ̇_t x₀; subclasses give α, σ and their derivatives."""

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def d_alpha(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def d_sigma(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _check(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> None:
        check_tensor(x0, "x0", dtype="floating", min_batch=1)
        check_tensor(x1, "x1", shape=tuple(x0.shape), dtype="floating")
        check_tensor(t, "t", shape=(x0.shape[0],), dtype="floating")
        if t.numel() and (t.min().item() < 0 or t.max().item() > 1):
            raise ValueError(f"t must lie in [0, 1] (0 = noise, 1 = data), got values in "
                             f"[{t.min().item():.3g}, {t.max().item():.3g}].")

    def sample(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = ψ_t(x₀ | x₁) = α_t x₁ + σ_t x₀, shape of x₀."""
        self._check(x0, x1, t)
        return _expand(self.alpha(t), x1) * x1 + _expand(self.sigma(t), x0) * x0

    def target(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """u_t(x_t | x₁) = d/dt ψ_t(x₀ | x₁) = α̇_t x₁ + σ̇_t x₀, shape of x₀."""
        self._check(x0, x1, t)
        return _expand(self.d_alpha(t), x1) * x1 + _expand(self.d_sigma(t), x0) * x0


class OTPath(GaussianPath):
    """The optimal-transport conditional path (Lipman et al. 2023, eqs. 20–23).

    μ_t(x₁) = t x₁, σ_t = 1 − (1 − σ_min) t; so x_t = (1 − (1 − σ_min) t) x₀ + t x₁ (eq. 22)
    and u_t = x₁ − (1 − σ_min) x₀ (eq. 23), constant along each straight line.
    """

    def __init__(self, sigma_min: float = 0.0):
        if not 0.0 <= sigma_min < 1.0:
            raise ValueError(f"sigma_min must be in [0, 1), got {sigma_min}.")
        self.sigma_min = float(sigma_min)

    def alpha(self, t):
        return t

    def sigma(self, t):
        return 1 - (1 - self.sigma_min) * t

    def d_alpha(self, t):
        return torch.ones_like(t)

    def d_sigma(self, t):
        return torch.full_like(t, -(1 - self.sigma_min))

    def __repr__(self) -> str:
        return f"OTPath(sigma_min={self.sigma_min})"


class VPPath(GaussianPath):
    """The variance-preserving (diffusion) path as a flow (Lipman et al. 2023, eq. 19; Song et al. 2021).

    With s = 1 − t (diffusion time, s = 0 data): T(s) = β_min s + ½ (β_max − β_min) s², α_t = exp(−½ T(s)),
    σ_t = √(1 − α_t²). Then α̇_t = ½ β(s) α_t with β(s) = β_min + s (β_max − β_min), and σ̇_t = −α_t α̇_t / σ_t,
    which blows up at t = 1 (σ₁ = 0): train on t ≤ ``t_max``.
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_max: float = 1 - 1e-3):
        if not 0 < beta_min < beta_max:
            raise ValueError(f"need 0 < beta_min < beta_max, got {beta_min}, {beta_max}.")
        self.beta_min, self.beta_max, self.t_max = float(beta_min), float(beta_max), float(t_max)

    def _integral(self, s):
        return self.beta_min * s + 0.5 * (self.beta_max - self.beta_min) * s**2

    def alpha(self, t):
        return torch.exp(-0.5 * self._integral(1 - t))

    def sigma(self, t):
        return (1 - self.alpha(t) ** 2).clamp_min(0).sqrt()

    def d_alpha(self, t):
        beta = self.beta_min + (1 - t) * (self.beta_max - self.beta_min)
        return 0.5 * beta * self.alpha(t)

    def d_sigma(self, t):
        return -self.alpha(t) * self.d_alpha(t) / self.sigma(t).clamp_min(1e-12)

    def __repr__(self) -> str:
        return f"VPPath(beta_min={self.beta_min}, beta_max={self.beta_max})"


def cfm_loss(velocity, path: GaussianPath, x1: torch.Tensor, *, x0: torch.Tensor | None = None,
             t: torch.Tensor | None = None, generator: torch.Generator | None = None,
             t_max: float = 1.0) -> torch.Tensor:
    """The conditional flow matching loss E_{t, x₀, x₁} ||v_θ(x_t, t) − u_t(x_t | x₁)||² (Lipman et al. 2023, eq. 9).

    velocity: v_θ(x (B, ...), t (B,)) -> (B, ...). x1: a data batch (B, ...). x0 (noise) and t ~ U[0, t_max]
    are drawn (from ``generator``) unless given; pass x0 to train on fixed couplings (reflow).
    The squared error is averaged over all elements (as ``F.mse_loss``): the eq.'s norm divided by the dimension.
    """
    check_tensor(x1, "x1", dtype="floating", min_batch=1)
    if x0 is None:
        x0 = torch.randn(x1.shape, generator=generator, device="cpu" if generator is not None else x1.device)
        x0 = x0.to(x1.device)
    if t is None:
        t = torch.rand(x1.shape[0], generator=generator, device="cpu" if generator is not None else x1.device)
        t = (t * t_max).to(x1.device)
    x_t = path.sample(x0, x1, t)
    return (velocity(x_t, t) - path.target(x0, x1, t)).square().mean()


def log_normal(x: torch.Tensor) -> torch.Tensor:
    """log N(x; 0, I) of x (B, ...), summed over all but the batch dimension: (B,)."""
    flat = x.reshape(x.shape[0], -1)
    return -0.5 * flat.square().sum(1) - 0.5 * flat.shape[1] * math.log(2 * math.pi)
