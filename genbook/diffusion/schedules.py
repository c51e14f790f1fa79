"""Noise schedules of diffusion models: β_t, α_t = 1 − β_t, ᾱ_t = Π_{s≤t} α_s and the signal-to-noise ratio.

The forward process of a DDPM (Ho, Jain & Abbeel 2020) adds Gaussian noise in T
small steps, q(x_t | x_{t−1}) = N(√(1 − β_t) x_{t−1}, β_t I), so that
q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I) and SNR(t) = ᾱ_t / (1 − ᾱ_t).

* **linear** (Ho et al. 2020, sec. 4): β_t rises linearly from 10⁻⁴ to 0.02 over T = 1000
  steps (both scaled by 1000/T for other T, as in Nichol & Dhariwal 2021).
* **cosine** (Nichol & Dhariwal 2021, eq. 17): ᾱ_t = f(t)/f(0) with
  f(t) = cos²(((t/T) + s)/(1 + s) · π/2), s = 0.008, and β_t clipped at 0.999.
  Its log-SNR falls almost linearly in t, so fewer steps are wasted on nearly
  clean or nearly pure-noise images than with the linear schedule.

Indexing: the paper's t = 1..T is index ``t − 1`` = 0..T−1 of the tensors here, so
``alphas_bar[0]`` = ᾱ_1 = 1 − β_1 and ``alphas_bar[T − 1]`` = ᾱ_T ≈ 0.
Everything is computed in float64 (ᾱ_t for t near T is tiny) and handed to
samplers on their device and dtype by :meth:`NoiseSchedule.on`.
"""

from __future__ import annotations

import math

import torch

from ..validation import check_tensor


def _check_T(T: int) -> int:
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T (the number of diffusion steps) must be a positive int, got {T!r}.")
    return T


def linear_betas(T: int = 1000, beta_start: float | None = None, beta_end: float | None = None) -> torch.Tensor:
    """β_1..β_T rising linearly (Ho et al. 2020): (T,) float64.

    Defaults: 10⁻⁴ · 1000/T to 0.02 · 1000/T (at most 0.999), i.e. Ho et al.'s values at T = 1000.
    """
    _check_T(T)
    scale = 1000 / T
    beta_start = min(1e-4 * scale, 0.999) if beta_start is None else beta_start
    beta_end = min(0.02 * scale, 0.999) if beta_end is None else beta_end
    if not 0 < beta_start <= beta_end < 1:
        raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}.")
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def cosine_alphas_bar(T: int = 1000, s: float = 0.008) -> torch.Tensor:
    """ᾱ_1..ᾱ_T of the cosine schedule (Nichol & Dhariwal 2021, eq. 17), without clipping: (T,) float64."""
    _check_T(T)
    if s < 0:
        raise ValueError(f"the offset s must be >= 0, got {s}.")
    t = torch.arange(T + 1, dtype=torch.float64)  # 0..T

    def f(u):
        return torch.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2

    return f(t[1:]) / f(t[:1])  # ᾱ_t = f(t) / f(0), t = 1..T


def cosine_betas(T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """β_t = 1 − ᾱ_t / ᾱ_{t−1} of the cosine schedule, clipped at ``max_beta``: (T,) float64."""
    alphas_bar = cosine_alphas_bar(T, s)
    previous = torch.cat([torch.ones(1, dtype=torch.float64), alphas_bar[:-1]])
    return (1 - alphas_bar / previous).clamp(max=max_beta)


class NoiseSchedule:
    """β_t, α_t, ᾱ_t (each (T,) float64 on the CPU) and what follows from them.

    Build with ``NoiseSchedule.linear(T)``, ``NoiseSchedule.cosine(T)`` or
    ``NoiseSchedule(betas)``; ``schedule.on(x)`` returns the tensors on x's device
    and dtype (cached), for use inside training steps and samplers.
    """

    def __init__(self, betas: torch.Tensor, name: str = "custom"):
        check_tensor(betas, "betas", shape=("T",), dtype="floating", min_batch=1)
        if not torch.isfinite(betas).all() or (betas <= 0).any() or (betas >= 1).any():
            raise ValueError(f"every β_t must lie in (0, 1), got values in [{betas.min():.3g}, {betas.max():.3g}].")
        self.name = name
        self.betas = betas.detach().to("cpu", torch.float64)
        self.alphas = 1 - self.betas  # α_t = 1 − β_t
        self.alphas_bar = torch.cumprod(self.alphas, 0)  # ᾱ_t = Π_{s≤t} α_s
        self._cache: dict = {}

    @classmethod
    def linear(cls, T: int = 1000, beta_start: float | None = None, beta_end: float | None = None) -> NoiseSchedule:
        return cls(linear_betas(T, beta_start, beta_end), "linear")

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> NoiseSchedule:
        return cls(cosine_betas(T, s, max_beta), "cosine")

    @classmethod
    def from_name(cls, name: str, T: int = 1000) -> NoiseSchedule:
        """``"linear"`` or ``"cosine"`` with their default parameters."""
        if name not in ("linear", "cosine"):
            raise ValueError(f"unknown schedule {name!r}; expected 'linear' or 'cosine'.")
        return getattr(cls, name)(T)

    @property
    def T(self) -> int:
        return len(self.betas)

    def snr(self) -> torch.Tensor:
        """SNR(t) = ᾱ_t / (1 − ᾱ_t) (Kingma et al. 2021), (T,) float64."""
        return self.alphas_bar / (1 - self.alphas_bar)

    def log_snr(self) -> torch.Tensor:
        """log SNR(t) = log ᾱ_t − log(1 − ᾱ_t), (T,) float64."""
        return self.alphas_bar.log() - torch.log1p(-self.alphas_bar)

    def on(self, like: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"betas", "alphas", "alphas_bar"} on ``like``'s device and dtype (cached per device and dtype)."""
        key = (like.device, like.dtype)
        if key not in self._cache:
            self._cache[key] = {name: getattr(self, name).to(like.device, like.dtype)
                                for name in ("betas", "alphas", "alphas_bar")}
        return self._cache[key]

    def respace(self, timesteps: torch.Tensor) -> NoiseSchedule:
        """The schedule of a shorter chain that visits only ``timesteps`` (increasing indices into 0..T−1).

        Keeps ᾱ at those steps and sets β'_i = 1 − ᾱ_{τ_i} / ᾱ_{τ_{i−1}} (Nichol & Dhariwal 2021, sec. 4),
        so that q(x_{τ_i} | x_0) is unchanged: the marginals the network was trained on.
        """
        timesteps = check_timesteps(timesteps, self.T)
        alphas_bar = self.alphas_bar[timesteps]
        previous = torch.cat([torch.ones(1, dtype=torch.float64), alphas_bar[:-1]])
        return NoiseSchedule(1 - alphas_bar / previous, f"{self.name}[{len(timesteps)} of {self.T}]")

    def __repr__(self) -> str:
        return f"NoiseSchedule({self.name!r}, T={self.T})"


def check_timesteps(timesteps, T: int) -> torch.Tensor:
    """Raise unless ``timesteps`` is a strictly increasing 1-D int tensor inside 0..T−1; return it (CPU, int64)."""
    check_tensor(timesteps, "timesteps", shape=("S",), min_batch=1)
    if timesteps.is_floating_point() or timesteps.dtype == torch.bool:
        raise TypeError(f"timesteps must be integers (indices 0..T-1), got {timesteps.dtype}.")
    timesteps = timesteps.cpu().long()
    if timesteps.min() < 0 or timesteps.max() > T - 1:
        raise ValueError(f"timesteps must lie in 0..{T - 1}, got values in [{timesteps.min()}, {timesteps.max()}].")
    if len(timesteps) > 1 and (timesteps.diff() <= 0).any():
        raise ValueError("timesteps must be strictly increasing.")
    return timesteps


def spaced_timesteps(T: int, steps: int) -> torch.Tensor:
    """``steps`` timesteps spread evenly over 0..T−1, both ends included: (steps,) int64, increasing."""
    _check_T(T)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= T:
        raise ValueError(f"steps must be an int in 1..{T}, got {steps!r}.")
    if steps == 1:
        return torch.tensor([T - 1])
    return torch.linspace(0, T - 1, steps, dtype=torch.float64).round().long()
