"""The DDPM forward process and two samplers: ancestral (DDPM) and DDIM.

Ho, Jain & Abbeel (2020), "Denoising Diffusion Probabilistic Models":

* forward step, eq. (2):    q(x_t | x_{t−1}) = N(√(1 − β_t) x_{t−1}, β_t I)
* closed form, eq. (4):     q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I),
                            so x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε with ε ~ N(0, I)
* ancestral sampling, Algorithm 2:
      x_T ~ N(0, I); for t = T..1: z ~ N(0, I) if t > 1 else 0,
      x_{t−1} = 1/√α_t · (x_t − β_t/√(1 − ᾱ_t) · ε_θ(x_t, t)) + σ_t z

Song, Meng & Ermon (2021), "Denoising Diffusion Implicit Models", eq. (12):

      x_{t−1} = √ᾱ_{t−1} · x̂_0 + √(1 − ᾱ_{t−1} − σ_t²) · ε_θ(x_t, t) + σ_t ε_t,
      x̂_0 = (x_t − √(1 − ᾱ_t) ε_θ(x_t, t)) / √ᾱ_t,
      σ_t = η √((1 − ᾱ_{t−1})/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_{t−1})            (eq. 16)

η = 0 gives the deterministic DDIM sampler; η = 1 the ancestral sampler with σ_t² = β̃_t.

Both samplers may visit only S of the T timesteps (``steps=S``), evenly spread
(:func:`~genbook.diffusion.schedules.spaced_timesteps`): ancestral sampling then
runs Algorithm 2 on the respaced schedule (Nichol & Dhariwal 2021, sec. 4), DDIM
jumps between them directly. The network is always called with the original
timestep index τ, the one it was trained on.

Conventions: timestep indices t are 0..T−1 (the paper's 1..T); ``eps_model(x_t, t)``
takes x_t (B, C, H, W) and t (B,) int64 and returns ε̂ (B, C, H, W). Noise is drawn
from ``generator`` in a fixed order (x_T first, then one draw per step that needs
one), so a from-scratch sampler that draws in the same order gets the same samples.
Pass ``x_T`` to start from given noise instead: then ``generator`` supplies only the
per-step noise, and several samplers (and step counts) can share one x_T exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..devices import device as default_device
from ..validation import check_tensor
from .schedules import NoiseSchedule, check_timesteps, spaced_timesteps

EpsModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
VARIANCES = ("beta", "posterior")


def _index(t, n: int, T: int, device) -> torch.Tensor:
    """t as an int64 tensor (n,) of indices in 0..T−1 (a Python int or 0-d tensor is broadcast)."""
    if not torch.is_tensor(t):
        t = torch.tensor(t)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(f"t must hold integer timestep indices 0..{T - 1}, got dtype {t.dtype}.")
    t = t.to(device).long()
    if t.dim() == 0:
        t = t.expand(n)
    check_tensor(t, "t", shape=(n,))
    if t.numel() and (t.min() < 0 or t.max() > T - 1):
        raise ValueError(f"t must lie in 0..{T - 1} (index t means the paper's t + 1), "
                         f"got values in [{t.min().item()}, {t.max().item()}].")
    return t


def _broadcast(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, 1, ...) to multiply a batch x (B, ...)."""
    return values.reshape(-1, *([1] * (x.dim() - 1)))


def q_sample(x0: torch.Tensor, t, noise: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε: a sample of q(x_t | x_0) in one step (Ho et al. 2020, eq. 4).

    x0, noise: (B, ...) floats of the same shape; t: (B,) int indices 0..T−1 (or one int for all).
    """
    on_cpu = x0.device.type == "cpu"  # on a GPU the check would cost a host synchronisation every training step
    check_tensor(x0, "x0", dtype="floating", min_batch=1, finite=on_cpu)
    check_tensor(noise, "noise", shape=tuple(x0.shape), dtype="floating", finite=on_cpu)
    t = _index(t, len(x0), schedule.T, x0.device)
    alphas_bar = _broadcast(schedule.on(x0)["alphas_bar"][t], x0)
    return alphas_bar.sqrt() * x0 + (1 - alphas_bar).sqrt() * noise


def q_step(x_prev: torch.Tensor, t, noise: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """x_t = √(1 − β_t) x_{t−1} + √β_t ε: one step of the forward Markov chain (Ho et al. 2020, eq. 2).

    x_prev: x_{t−1} (B, ...); t: (B,) int indices 0..T−1 of the step taken (index 0 maps x_0 to x_1).
    """
    check_tensor(x_prev, "x_prev", dtype="floating", min_batch=1)
    check_tensor(noise, "noise", shape=tuple(x_prev.shape), dtype="floating")
    t = _index(t, len(x_prev), schedule.T, x_prev.device)
    betas = _broadcast(schedule.on(x_prev)["betas"][t], x_prev)
    return (1 - betas).sqrt() * x_prev + betas.sqrt() * noise


def predict_x0(x_t: torch.Tensor, t, eps: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """x̂_0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t: eq. (4) solved for x_0 (DDIM eq. 12, "predicted x_0")."""
    t = _index(t, len(x_t), schedule.T, x_t.device)
    alphas_bar = _broadcast(schedule.on(x_t)["alphas_bar"][t], x_t)
    return (x_t - (1 - alphas_bar).sqrt() * eps) / alphas_bar.sqrt()


def _noise(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    where = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=where).to(device)


def _start(x_T, shape, generator, device) -> torch.Tensor:
    if x_T is None:
        return _noise(shape, generator, device)
    check_tensor(x_T, "x_T", shape=shape, dtype="floating")
    return x_T.to(device)


def _setup(eps_model, shape, schedule, steps, device):
    if not callable(eps_model):
        raise TypeError(f"eps_model must be callable as eps_model(x_t, t), got {type(eps_model).__name__}.")
    if not isinstance(schedule, NoiseSchedule):
        raise TypeError(f"schedule must be a genbook NoiseSchedule, got {type(schedule).__name__}.")
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2 or any(s < 1 for s in shape):
        raise ValueError(f"shape must be (N, C, ...) with positive sizes, got {shape}.")
    if isinstance(steps, (Sequence, torch.Tensor)):
        timesteps = check_timesteps(torch.as_tensor(steps), schedule.T)
    else:
        timesteps = spaced_timesteps(schedule.T, schedule.T if steps is None else steps)
    device = torch.device(device) if device is not None else default_device()
    return shape, timesteps, device


def _eps(eps_model, x, tau: int) -> torch.Tensor:
    t = torch.full((x.shape[0],), tau, dtype=torch.long, device=x.device)
    eps = eps_model(x, t)
    if not torch.is_tensor(eps) or eps.shape != x.shape:
        got = tuple(eps.shape) if torch.is_tensor(eps) else type(eps).__name__
        raise ValueError(f"eps_model(x_t, t) must return a tensor of x_t's shape {tuple(x.shape)}, got {got}.")
    return eps.to(x.dtype)


def _finite_samples(x: torch.Tensor) -> torch.Tensor:
    """Refuse a chain that ended in NaN or inf (clamping would hide NaN); one check per sampling call."""
    if not torch.isfinite(x).all():
        raise FloatingPointError("sampling produced values that are not finite: eps_model returned NaN or inf "
                                 "(did its training diverge? check the loss history) or the schedule is broken.")
    return x


@torch.inference_mode()
def ddpm_sample(
    eps_model: EpsModel,
    shape: Sequence[int],
    schedule: NoiseSchedule,
    steps: int | Sequence[int] | torch.Tensor | None = None,
    *,
    variance: str = "beta",
    clip_x0: bool = False,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    return_trajectory: bool = False,
    x_T: torch.Tensor | None = None,
):
    """Ancestral sampling, Algorithm 2 of Ho et al. (2020); samples (N, C, H, W) clamped to [−1, 1].

    steps: None for all T steps; an int S for S evenly spaced steps on the respaced schedule
        (Nichol & Dhariwal 2021); or the increasing timestep indices themselves.
    variance: σ_t² = β_t (``"beta"``) or σ_t² = β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t) β_t (``"posterior"``);
        Ho et al. found both to work about equally well at T = 1000; with few steps β̃_t is better.
    clip_x0: write the mean as the posterior mean μ̃_t(x_t, x̂_0) of eq. (7) with x̂_0 = (x_t − √(1 − ᾱ_t) ε_θ)/√ᾱ_t
        clipped to [−1, 1], as Ho et al.'s released code does. Without clipping this is the same mean as
        Algorithm 2's; with it, an error of ε_θ where ᾱ_t ≈ 0 cannot blow up (for data in [−1, 1] only).
    return_trajectory: also return the list of x_t (on the CPU) after each step, x_T first.
    x_T: the starting noise (N, C, H, W) of ``shape``; by default drawn from ``generator`` first.
    """
    if variance not in VARIANCES:
        raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}.")
    shape, timesteps, device = _setup(eps_model, shape, schedule, steps, device)
    chain = schedule.respace(timesteps)  # β'_i, α'_i, ᾱ'_i of the chain over τ_1 < ... < τ_S
    betas, alphas, alphas_bar = chain.betas.tolist(), chain.alphas.tolist(), chain.alphas_bar.tolist()
    x = _start(x_T, shape, generator, device)  # x_T ~ N(0, I)
    trajectory = [x.cpu()] if return_trajectory else None
    for i in reversed(range(len(timesteps))):  # i = S−1..0 is the paper's t = T..1
        z = _noise(shape, generator, device) if i > 0 else torch.zeros(shape, device=device)
        eps = _eps(eps_model, x, int(timesteps[i]))  # ε_θ(x_t, t)
        a, a_prev = alphas_bar[i], (alphas_bar[i - 1] if i > 0 else 1.0)  # ᾱ_t, ᾱ_{t−1}
        if clip_x0:
            x0 = ((x - (1 - a) ** 0.5 * eps) / a**0.5).clamp(-1, 1)  # x̂_0, clipped to the data's range
            mean = (a_prev**0.5 * betas[i] * x0 + alphas[i] ** 0.5 * (1 - a_prev) * x) / (1 - a)  # μ̃_t, eq. 7
        else:
            mean = (x - betas[i] / (1 - a) ** 0.5 * eps) / alphas[i] ** 0.5  # Algorithm 2, line 4
        sigma = betas[i] ** 0.5 if variance == "beta" else ((1 - a_prev) / (1 - a) * betas[i]) ** 0.5
        x = mean + sigma * z  # x_{t−1} = 1/√α_t (x_t − β_t/√(1−ᾱ_t) ε_θ) + σ_t z
        if return_trajectory:
            trajectory.append(x.cpu())
    x = _finite_samples(x).clamp(-1, 1)
    return (x, trajectory) if return_trajectory else x


@torch.inference_mode()
def ddim_sample(
    eps_model: EpsModel,
    shape: Sequence[int],
    schedule: NoiseSchedule,
    steps: int | Sequence[int] | torch.Tensor = 50,
    *,
    eta: float = 0.0,
    clip_x0: bool = False,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    return_trajectory: bool = False,
    x_T: torch.Tensor | None = None,
):
    """DDIM sampling (Song, Meng & Ermon 2021, eq. 12); samples (N, C, H, W) clamped to [−1, 1].

    steps: an int S for S evenly spaced timesteps (both ends included), or the increasing indices.
    eta: 0 for the deterministic sampler (the same x_T always gives the same image);
        1 for the ancestral sampler with σ_t² = β̃_t; values in between interpolate (eq. 16).
    clip_x0: clip x̂_0 to [−1, 1] and use the ε that this clipped x̂_0 implies (for data in [−1, 1] only).
    return_trajectory: also return the list of x_t (on the CPU) after each step, x_T first.
    x_T: the starting noise (N, C, H, W) of ``shape``; by default drawn from ``generator`` first.
    """
    if not 0.0 <= eta:
        raise ValueError(f"eta must be >= 0, got {eta}.")
    shape, timesteps, device = _setup(eps_model, shape, schedule, steps, device)
    alphas_bar = schedule.alphas_bar[timesteps].tolist()
    x = _start(x_T, shape, generator, device)  # x_T ~ N(0, I)
    trajectory = [x.cpu()] if return_trajectory else None
    for i in reversed(range(len(timesteps))):
        a, a_prev = alphas_bar[i], (alphas_bar[i - 1] if i > 0 else 1.0)  # ᾱ_t, ᾱ_{t−1} (ᾱ = 1: the data)
        eps = _eps(eps_model, x, int(timesteps[i]))  # ε_θ(x_t, t)
        x0 = (x - (1 - a) ** 0.5 * eps) / a**0.5  # "predicted x_0"
        if clip_x0:
            x0 = x0.clamp(-1, 1)
            eps = (x - a**0.5 * x0) / (1 - a) ** 0.5  # the ε consistent with the clipped x̂_0
        sigma = eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)) ** 0.5  # eq. 16
        x = a_prev**0.5 * x0 + max(1 - a_prev - sigma**2, 0.0) ** 0.5 * eps  # eq. 12 without its noise term
        if sigma > 0:
            x = x + sigma * _noise(shape, generator, device)  # + σ_t ε_t
        if return_trajectory:
            trajectory.append(x.cpu())
    x = _finite_samples(x).clamp(-1, 1)
    return (x, trajectory) if return_trajectory else x
