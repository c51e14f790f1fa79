"""Diffusion models: noise schedules, the forward process, and the DDPM and DDIM samplers (chapter 05);
score-based models with SDEs: VP/VE SDEs, reverse SDE and probability-flow ODE, their samplers,
exact noised-mixture scores, Hutchinson's estimator and ODE likelihoods (chapter 06).

Chapters 06 (score SDEs), 07 (flow matching) and 08 (latent diffusion and guidance)
reuse these pieces and the UNet of :mod:`genbook.nn.unet`.
"""

from .ddpm import ddim_sample, ddpm_sample, predict_x0, q_sample, q_step
from .schedules import (
    NoiseSchedule,
    check_timesteps,
    cosine_alphas_bar,
    cosine_betas,
    linear_betas,
    spaced_timesteps,
)
from .sde import (
    SDE,
    VESDE,
    VPSDE,
    euler_maruyama,
    hutchinson_divergence,
    langevin_corrector,
    mixture_score,
    noised_mixture,
    ode_log_likelihood,
    ode_nfe,
    ode_sample,
    predictor_corrector,
    probability_flow,
    probes,
    time_grid,
)

__all__ = [
    "NoiseSchedule", "check_timesteps", "cosine_alphas_bar", "cosine_betas", "ddim_sample", "ddpm_sample",
    "linear_betas", "predict_x0", "q_sample", "q_step", "spaced_timesteps",
    # chapter 06
    "SDE", "VESDE", "VPSDE", "euler_maruyama", "hutchinson_divergence", "langevin_corrector", "mixture_score",
    "noised_mixture", "ode_log_likelihood", "ode_nfe", "ode_sample", "predictor_corrector", "probability_flow",
    "probes", "time_grid",
]
