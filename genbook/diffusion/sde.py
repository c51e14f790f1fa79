"""Score-based generative modelling with stochastic differential equations (chapter 06).

Song, Sohl-Dickstein, Kingma, Kumar, Ermon & Poole (2021), "Score-Based Generative
Modeling through Stochastic Differential Equations" (ICLR). Time runs as in the
paper and in diffusion: **t = 0 is data, t = 1 is noise** (chapter 07 runs it the
other way). A forward SDE

    dx = f(x, t) dt + g(t) dw                                         (eq. 5)

with an affine drift has Gaussian transition kernels x_t | x_0 ~ N(α_t x_0, σ_t² I)
(the "marginal" coefficients α_t, σ_t below). Knowing the score ∇ₓ log p_t(x), two
processes carry the prior p_1 back to the data:

* the reverse-time SDE of Anderson (1982), dx = [f − g² ∇ log p_t] dt + g dw̄      (eq. 6);
* the probability-flow ODE, dx/dt = f − ½ g² ∇ log p_t, with the same marginals     (eq. 13).

This module holds the two SDEs of the paper (:class:`VPSDE`, :class:`VESDE`), their
marginals and drifts, the samplers (Euler–Maruyama, predictor–corrector with a
Langevin corrector, the probability-flow ODE with genbook.flow's fixed-step solvers),
the exact score of a Gaussian mixture noised by an SDE (an independent reference for
every sampler), Hutchinson's trace estimator (Hutchinson 1989; Skilling 1989) and
likelihoods through the ODE (the instantaneous change of variables; Chen et al. 2018,
Grathwohl et al. 2019).

``score(x, t)`` takes x (B, ...) and t (B,) and returns (B, ...). Time grids are
float64 tensors (N + 1,) running from 1 down to ``eps``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..data.toy2d import GaussianMixture
from ..flow.solvers import NFE_PER_STEP, STEPS, divergence
from ..validation import check_tensor

Score = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _expand(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """t (B,) -> (B, 1, ..., 1) broadcasting against ``like`` (B, ...)."""
    return t.reshape(-1, *([1] * (like.dim() - 1)))


def _times(t, x: torch.Tensor) -> torch.Tensor:
    """A float or a (B,) tensor of times -> (B,) on x's device and dtype."""
    if not torch.is_tensor(t) or t.dim() == 0:
        return torch.full((x.shape[0],), float(t), device=x.device, dtype=x.dtype)
    return t.to(device=x.device, dtype=x.dtype)


class SDE:
    """dx = f(x, t) dt + g(t) dw on t ∈ [0, 1] with Gaussian kernels x_t | x_0 ~ N(α_t x_0, σ_t² I).

    Subclasses give ``drift``, ``diffusion``, ``alpha``, ``sigma``, ``prior_std`` and the
    log-SNR and its inverse. ``t`` arguments are tensors (B,) (or scalars where noted).
    """

    def drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """f(x, t), shape of x."""
        raise NotImplementedError

    def diffusion(self, t: torch.Tensor) -> torch.Tensor:
        """g(t), shape of t."""
        raise NotImplementedError

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """The mean coefficient α_t of x_t | x_0, shape of t."""
        raise NotImplementedError

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """The standard deviation σ_t of x_t | x_0, shape of t."""
        raise NotImplementedError

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        """λ_t = log(α_t² / σ_t²), decreasing in t."""
        return 2 * (torch.log(self.alpha(t)) - torch.log(self.sigma(t)))

    def t_from_log_snr(self, log_snr: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`log_snr`."""
        raise NotImplementedError

    prior_std: float = 1.0

    def corrector_alpha(self, t: torch.Tensor) -> torch.Tensor:
        """α_i of the Langevin corrector's step size (Song et al. 2021, Algorithm 5): 1 unless overridden."""
        return torch.ones_like(t)

    # --- the marginals -------------------------------------------------------------------------------------
    def marginal(self, x0: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean α_t x_0 (shape of x0) and std σ_t (B,) of x_t | x_0."""
        t = _times(t, x0)
        return _expand(self.alpha(t), x0) * x0, self.sigma(t)

    def perturb(self, x0: torch.Tensor, t, noise: torch.Tensor) -> torch.Tensor:
        """x_t = α_t x_0 + σ_t ε, shape of x0."""
        t = _times(t, x0)
        return _expand(self.alpha(t), x0) * x0 + _expand(self.sigma(t), x0) * noise

    def prior_sample(self, shape, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """x_1 ~ N(0, prior_std² I) of the given shape, drawn on the generator's device, returned on ``device``."""
        where = generator.device if generator is not None else (device or "cpu")
        return (self.prior_std * torch.randn(shape, generator=generator, device=where)).to(device or where)

    def prior_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log N(x; 0, prior_std² I), summed over all but the batch dimension: (B,)."""
        flat = x.reshape(x.shape[0], -1)
        d = flat.shape[1]
        return (-0.5 * flat.square().sum(1) / self.prior_std**2 - d * math.log(self.prior_std)
                - 0.5 * d * math.log(2 * math.pi))

    # --- the reverse processes -----------------------------------------------------------------------------
    def reverse_drift(self, x: torch.Tensor, t, score: torch.Tensor) -> torch.Tensor:
        """f(x, t) − g(t)² s: the drift of Anderson's reverse-time SDE (Song et al. 2021, eq. 6)."""
        t = _times(t, x)
        return self.drift(x, t) - _expand(self.diffusion(t) ** 2, x) * score

    def ode_drift(self, x: torch.Tensor, t, score: torch.Tensor) -> torch.Tensor:
        """f(x, t) − ½ g(t)² s: the probability-flow ODE (Song et al. 2021, eq. 13)."""
        t = _times(t, x)
        return self.drift(x, t) - 0.5 * _expand(self.diffusion(t) ** 2, x) * score

    def denoise(self, x: torch.Tensor, t, score: torch.Tensor) -> torch.Tensor:
        """Tweedie's formula E[x_0 | x_t] = (x_t + σ_t² s) / α_t (Efron 2011), shape of x."""
        t = _times(t, x)
        return (x + _expand(self.sigma(t) ** 2, x) * score) / _expand(self.alpha(t), x)


class VPSDE(SDE):
    """The variance-preserving SDE dx = −½ β(t) x dt + √β(t) dw, β(t) = β_min + t (β_max − β_min).

    The continuous limit of DDPM's chain with a linear schedule (Song et al. 2021, eq. 11;
    Ho et al. 2020). With B(t) = ∫₀ᵗ β = β_min t + ½ (β_max − β_min) t²:
    α_t = exp(−½ B(t)), σ_t² = 1 − α_t² (eq. 29); the prior is N(0, I).
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        if not 0 < beta_min < beta_max:
            raise ValueError(f"need 0 < beta_min < beta_max, got {beta_min}, {beta_max}.")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def beta(self, t):
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def integral(self, t):
        """B(t) = ∫₀ᵗ β(s) ds."""
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    def drift(self, x, t):
        return -0.5 * _expand(self.beta(_times(t, x)), x) * x

    def diffusion(self, t):
        return torch.sqrt(self.beta(t))

    def alpha(self, t):
        return torch.exp(-0.5 * self.integral(t))

    def sigma(self, t):
        return (-torch.expm1(-self.integral(t))).sqrt()  # √(1 − α_t²), accurate for small t

    def log_snr(self, t):
        return -torch.log(torch.expm1(self.integral(t)))  # α²/σ² = 1 / (e^{B(t)} − 1)

    def t_from_log_snr(self, log_snr):
        b = torch.log1p(torch.exp(-log_snr))  # B(t) = log(1 + e^{−λ})
        a = 0.5 * (self.beta_max - self.beta_min)
        return (-self.beta_min + torch.sqrt(self.beta_min**2 + 4 * a * b)) / (2 * a)

    def corrector_alpha(self, t):
        """α_i = 1 − β_i of the paper's discretisation with N = 1000 steps (β_i = β(t) / N)."""
        return 1 - self.beta(t) / 1000

    def __repr__(self) -> str:
        return f"VPSDE(beta_min={self.beta_min}, beta_max={self.beta_max})"


class VESDE(SDE):
    """The variance-exploding SDE dx = √(d[σ²(t)]/dt) dw, σ(t) = σ_min (σ_max / σ_min)^t.

    The continuous limit of NCSN's noise levels (Song & Ermon 2019; Song et al. 2021, eq. 9).
    g(t) = σ(t) √(2 log(σ_max / σ_min)); no drift, α_t = 1. Started at x_0 (σ = 0), the
    marginal variance is σ(t)² − σ_min² (the paper drops the σ_min² term; we keep it, so
    σ_0 = 0 exactly). The prior is N(0, (σ_max² − σ_min²) I) ≈ N(0, σ_max² I).
    """

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0):
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}.")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.log_ratio = math.log(self.sigma_max / self.sigma_min)
        self.prior_std = math.sqrt(self.sigma_max**2 - self.sigma_min**2)

    def noise_level(self, t):
        """σ(t) = σ_min (σ_max / σ_min)^t, the paper's noise scale."""
        return self.sigma_min * torch.exp(t * self.log_ratio)

    def drift(self, x, t):
        return torch.zeros_like(x)

    def diffusion(self, t):
        return self.noise_level(t) * math.sqrt(2 * self.log_ratio)

    def alpha(self, t):
        return torch.ones_like(t)

    def sigma(self, t):
        return self.sigma_min * torch.expm1(2 * t * self.log_ratio).sqrt()

    def t_from_log_snr(self, log_snr):
        return torch.log1p(torch.exp(-log_snr) / self.sigma_min**2) / (2 * self.log_ratio)

    def __repr__(self) -> str:
        return f"VESDE(sigma_min={self.sigma_min}, sigma_max={self.sigma_max})"


# --- time grids ------------------------------------------------------------------------------------------------
def time_grid(sde: SDE, steps: int, *, eps: float = 1e-3, spacing: str = "uniform") -> torch.Tensor:
    """N + 1 times from 1 down to ``eps`` (float64).

    ``"uniform"`` in t (Song et al. 2021); ``"log_snr"``: uniform in λ_t = log SNR (as DPM-Solver,
    Lu et al. 2022), which puts more steps near the data; ``"edm"``: ρ = σ_t/α_t spaced uniformly in ρ^{1/7}
    (Karras et al. 2022, eq. 5), more still.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}.")
    if not 0 < eps < 1:
        raise ValueError(f"eps must lie in (0, 1), got {eps}.")
    if spacing == "uniform":
        return torch.linspace(1.0, eps, steps + 1, dtype=torch.float64)
    if spacing == "edm":  # ρ = σ/α spaced as ρ_i^{1/7} uniform (Karras et al. 2022, eq. 5)
        ends = (sde.sigma(torch.tensor([1.0, eps], dtype=torch.float64))
                / sde.alpha(torch.tensor([1.0, eps], dtype=torch.float64)))
        rho = torch.linspace(float(ends[0]) ** (1 / 7), float(ends[1]) ** (1 / 7), steps + 1, dtype=torch.float64) ** 7
        grid = sde.t_from_log_snr(-2 * torch.log(rho))
        grid[0], grid[-1] = 1.0, eps
        return grid
    if spacing == "log_snr":
        ends = sde.log_snr(torch.tensor([1.0, eps], dtype=torch.float64))
        grid = sde.t_from_log_snr(torch.linspace(float(ends[0]), float(ends[1]), steps + 1, dtype=torch.float64))
        grid[0], grid[-1] = 1.0, eps  # exact end points
        return grid
    raise ValueError(f"spacing must be 'uniform', 'log_snr' or 'edm', got {spacing!r}.")


def _check_grid(times: torch.Tensor) -> list[float]:
    check_tensor(times, "times", shape=("N",))
    grid = [float(t) for t in times]
    if len(grid) < 2 or any(b >= a for a, b in zip(grid, grid[1:])):
        raise ValueError("times must hold at least two strictly decreasing times (from noise to data).")
    return grid


def _noise(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """N(0, I) noise shaped like x, drawn on the generator's device (so a CPU generator reproduces a CPU run)."""
    where = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=where).to(x.device)


# --- samplers --------------------------------------------------------------------------------------------------
@torch.no_grad()
def euler_maruyama(score: Score, sde: SDE, x: torch.Tensor, times: torch.Tensor, *,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Integrate the reverse-time SDE (Song et al. 2021, eq. 6) with Euler–Maruyama along ``times``.

    x: a prior sample at times[0], (B, ...). Each step, with Δt = t_{i+1} − t_i < 0,
    x ← x + [f − g² s](x, t_i) Δt + g(t_i) √|Δt| z, z ~ N(0, I); the last step adds no noise
    (it returns the mean, as the paper's code does). NFE = len(times) − 1.
    """
    grid = _check_grid(times)
    for i, (t, t_next) in enumerate(zip(grid, grid[1:])):
        x = _em_step(score, sde, x, t, t_next, noisy=i < len(grid) - 2, generator=generator)
    return x


def _em_step(score, sde, x, t, t_next, *, noisy, generator):
    """x + [f − g² s](x, t) Δt (+ g(t) √|Δt| z): one Euler–Maruyama step of the reverse SDE, Δt = t_next − t < 0."""
    dt = t_next - t
    tt = torch.full((x.shape[0],), t, device=x.device, dtype=x.dtype)
    x = x + sde.reverse_drift(x, tt, score(x, tt)) * dt
    if noisy:
        x = x + _expand(sde.diffusion(tt), x) * math.sqrt(-dt) * _noise(x, generator)
    return x


@torch.no_grad()
def langevin_corrector(score: Score, sde: SDE, x: torch.Tensor, t: float, *, snr: float, steps: int = 1,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """``steps`` Langevin MCMC steps at fixed t (Song et al. 2021, Algorithm 5).

    x ← x + ε s + √(2ε) z with ε = 2 α_i (r ‖z‖ / ‖s‖)², the step size set by the target
    signal-to-noise ratio r = ``snr``. As in the paper's code, ‖z‖ and ‖s‖ are averaged over the
    batch: per-sample norms give a huge step wherever the score nearly vanishes (at a mode, in
    low dimensions). Batches of at least a few hundred make the step size practically constant. NFE = ``steps``.
    """
    tt = torch.full((x.shape[0],), t, device=x.device, dtype=x.dtype)
    alpha = sde.corrector_alpha(tt)
    for _ in range(steps):
        s = score(x, tt)
        z = _noise(x, generator)
        s_norm = s.reshape(len(s), -1).norm(dim=1).mean().clamp_min(1e-12)
        z_norm = z.reshape(len(z), -1).norm(dim=1).mean()
        step = _expand(2 * alpha * (snr * z_norm / s_norm) ** 2, x)
        x = x + step * s + torch.sqrt(2 * step) * z
    return x


@torch.no_grad()
def predictor_corrector(score: Score, sde: SDE, x: torch.Tensor, times: torch.Tensor, *, snr: float,
                        corrector_steps: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
    """Predictor–corrector sampling (Song et al. 2021, Algorithm 1): at each t_i, ``corrector_steps``
    Langevin steps, then one Euler–Maruyama predictor step to t_{i+1} (no noise in the last one).

    NFE = (len(times) − 1) · (1 + corrector_steps).
    """
    grid = _check_grid(times)
    for i, (t, t_next) in enumerate(zip(grid, grid[1:])):
        x = langevin_corrector(score, sde, x, t, snr=snr, steps=corrector_steps, generator=generator)
        x = _em_step(score, sde, x, t, t_next, noisy=i < len(grid) - 2, generator=generator)
    return x


def probability_flow(score: Score, sde: SDE) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The probability-flow ODE's velocity v(x, t) = f − ½ g² s(x, t) (Song et al. 2021, eq. 13)."""
    def velocity(x, t):
        return sde.ode_drift(x, t, score(x, t))
    return velocity


@torch.no_grad()
def ode_sample(score: Score, sde: SDE, x: torch.Tensor, times: torch.Tensor, *, method: str = "heun",
               variable: str = "t", return_path: bool = False) -> torch.Tensor:
    """Integrate the probability-flow ODE along ``times`` (noise to data) with one of genbook.flow's
    fixed-step solvers (``euler``, ``midpoint``, ``heun``, ``rk4``). NFE = ``ode_nfe(method, len(times) − 1)``.

    ``variable="t"`` solves dx/dt = f − ½ g² s in t (Song et al. 2021, eq. 13). ``variable="sigma"`` solves the
    same ODE after the change of variables y = x/α_t, ρ = σ_t/α_t, where it reads dy/dρ = −σ_t s(x, t) = ε(x, t)
    (Song, Meng & Ermon 2021, eq. 14; Karras et al. 2022, eq. 4): the trajectories are the same, but they
    are much straighter in ρ, so few steps go much further. Euler in ρ is DDIM. The steps are still taken at
    the given times: ρ_i = σ/α at times[i].
    """
    grid = _check_grid(times)
    if method not in STEPS:
        raise ValueError(f"method must be one of {sorted(STEPS)}, got {method!r}.")
    if variable == "t":
        velocity, path = probability_flow(score, sde), [x]
        for t, t_next in zip(grid, grid[1:]):
            x = STEPS[method](velocity, x, t, t_next - t)
            if return_path:
                path.append(x)
        return torch.stack(path) if return_path else x
    if variable != "sigma":
        raise ValueError(f"variable must be 't' or 'sigma', got {variable!r}.")
    times64 = torch.as_tensor(grid, dtype=torch.float64)
    rho = (sde.sigma(times64) / sde.alpha(times64)).tolist()  # ρ_i = σ/α, decreasing

    def eps_field(y, r):  # dy/dρ = ε(α y, t(ρ)) = −σ_t s(x, t)
        t = sde.t_from_log_snr(-2 * torch.log(r.double())).to(y.dtype)
        a, s = _expand(sde.alpha(t), y), _expand(sde.sigma(t), y)
        return -s * score(a * y, t)

    y = x / float(sde.alpha(times64[:1]))
    path = [x]
    for i, (r, r_next) in enumerate(zip(rho, rho[1:])):
        y = STEPS[method](eps_field, y, r, r_next - r)
        if return_path:
            path.append(y * float(sde.alpha(times64[i + 1: i + 2])))
    x = y * float(sde.alpha(times64[-1:]))
    return torch.stack(path) if return_path else x


def ode_nfe(method: str, steps: int) -> int:
    """Score evaluations of ``steps`` steps of ``method``."""
    return NFE_PER_STEP[method] * steps


# --- exact scores of noised Gaussian mixtures ------------------------------------------------------------------
def noised_mixture(mixture: GaussianMixture, sde: SDE, t: float) -> GaussianMixture:
    """p_t of data p_0 = Σ_k w_k N(μ_k, Σ_k) under ``sde``: Σ_k w_k N(α_t μ_k, α_t² Σ_k + σ_t² I), a mixture again."""
    tt = torch.tensor([float(t)], dtype=torch.float64)
    a, s = float(sde.alpha(tt)), float(sde.sigma(tt))
    eye = torch.eye(mixture.means.shape[1], dtype=torch.float64)
    return GaussianMixture(a * mixture.means, a**2 * mixture.covariances + s**2 * eye, mixture.weights)


def mixture_score(mixture: GaussianMixture, sde: SDE) -> Score:
    """The exact score ∇ₓ log p_t(x) of the noised mixture, for x (B, D) and per-sample t (B,).

    ∇ log p_t(x) = Σ_k r_k(x) C_k⁻¹ (α_t μ_k − x), C_k = α_t² Σ_k + σ_t² I, r_k the posterior over components.
    """
    means = mixture.means
    log_w = torch.log(mixture.weights)
    d = means.shape[1]
    lam, u = torch.linalg.eigh(mixture.covariances)  # Σ_k = U_k diag(λ_k) U_kᵀ, so C_k = U_k diag(α² λ_k + σ²) U_kᵀ

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        check_tensor(x, "x", shape=("B", d), dtype="floating")
        t = _times(t, x).to(torch.float64)
        a, s = sde.alpha(t)[:, None, None], sde.sigma(t)[:, None, None]  # (B, 1, 1)
        var = a**2 * lam.to(x.device)[None] + s**2  # eigenvalues of C_k, (B, K, D)
        diff = x.to(torch.float64)[:, None] - a * means.to(x.device)[None]  # x − α μ_k, (B, K, D)
        rotated = torch.einsum("kij,bki->bkj", u.to(x.device), diff)  # U_kᵀ (x − α μ_k)
        log_joint = log_w.to(x.device) - 0.5 * (rotated**2 / var).sum(-1) - 0.5 * torch.log(var).sum(-1)
        r = torch.softmax(log_joint, dim=1)  # posterior over components, (B, K)
        pull = torch.einsum("kij,bkj->bki", u.to(x.device), rotated / var)  # C_k⁻¹ (x − α μ_k)
        return (-(r[..., None] * pull).sum(1)).to(x.dtype)

    return score


# --- divergences and likelihoods -------------------------------------------------------------------------------
def probes(shape, kind: str, generator: torch.Generator | None = None, device=None, dtype=torch.float32):
    """Probe vectors ε with E[ε εᵀ] = I: ``"rademacher"`` (±1) or ``"gaussian"`` (N(0, I)).

    Drawn on the generator's device (the CPU without one unless ``device`` says otherwise), returned on ``device``.
    """
    where = generator.device if generator is not None else (device or "cpu")
    if kind == "rademacher":
        out = torch.randint(0, 2, shape, generator=generator, device=where).to(dtype) * 2 - 1
    elif kind == "gaussian":
        out = torch.randn(shape, generator=generator, dtype=dtype, device=where)
    else:
        raise ValueError(f"kind must be 'rademacher' or 'gaussian', got {kind!r}.")
    return out.to(device or where)


def hutchinson_divergence(v: Callable, x: torch.Tensor, t: torch.Tensor, probe: torch.Tensor):
    """(v(x, t), εᵀ (∂v/∂x) ε): an unbiased estimate of div v for E[ε εᵀ] = I, one vector–Jacobian product.

    Hutchinson (1989), Skilling (1989); FFJORD (Grathwohl et al. 2019, eq. 7). x, probe: (B, ...) -> (B, ...), (B,).
    """
    check_tensor(probe, "probe", shape=tuple(x.shape), dtype="floating")
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        out = v(x, t)
        (vjp,) = torch.autograd.grad(out, x, grad_outputs=probe)  # εᵀ J
    return out.detach(), (vjp * probe).reshape(len(x), -1).sum(1).detach()


def ode_log_likelihood(score: Score, sde: SDE, x: torch.Tensor, times: torch.Tensor, *, method: str = "rk4",
                       probe: torch.Tensor | str | None = None,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """log p(x) in nats (B,) through the probability-flow ODE (Song et al. 2021, sec. 4.3 and appendix D.2).

    Integrates d/dt [x, ℓ] = [f̃(x, t), ∇·f̃(x, t)] forward along ``times`` (increasing: from eps at the data
    to 1 at the prior), then log p_eps(x) = log p_1(x_1) + ℓ(1): the instantaneous change of variables
    (Chen et al. 2018, thm. 1). The divergence is

    * exact when ``probe`` is None (genbook.flow.divergence: one backward pass per dimension; x must be (B, D));
    * Hutchinson's estimate with a fixed probe along the whole path when ``probe`` is a tensor shaped like x
      (FFJORD, Grathwohl et al. 2019);
    * Hutchinson's estimate with a fresh probe of that kind (``"rademacher"`` or ``"gaussian"``, drawn from
      ``generator``) at every evaluation of the field when ``probe`` is a string. ℓ is linear in the
      estimates, so it stays unbiased, and the independent errors of the evaluations partly average out.
    """
    grid = [float(t) for t in times]
    if len(grid) < 2 or any(b <= a for a, b in zip(grid, grid[1:])):
        raise ValueError("times must increase strictly, from eps (the data) to 1 (the prior).")
    if method not in STEPS:
        raise ValueError(f"method must be one of {sorted(STEPS)}, got {method!r}.")
    if isinstance(probe, str) and probe not in ("rademacher", "gaussian"):
        raise ValueError(f"probe must be None, a tensor, 'rademacher' or 'gaussian', got {probe!r}.")
    shape, d = x.shape, x[0].numel()
    velocity = probability_flow(score, sde)

    def augmented(state, t):  # state (B, D + 1) = [x, ℓ]
        xs = state[:, :d].reshape(shape)
        if probe is None:
            dx, div = divergence(velocity, xs, t)
        else:
            eps = probes(shape, probe, generator, xs.device, xs.dtype) if isinstance(probe, str) else probe
            dx, div = hutchinson_divergence(velocity, xs, t, eps)
        return torch.cat([dx.reshape(len(state), d), div[:, None]], 1)

    state = torch.cat([x.detach().reshape(len(x), d), torch.zeros_like(x.reshape(len(x), -1)[:, :1])], 1)
    for t, t_next in zip(grid, grid[1:]):
        state = STEPS[method](augmented, state, t, t_next - t)
    return sde.prior_log_prob(state[:, :d].reshape(shape)) + state[:, d]
