# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Denoising diffusion probabilistic models
#
# Take a picture of a shirt and add a little Gaussian noise. Then a little more,
# and more, a thousand times, until nothing of the shirt is left: the picture is
# a sample of $\mathcal{N}(0, I)$. Destroying structure this way needs no
# learning at all. The idea of diffusion models (Sohl-Dickstein et al. 2015) is
# that each of these steps is so small that it can be *undone*, one step at a
# time, by a neural network that has learned how much noise to remove. Start
# from pure noise, undo a thousand small corruptions, and a new shirt appears.
#
# Ho, Jain and Abbeel (2020) turned this idea into the *denoising diffusion
# probabilistic model* (DDPM): a fixed noising process, a network
# $\varepsilon_\theta(x_t, t)$ trained with a plain mean-squared error to predict
# the noise in a noisy image, and a sampler that runs the process backwards.
# This chapter builds all of it on Fashion-MNIST:
#
# 1. the **forward process** and its closed form $q(x_t \mid x_0)$, checked against
#    running the Markov chain;
# 2. **noise schedules** (linear and cosine) and what they do to the signal-to-noise ratio;
# 3. the **reverse process**, why its mean can be written through the predicted noise,
#    and the simplified loss;
# 4. the **UNet** that predicts the noise;
# 5. **training**, then **ancestral sampling** (the paper's Algorithm 2, line by line)
#    and **DDIM** (Song, Meng and Ermon 2021), a deterministic sampler that needs far
#    fewer steps;
# 6. an experiment: sample quality against the number of network evaluations.
#
# The UNet, the schedules and the samplers written here are reused by the
# chapters on score SDEs (06), flow matching (07) and latent diffusion (08).

# %%
import math
import statistics
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

import genbook
from genbook.data.fashion_mnist import fashion_mnist
from genbook.diffusion import NoiseSchedule, ddim_sample, ddpm_sample, predict_x0, q_sample, spaced_timesteps
from genbook.metrics import (
    evaluate_fashion,
    fashion_evaluator,
    image_baselines,
    save_samples,
    timed_sampling,
)
from genbook.metrics import n_eval as n_eval_images
from genbook.metrics.baselines import fit_pca_gaussian, gaussian_blur, reference_images, train_sample
from genbook.metrics.kid import mmd2_unbiased, polynomial_kernel
from genbook.nn.unet import UNet, count_parameters, timestep_embedding

cfg = genbook.profile(
    fast=dict(T=1000, schedule="cosine", output="skip", channels=[16, 32], blocks=1, patch_size=2, attention=True,
              loss_weighting="min_snr", min_snr_gamma=5.0, steps=1000, batch_size=32, lr=3e-3, warmup=50,
              ema=0.99, sample_batch=250, ancestral_steps=[10, 25], ddim_steps=[10, 20], eta_sweep_steps=[10],
              chain_samples=500, reference_subset=50, reference_steps=100),
    full=dict(T=1000, schedule="cosine", output="skip", channels=[64, 128, 128], blocks=2, patch_size=1,
              attention=True, loss_weighting="min_snr", min_snr_gamma=5.0, steps=30_000, batch_size=128, lr=2e-4,
              warmup=1000, ema=0.9995, sample_batch=1000, ancestral_steps=[10, 25, 50, 100, 250, 1000],
              ddim_steps=[5, 10, 25, 50, 100], eta_sweep_steps=[25], chain_samples=4000, reference_subset=1000,
              reference_steps=1000),
)
SAMPLING_SETTINGS = ("sample_batch", "ancestral_steps", "ddim_steps", "eta_sweep_steps", "chain_samples",
                     "reference_subset", "reference_steps")  # not part of the model's key
device = genbook.device()
generator = genbook.seed_everything(0)
print("profile:", genbook.profile_name(), "| device:", device)
print(cfg)

x_train, y_train = fashion_mnist("train")
print("training images:", tuple(x_train.shape), f"in [{x_train.min():.0f}, {x_train.max():.0f}]")

# %% [markdown]
# ## 1. The forward process
#
# The forward (noising) process is a Markov chain that, at each of $T$ steps,
# shrinks the image a little and adds a little Gaussian noise (Ho et al. 2020, eq. 2):
#
# $$
# q(x_t \mid x_{t-1}) = \mathcal{N}\big(x_t;\ \sqrt{1-\beta_t}\, x_{t-1},\ \beta_t I\big),
# \qquad t = 1, \dots, T,
# $$
#
# with a *variance schedule* $\beta_1 < \dots < \beta_T$ of small numbers (Ho et al.
# use $\beta_t$ rising linearly from $10^{-4}$ to $0.02$ over $T = 1000$ steps). The
# factor $\sqrt{1-\beta_t}$ keeps the variance from growing: if $x_{t-1}$ has unit
# variance, so does $x_t$.
#
# A sum of independent Gaussians is Gaussian, so we never have to run the chain.
# Write $\alpha_t = 1 - \beta_t$ and $\bar\alpha_t = \prod_{s=1}^{t} \alpha_s$. Unrolling
# two steps, $x_t = \sqrt{\alpha_t}\big(\sqrt{\alpha_{t-1}}\, x_{t-2} + \sqrt{1-\alpha_{t-1}}\,\varepsilon'\big) + \sqrt{1-\alpha_t}\,\varepsilon''$,
# and the two noise terms merge into one of variance $\alpha_t(1-\alpha_{t-1}) + 1 - \alpha_t = 1 - \alpha_t\alpha_{t-1}$.
# By induction (eq. 4),
#
# $$
# q(x_t \mid x_0) = \mathcal{N}\big(x_t;\ \sqrt{\bar\alpha_t}\, x_0,\ (1-\bar\alpha_t) I\big),
# \qquad\text{i.e.}\qquad x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon,\quad \varepsilon \sim \mathcal{N}(0, I).
# $$
#
# Both equations in code, from scratch, with Ho et al.'s linear schedule. Tensors
# are indexed from 0, so index `t` holds the paper's step $t+1$.

# %%
T = cfg["T"]
betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)  # β_1..β_T (Ho et al. 2020, sec. 4)
alphas = 1 - betas  # α_t = 1 − β_t
alphas_bar = torch.cumprod(alphas, dim=0)  # ᾱ_t = Π_{s≤t} α_s


def q_step_scratch(x_prev, t, noise):
    """One step of the chain, eq. 2: x_t = √(1 − β_t) x_{t−1} + √β_t ε."""
    return (1 - betas[t]).sqrt() * x_prev + betas[t].sqrt() * noise


def q_sample_scratch(x0, t, noise):
    """The closed form, eq. 4: x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε, in one step."""
    return alphas_bar[t].sqrt() * x0 + (1 - alphas_bar[t]).sqrt() * noise


# %% [markdown]
# **Check: the closed form against the chain.** We run the chain, step by step,
# on `chain_samples` copies of one picture and compare, pixel by pixel, the mean
# and variance of the copies with what eq. 4 says: $\sqrt{\bar\alpha_t}\,x_0$ and
# $1-\bar\alpha_t$. With $N$ samples of a Gaussian of variance $v$, the sample
# mean has standard error $\sqrt{v/N}$ and the sample variance $v\sqrt{2/(N-1)}$.
# We require every pixel at every checked step to lie within 5 standard errors,
# a tolerance that comes from the sample size alone. How often does a correct
# implementation fail it? With 784 pixels × 4 steps × 2 statistics = 6,272
# comparisons, the cell computes it: the mean is Gaussian, but the sample variance
# follows a scaled $\chi^2_{N-1}$, whose upper tail is heavier than the normal one.

# %%
n_chain = cfg["chain_samples"]
x0_one = x_train[0]  # (1, 28, 28)
x = x0_one.expand(n_chain, -1, -1, -1).clone()  # N copies of x_0
chain_gen = torch.Generator().manual_seed(1)
check_at = {9, 99, 499, T - 1}  # the paper's t = 10, 100, 500, 1000
worst = {}
for t in range(T):
    x = q_step_scratch(x, t, torch.randn(x.shape, generator=chain_gen)).float()
    if t in check_at:
        mean, var = alphas_bar[t].sqrt() * x0_one, 1 - alphas_bar[t]  # eq. 4
        z_mean = (x.mean(0) - mean) / (var / n_chain).sqrt()
        z_var = (x.var(0) - var) / (var * math.sqrt(2 / (n_chain - 1)))
        worst[t + 1] = (z_mean.abs().max().item(), z_var.abs().max().item())
        print(f"t = {t + 1:4d}: worst |z| of the means {worst[t + 1][0]:.2f}, of the variances {worst[t + 1][1]:.2f}")
closed_form_max_z = max(max(v) for v in worst.values())
assert closed_form_max_z < 5, worst
from scipy.stats import chi2, norm  # noqa: E402 (only here: the false-alarm rate of the 5-SE tolerance)

p_mean = 2 * norm.sf(5)  # |z| > 5 for one pixel's mean
half_width = 5 * math.sqrt(2 / (n_chain - 1)) * (n_chain - 1)  # 5 SE of the variance, in units of χ²_{N−1}
p_var = chi2.sf(n_chain - 1 + half_width, n_chain - 1) + chi2.cdf(n_chain - 1 - half_width, n_chain - 1)
n_tests = 784 * len(check_at)
p_false_alarm = 1 - (1 - p_mean) ** n_tests * (1 - p_var) ** n_tests
print(f"P(a correct chain fails the 5-SE check) = {p_false_alarm:.2%} "
      f"(per pixel and step: mean {p_mean:.1e}, variance {p_var:.1e}, N = {n_chain})")

# %% [markdown]
# genbook's `q_sample` computes the same thing, from a `NoiseSchedule` object
# that holds $\beta_t$, $\alpha_t$ and $\bar\alpha_t$ (in float64, handed to the
# device in the input's dtype). Same noise in, same $x_t$ out:

# %%
linear = NoiseSchedule.linear(T)
x0_batch, noise = x_train[:8].double(), torch.randn(8, 1, 28, 28, dtype=torch.float64)
t_batch = torch.tensor([0, 10, 100, 300, 500, 700, 900, 999])
ours = torch.stack([q_sample_scratch(x0_batch[i], t_batch[i], noise[i]) for i in range(8)])
assert torch.allclose(ours, q_sample(x0_batch, t_batch, noise, linear), atol=1e-12)
assert torch.allclose(linear.alphas_bar, alphas_bar)
print("q_sample matches the closed form written above.")

# %% [markdown]
# ## 2. Noise schedules and the signal-to-noise ratio
#
# How fast should the picture dissolve? The *signal-to-noise ratio* of $x_t$ is
#
# $$
# \mathrm{SNR}(t) = \frac{\bar\alpha_t}{1-\bar\alpha_t},
# $$
#
# and a schedule is really a choice of how $\log \mathrm{SNR}$ falls from large
# (clean) to very negative (pure noise). Nichol and Dhariwal (2021) noticed that
# with the linear schedule the last few hundred steps of a small image are
# already almost pure noise, so a share of training and sampling is spent where
# nothing is left to learn. Their **cosine schedule** defines $\bar\alpha_t$ directly
# (eq. 17), with a small offset $s = 0.008$ so that $\beta_1$ is not vanishingly small:
#
# $$
# \bar\alpha_t = \frac{f(t)}{f(0)}, \qquad f(t) = \cos^2\!\Big(\frac{t/T + s}{1 + s}\cdot\frac{\pi}{2}\Big),
# \qquad \beta_t = \min\Big(1 - \frac{\bar\alpha_t}{\bar\alpha_{t-1}},\ 0.999\Big).
# $$

# %%
s = 0.008


def f(t):
    return torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2


steps_1_to_T = torch.arange(1, T + 1, dtype=torch.float64)
alphas_bar_cos = f(steps_1_to_T) / f(torch.tensor(0.0, dtype=torch.float64))  # eq. 17
betas_cos = (1 - alphas_bar_cos / torch.cat([torch.ones(1, dtype=torch.float64), alphas_bar_cos[:-1]])).clamp(max=0.999)

cosine = NoiseSchedule.cosine(T)
assert torch.allclose(cosine.betas, betas_cos)
schedules = {"linear": linear, "cosine": cosine}
for name, sch in schedules.items():
    print(f"{name:>6}: ᾱ at t = 1, T/2, T: {sch.alphas_bar[0]:.5f}, {sch.alphas_bar[T // 2 - 1]:.4f}, "
          f"{sch.alphas_bar[-1]:.2e}   log SNR from {sch.log_snr()[0]:.1f} to {sch.log_snr()[-1]:.1f}")

# %%
fig, (ax_snr, ax_sig) = plt.subplots(1, 2, figsize=(10, 3.2))
for name, sch in schedules.items():
    ax_snr.plot(steps_1_to_T, sch.log_snr(), label=name)
    ax_sig.plot(steps_1_to_T, sch.alphas_bar.sqrt(), label=f"{name}: √ᾱ_t (signal)")
    ax_sig.plot(steps_1_to_T, (1 - sch.alphas_bar).sqrt(), "--", label=f"{name}: √(1−ᾱ_t) (noise)")
ax_snr.axhline(0, color="0.7", lw=0.8)
ax_snr.set(xlabel="t", ylabel="log SNR(t)", title="signal-to-noise ratio")
ax_sig.set(xlabel="t", title="coefficients of x_0 and ε in x_t")
ax_snr.legend()
ax_sig.legend(fontsize=7)
plt.tight_layout()
plt.show()

# %%
probe_t = [1, 100, 333, 667, 900, 999, 1000]
print("log SNR at t =", probe_t)
for name, sch in schedules.items():
    print(f"  {name:>6}:", [round(sch.log_snr()[t - 1].item(), 1) for t in probe_t])
faint = {name: (sch.alphas_bar.sqrt() < 0.1).double().mean().item() for name, sch in schedules.items()}
first_faint = {name: int((sch.alphas_bar.sqrt() < 0.1).nonzero()[0]) + 1 for name, sch in schedules.items()}
for name in schedules:
    print(f"  {name:>6}: √ᾱ_t < 0.1 (less than a tenth of x_t is signal) from t = {first_faint[name]}, "
          f"for {faint[name]:.1%} of the steps")
assert faint["linear"] > 5 * faint["cosine"]

# %% [markdown]
# Read the printed numbers, not just the curves. Both schedules' log-SNR drops
# steeply over the first hundred steps, and the linear schedule's does *not* level
# off afterwards: it keeps falling through the last third of the chain. What the
# linear schedule wastes shows in the signal coefficient $\sqrt{\bar\alpha_t}$ (right
# panel): it is below 0.1, so that $x_t$ is almost pure noise, for the whole last
# part of the chain printed above, a much larger fraction of the steps than under
# the cosine schedule, which keeps some signal until its last few steps (where the
# clipped $\beta_T$ then drives its log-SNR far down). Steps spent on nearly pure
# noise teach the network little.
# The same image, noised to the same steps under both schedules:

# %%
picture = x_train[1:2]  # a T-shirt, (1, 1, 28, 28)
show_t = [0, 50, 100, 200, 300, 400, 500, 600, 700, 800, 900, 999]
rows = []
for sch in schedules.values():
    eps = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(2))  # same noise for every t
    rows.append(torch.cat([q_sample(picture, t, eps, sch) for t in show_t]))
fig, axes = plt.subplots(2, 1, figsize=(10, 2.2))
for ax, name, row in zip(axes, schedules, rows):
    genbook.show_images(row.clamp(-1, 1), nrow=len(show_t), ax=ax)
    ax.set_title(f"{name} schedule, t = " + ", ".join(str(t + 1) for t in show_t), fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# From here on we use the schedule named in `cfg` (cosine).
#
# ## 3. The reverse process and the loss
#
# If the steps are small, the reverse of each forward step is also close to a
# Gaussian (Feller 1949; Sohl-Dickstein et al. 2015), so the generative model is a
# Markov chain that runs backwards from $p(x_T) = \mathcal{N}(0, I)$ with learned Gaussian steps (eq. 1):
#
# $$
# p_\theta(x_{t-1} \mid x_t) = \mathcal{N}\big(x_{t-1};\ \mu_\theta(x_t, t),\ \sigma_t^2 I\big),
# $$
#
# with fixed variances $\sigma_t^2$ (Ho et al. use $\beta_t$ or $\tilde\beta_t$, below).
# It is trained by maximising a variational lower bound of $\log p_\theta(x_0)$,
# which splits into one KL divergence per step (eq. 5). The key is that the
# forward step *conditioned on $x_0$* can be reversed exactly, by Bayes' rule on
# two Gaussians (eqs. 6–7):
#
# $$
# q(x_{t-1} \mid x_t, x_0) = \mathcal{N}\big(x_{t-1};\ \tilde\mu_t(x_t, x_0),\ \tilde\beta_t I\big),
# \quad
# \tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}\, x_0 + \frac{\sqrt{\alpha_t}\,(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}\, x_t,
# \quad
# \tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\,\beta_t .
# $$
#
# Each KL term between two Gaussians with the same variance is a squared distance
# between means, $L_{t-1} = \frac{1}{2\sigma_t^2}\lVert \tilde\mu_t(x_t, x_0) - \mu_\theta(x_t, t)\rVert^2 + C$ (eq. 8).
# Now substitute $x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\varepsilon)/\sqrt{\bar\alpha_t}$ from eq. 4 into
# $\tilde\mu_t$; the algebra collapses to
#
# $$
# \tilde\mu_t = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\,\varepsilon\Big).
# $$
#
# The network sees $x_t$, so the only unknown is the noise $\varepsilon$. Ho et al.
# therefore let the network predict the noise and *define* the mean through it (eq. 11):
#
# $$
# \mu_\theta(x_t, t) = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\,\varepsilon_\theta(x_t, t)\Big),
# $$
#
# which turns $L_{t-1}$ into a weighted noise-prediction error,
# $\frac{\beta_t^2}{2\sigma_t^2\alpha_t(1-\bar\alpha_t)}\lVert\varepsilon - \varepsilon_\theta(\sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\varepsilon, t)\rVert^2$ (eq. 12).
# Dropping the weight gives the **simplified loss** (eq. 14) that everyone uses:
#
# $$
# L_\text{simple}(\theta) = \mathbb{E}_{t \sim \mathcal{U}\{1..T\},\ x_0,\ \varepsilon \sim \mathcal{N}(0, I)}
# \Big[\big\lVert \varepsilon - \varepsilon_\theta\big(\sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon,\ t\big)\big\rVert^2\Big].
# $$
#
# It is denoising: noise an image to a random level and ask the network what
# noise was added. Dropping the weight puts relatively more effort on the large
# $t$ (very noisy inputs), which Ho et al. found gives better samples. Exercise 5.1
# asks you to write $\tilde\mu_t$ and $\tilde\beta_t$ yourself; a check compares them with
# Bayes' rule.
#
# ## 4. The network: a UNet
#
# $\varepsilon_\theta$ maps an image and a time to an image of the same shape. Ho et al.
# use the UNet of Ronneberger et al. (2015), adapted to diffusion. genbook's
# `UNet` (in `genbook/nn/unet.py`) has the same parts, sized down for a CPU:
#
# - **Time embedding.** $t$ is written in sinusoids of geometrically spaced
#   frequencies, the positional encoding of the transformer (Vaswani et al. 2017),
#   then passed through a two-layer MLP. Every residual block reads it, so one
#   network serves all $t$.
# - **Residual blocks** (He et al. 2016): GroupNorm → SiLU → 3×3 conv → GroupNorm whose
#   scale and shift are set by the time embedding ("AdaGN", Nichol and Dhariwal 2021;
#   Ho et al. simply add it) → SiLU → 3×3 conv, plus the input. **Group normalisation**
#   (Wu and He 2018) normalises groups of channels within one image: unlike batch
#   norm, a sample's output does not depend on the rest of the batch, which would
#   be wrong for a model evaluated on batches of samples at one noise level.
# - **Down and up paths with skips.** The encoder halves the resolution level by
#   level (a stride-2 conv); the decoder doubles it back (nearest-neighbour
#   upsampling + conv) and, at each level, concatenates the encoder's features of
#   the same resolution: coarse context from below, fine detail from the skip.
# - **Self-attention at the lowest resolution.** At 7×7 the 49 positions attend to
#   each other (`scaled_dot_product_attention`), so the two sleeves of a shirt can agree.
# - **Zero initialisation** of the last conv of each block and of the output: the
#   untrained network is the identity plus zero, a stable start.
#
# One choice is made for the CPU: with `patch_size=2`, each 2×2 patch of pixels is
# first folded into 4 channels (`pixel_unshuffle`, as the patches of a ViT), so the
# UNet runs at 14×14 → 7×7, and the output is unfolded back to 28×28. That cuts the
# cost per network evaluation by the factor printed below (a ratio of CPU times
# measured in this run); the full profile runs at 28×28.
#
# First the time embedding from scratch, checked against genbook's:

# %%
def sinusoidal_scratch(t, dim, max_period=10_000.0):
    """emb(t) = [sin(t ω_0), ..., sin(t ω_{d/2−1}), cos(t ω_0), ..., cos(t ω_{d/2−1})], ω_i = max_period^(−2i/d)."""
    omega = max_period ** (-torch.arange(dim // 2, dtype=torch.float64) / (dim // 2))  # (d/2,)
    angles = t.double()[:, None] * omega[None, :]  # (B, d/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1)  # (B, d)


t_probe = torch.tensor([0, 1, 10, 500, 999])
assert torch.allclose(sinusoidal_scratch(t_probe, 32).float(), timestep_embedding(t_probe, 32), atol=1e-5)

fig, ax = plt.subplots(figsize=(8, 2))
ax.imshow(sinusoidal_scratch(torch.arange(0, T, 4), 32).T, aspect="auto", cmap="RdBu",
          extent=(0, T, 32, 0), interpolation="nearest")
ax.set(xlabel="t", ylabel="dimension", title="sinusoidal time embedding: fast dimensions first, slow ones last")
plt.show()

# %% [markdown]
# One more choice concerns what exactly the network outputs. For large $t$,
# $\bar\alpha_t \approx 0$ and $x_t \approx \varepsilon$: the right answer is nearly
# the input itself, and any error in it is magnified by $1/\sqrt{\bar\alpha_t}$ (printed
# below for the cosine schedule) when a sampler turns the predicted noise into a
# predicted image $\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\varepsilon_\theta)/\sqrt{\bar\alpha_t}$.
# A network trained for a few minutes would have to be that much more accurate there
# than elsewhere. So we give $\varepsilon_\theta$ a skip connection *in time*, in the spirit of the input
# scalings of Karras et al. (2022):
#
# $$
# \varepsilon_\theta(x_t, t) = \sqrt{1-\bar\alpha_t}\; x_t + \sqrt{\bar\alpha_t}\; F_\theta(x_t, t),
# $$
#
# with $F_\theta$ the UNet. Nothing else changes: $\varepsilon_\theta$ is still a noise
# predictor trained on $\lVert \varepsilon - \varepsilon_\theta \rVert^2$ (section 5) and used by the samplers. It is
# exact where the task is trivial ($\bar\alpha_t \to 0$: $\varepsilon_\theta \to x_t$) and
# leaves the network in charge where it is hard ($\bar\alpha_t \to 1$: $\varepsilon_\theta \to F_\theta$).
# (Writing $x_t$ and $\varepsilon$ in terms of $F_\theta$'s target shows that $F_\theta$ learns
# $v = \sqrt{\bar\alpha_t}\,\varepsilon - \sqrt{1-\bar\alpha_t}\,x_0$, the "v-prediction" of
# Salimans and Ho 2022; exercise 5.2.) This is a departure from Ho et al., whose network
# outputs $\hat\varepsilon$ directly; DDPM does not need it, and section 5 shows where it does
# *not* help: the predicted image at $t = T$. Whether it pays off in samples at this
# budget is an ablation that needs a second training run, more than the fast profile
# can afford; exercise 5.3 sets it up (`output="eps"`).

# %%
schedule = NoiseSchedule.from_name(cfg["schedule"], T)
amplification = (1 / schedule.alphas_bar.sqrt()).tolist()
print(f"1/√ᾱ_t ({cfg['schedule']}): {amplification[-1]:.2e} at t = T, {amplification[-2]:.2e} at t = T − 1, "
      f"{amplification[T // 2 - 1]:.2f} at t = T/2")


def cpu_ms_per_call(net, x, t, repeats=3):
    """CPU milliseconds (process time: fair on a busy machine) per forward call, after a warm-up call."""
    with torch.no_grad():
        net(x, t)
        start = time.process_time()
        for _ in range(repeats):
            net(x, t)
    return 1000 * (time.process_time() - start) / repeats


probe_x, probe_t = torch.randn(32, 1, 28, 28), torch.randint(0, T, (32,))
unet_cost = {p: cpu_ms_per_call(UNet(in_channels=1, channels=cfg["channels"], blocks=cfg["blocks"], patch_size=p,
                                     attention=cfg["attention"]).eval(), probe_x, probe_t) for p in (1, 2)}
print(f"one UNet call on 32 images: {unet_cost[1]:.0f} ms at patch size 1, {unet_cost[2]:.0f} ms at patch size 2: "
      f"{unet_cost[1] / unet_cost[2]:.1f}× cheaper")


class NoisePredictor(nn.Module):
    """ε_θ(x_t, t) = √(1 − ᾱ_t) x_t + √ᾱ_t F_θ(x_t, t), with F_θ a UNet. x_t: (B, C, H, W), t: (B,) int64.

    skip=False gives Ho et al.'s plain ε-prediction, ε_θ = F_θ (for exercise 5.3).
    """

    def __init__(self, net: nn.Module, schedule: NoiseSchedule, skip: bool = True):
        super().__init__()
        self.net, self.skip = net, skip
        self.register_buffer("alphas_bar", schedule.alphas_bar.float(), persistent=False)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if not self.skip:
            return self.net(x_t, t)  # plain ε-prediction
        a = self.alphas_bar[t].view(-1, 1, 1, 1)  # ᾱ_t, (B, 1, 1, 1)
        return (1 - a).sqrt() * x_t + a.sqrt() * self.net(x_t, t)


def build_model() -> NoisePredictor:
    if cfg["output"] not in ("skip", "eps"):
        raise ValueError(f"cfg['output'] must be 'skip' (the skip in time) or 'eps' (plain), got {cfg['output']!r}.")
    torch.manual_seed(0)
    unet = UNet(in_channels=1, channels=cfg["channels"], blocks=cfg["blocks"], patch_size=cfg["patch_size"],
                attention=cfg["attention"])
    return NoisePredictor(unet, schedule, skip=cfg["output"] == "skip")


model = build_model()
print(f"UNet parameters: {count_parameters(model):,}")

# Shapes through the network, recorded with forward hooks on its parts.
shapes = []


def record(name):
    return lambda module, inputs, output: shapes.append((name, tuple(output.shape)))


net = model.net
parts = ([("stem", net.stem)] + [(f"down[{k}] {type(b).__name__}", b) for k, b in enumerate(net.down)]
         + [("mid1 ResidualBlock", net.mid1), (f"mid_attn {type(net.mid_attn).__name__}", net.mid_attn),
            ("mid2 ResidualBlock", net.mid2)]
         + [(f"up[{k}] {type(b).__name__}", b) for k, b in enumerate(net.up)] + [("out_conv", net.out_conv)])
hooks = [module.register_forward_hook(record(name)) for name, module in parts]
with torch.no_grad():
    out = model(torch.randn(2, 1, 28, 28), torch.tensor([10, 900]))
for h in hooks:
    h.remove()
print(f"  {'input':<28} (2, 1, 28, 28)")
for name, shape in shapes:
    print(f"  {name:<28} {shape}")
print(f"  {'output (pixels unfolded)':<28} {tuple(out.shape)}")
assert out.shape == (2, 1, 28, 28)

# %% [markdown]
# ## 5. Training (Algorithm 1)
#
# Ho et al.'s Algorithm 1 is the loss above, one minibatch at a time: draw an image
# $x_0$, a step $t \sim \mathcal{U}\{1, \dots, T\}$ and noise $\varepsilon$, and take a
# gradient step on $\lVert \varepsilon - \varepsilon_\theta(\sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\varepsilon, t)\rVert^2$.
#
# **One departure, for a short run: min-SNR weighting.** $L_\text{simple}$ weighs every $t$
# alike in units of $\varepsilon$. A sampler, though, uses the predicted image, and an error
# $\delta$ in $\hat\varepsilon$ moves $\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\hat\varepsilon)/\sqrt{\bar\alpha_t}$
# by only $\delta/\sqrt{\mathrm{SNR}(t)}$. At the least noisy steps ($\mathrm{SNR} \gg 1$; its value at
# $t = 1$ is printed below) $L_\text{simple}$ asks the network to find a faint noise that barely changes the image; the loss
# is largest there (the held-out loss by $t$ below shows it), and those large, noisy gradients
# pull against the ones of the other steps. Hang et al. (2023) read training as many tasks, one
# per $t$, and cap each task's weight *in units of $x_0$* at $\gamma$. Since
# $\lVert \hat x_0 - x_0\rVert^2 = \lVert \hat\varepsilon - \varepsilon\rVert^2/\mathrm{SNR}(t)$, a weight
# $\min(\mathrm{SNR}(t), \gamma)$ on the first is, in units of $\varepsilon$,
#
# $$
# L_\gamma(\theta) = \mathbb{E}_{t,\, x_0,\, \varepsilon}\Big[\frac{\min(\mathrm{SNR}(t), \gamma)}{\mathrm{SNR}(t)}\,
# \big\lVert \varepsilon - \varepsilon_\theta\big(\sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon,\ t\big)\big\rVert^2\Big]:
# $$
#
# exactly $L_\text{simple}$ wherever $\mathrm{SNR}(t) \le \gamma$, and down-weighted by
# $\gamma/\mathrm{SNR}(t)$ at the cleaner steps. Hang et al. use $\gamma = 5$ and report that it reaches
# the same FID in several times fewer steps; the fast profile needs exactly that. It is still
# a weighting of the per-step terms of eq. 12, as $L_\text{simple}$ is. `cfg["loss_weighting"]`
# chooses (`"simple"` for eq. 14); exercise 5.7 trains with $L_\text{simple}$ and compares.
#
# The step function below is all of it; `genbook.fit` does the plumbing (device,
# bf16 autocast on a GPU, optimiser, the learning-rate schedule, gradient clipping,
# progress). The learning rate warms up linearly over the first `warmup` steps (Ho et
# al. warm up over 5000), then stays constant, as in Ho et al.; `fit` sets it from the
# `lr_schedule` function (here `genbook.warmup_constant`) at every step. We keep an
# exponential moving average (EMA) of the weights,
# $\bar\theta \leftarrow d\,\bar\theta + (1 - d)\,\theta$ after every step, which Ho et
# al. also sample from (with $d = 0.9999$): it averages out the noise of roughly the last
# $1/(1 - d)$ steps. A short run improves fast until its end, and a long average would lag
# behind it, so the fast profile averages over fewer steps (printed below).

# %%
def loss_weights(schedule: NoiseSchedule, weighting: str, gamma: float) -> torch.Tensor:
    """Weight of each step's ‖ε − ε_θ‖², (T,) float32: 1 (L_simple, eq. 14) or min(SNR, γ)/SNR (Hang et al. 2023)."""
    snr = schedule.alphas_bar / (1 - schedule.alphas_bar)  # SNR(t) = ᾱ_t / (1 − ᾱ_t), float64 (T,)
    if weighting == "simple":
        return torch.ones(schedule.T)
    if weighting == "min_snr":
        if not gamma > 0:
            raise ValueError(f"min_snr_gamma must be > 0, got {gamma!r}.")
        return (snr.clamp(max=gamma) / snr).float()
    raise ValueError(f"cfg['loss_weighting'] must be 'simple' (eq. 14) or 'min_snr' (Hang et al. 2023), "
                     f"got {weighting!r}.")


print(f"EMA decay {cfg['ema']}: an average over roughly the last {1 / (1 - cfg['ema']):.0f} of "
      f"{cfg['steps']} training steps")
weights = loss_weights(schedule, cfg["loss_weighting"], cfg["min_snr_gamma"])
capped = int((weights < 1).sum())  # the weights fall with t's SNR, so these are t = 1..capped
snr_1 = (schedule.alphas_bar[0] / (1 - schedule.alphas_bar[0])).item()
print(f"SNR(1) = {snr_1:.0f}; {cfg['loss_weighting']} weighting: weight {weights[0]:.1e} at t = 1, "
      f"{weights[capped // 2]:.2f} at t = {capped // 2 + 1}, below 1 for t = 1..{capped} ({capped / T:.0%} of the "
      f"steps), 1 from t = {capped + 1}")
assert torch.all(weights[capped:] == 1) and torch.all(weights[:capped].diff() >= 0)  # 1 where SNR ≤ γ, rising to it


def train(model: NoisePredictor) -> dict:
    model.to(device)
    # genbook.adam fuses Adam's update into one kernel over all parameters where it can (cheaper per step
    # than the per-tensor loop, the same update)
    optimizer = genbook.adam(model.parameters(), cfg["lr"])
    ema = genbook.EMA(model, decay=cfg["ema"])
    weight_of_t = weights.to(device)

    def step(x0):
        t = torch.randint(0, T, (len(x0),), device=device)  # t ~ Uniform({1, ..., T})
        eps = torch.randn_like(x0)  # ε ~ N(0, I)
        x_t = q_sample(x0, t, eps, schedule)  # √ᾱ_t x_0 + √(1 − ᾱ_t) ε   (eq. 4)
        error = (model(x_t, t).float() - eps).pow(2).mean(dim=(1, 2, 3))  # ‖ε − ε_θ(x_t, t)‖² per image, (B,)
        return (weight_of_t[t] * error).mean()  # L_γ (L_simple, eq. 14, when every weight is 1)

    data = genbook.batches(x_train, batch_size=cfg["batch_size"], generator=generator, device=device)
    history = genbook.fit(step, data, cfg["steps"], model=model, optimizer=optimizer, ema=ema,
                          grad_clip=1.0, lr_schedule=genbook.warmup_constant(cfg["lr"], cfg["warmup"]), log_every=50,
                          desc="DDPM")
    model.load_state_dict(ema.model.state_dict())  # keep the EMA weights
    return {"history": history}


start = time.perf_counter()
training_settings = {k: v for k, v in cfg.items() if k not in SAMPLING_SETTINGS}  # the key: what shapes the weights
model, info = genbook.load_or_train(build_model(), train, chapter="05_ddpm", name="unet", config=training_settings)
model = model.to(device).eval()
train_seconds = time.perf_counter() - start
print(("loaded from cache" if info["cached"] else f"trained in {train_seconds:.0f} s"), "->",
      genbook.paths.repo_relative(info["path"]))
genbook.plot_losses(info["history"], title=f"training loss, {cfg['loss_weighting']} weighting (EMA weights are kept)")
plt.show()


# %% [markdown]
# The loss is an average over all $t$ of very different tasks: for small $t$ the
# noise is a faint sheen on a clear image (hard to predict exactly), for large $t$
# it is almost the whole input (easy). We measure it task by task: the trained
# model's $L_\text{simple}$ on held-out test images at fixed $t$ (the same images
# and noise at every $t$). Its overall level says little about sample quality; the
# samples and their FD below do.

# %%
x_heldout = fashion_mnist("test", n=128)[0].to(device)
eps_heldout = torch.randn(x_heldout.shape, generator=torch.Generator().manual_seed(7)).to(device)
loss_t = torch.linspace(0, T - 1, 16).round().long().tolist()
loss_by_t = []
with torch.no_grad():
    for t in loss_t:
        t_batch = torch.full((len(x_heldout),), t, device=device)
        loss_by_t.append(F.mse_loss(model(q_sample(x_heldout, t_batch, eps_heldout, schedule), t_batch),
                                    eps_heldout).item())
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot([t + 1 for t in loss_t], loss_by_t, "o-")
ax.set(xlabel="t", ylabel="held-out L_simple", yscale="log", title="the loss, one noise level at a time")
plt.tight_layout()
plt.show()
print("held-out L_simple at t =", [t + 1 for t in loss_t[::3]], ":", [round(v, 4) for v in loss_by_t[::3]])
print(f"largest at t = {loss_t[max(range(len(loss_t)), key=loss_by_t.__getitem__)] + 1}, "
      f"smallest at t = {loss_t[min(range(len(loss_t)), key=loss_by_t.__getitem__)] + 1}")

# %% [markdown]
# **Where the loss hardly looks: $t = T$.** The skip in time makes $\varepsilon_\theta$ nearly
# exact at large $t$, but not the predicted image. Substituting $\varepsilon_\theta$ into
# $\hat x_0$ gives $\hat x_0 = \sqrt{\bar\alpha_t}\,x_t - \sqrt{1-\bar\alpha_t}\,F_\theta \approx -F_\theta$
# near $t = T$ (exercise 5.3), while an error of $F_\theta$ enters the loss with the weight
# $\bar\alpha_t$ (printed below; the min-SNR weight is 1 there): the loss barely trains $F_\theta$
# there, and the first step of every sampler uses exactly that $\hat x_0$. What should it be? At $t = T$, $x_T$ says almost nothing
# about $x_0$, so the best guess, $\mathbb E[x_0 \mid x_T]$, is the mean training image. We measure
# how far the trained model's $\hat x_0(x_T, T)$ is from it, next to how far a typical training
# image is from the mean (the error of a model that guessed a random image) and next to an
# untrained network of the same build.

# %%
x_T_probe = torch.randn(256, 1, 28, 28, generator=torch.Generator().manual_seed(8)).to(device)
t_last = torch.full((len(x_T_probe),), T - 1, device=device)
mean_image = x_train.mean(0).to(device)  # E[x_0] over the training set, (1, 28, 28)


def rms_to_mean(net):
    """Root-mean-square distance per pixel between x̂_0(x_T, T) and the mean training image."""
    with torch.no_grad():
        x0_hat = predict_x0(x_T_probe, t_last, net(x_T_probe, t_last), schedule)
    return (x0_hat - mean_image).pow(2).mean().sqrt().item()


image_spread = (x_train[:5000].to(device) - mean_image).pow(2).mean().sqrt().item()
untrained = rms_to_mean(build_model().to(device).eval())
trained = rms_to_mean(model)
print(f"loss weight of F at t = T: ᾱ_T = {schedule.alphas_bar[-1]:.1e}; over the last 10 steps at most "
      f"{schedule.alphas_bar[-10]:.1e}")
print(f"rms(x̂_0(x_T, T) − mean image): trained {trained:.3f}, untrained {untrained:.3f}; "
      f"a training image vs the mean: {image_spread:.3f}")
print("the trained x̂_0 at t = T is " + ("closer to" if trained < untrained else "no closer to")
      + " the mean image than the untrained network's, and "
      + ("closer than" if trained < image_spread else "as far as or farther than") + " a typical training image")

# %% [markdown]
#
# ## 6. Ancestral sampling (Algorithm 2)
#
# Sampling runs the learned reverse chain: start from noise and apply
# $p_\theta(x_{t-1} \mid x_t)$ with the mean of eq. 11, $T$ times. Here is the paper's
# Algorithm 2, line by line:
#
# ```
# 1: x_T ~ N(0, I)
# 2: for t = T, ..., 1 do
# 3:     z ~ N(0, I) if t > 1, else z = 0
# 4:     x_{t-1} = 1/√α_t · (x_t − β_t/√(1 − ᾱ_t) · ε_θ(x_t, t)) + σ_t z
# 5: end for
# 6: return x_0
# ```
#
# Running all $T = 1000$ steps costs 1000 network evaluations per image. The same
# algorithm runs on a shorter chain that visits only $S$ of the steps,
# $\tau_1 < \dots < \tau_S$: keep $\bar\alpha$ at those steps and set
# $\beta'_i = 1 - \bar\alpha_{\tau_i}/\bar\alpha_{\tau_{i-1}}$ (Nichol and Dhariwal 2021,
# sec. 4), so that $q(x_{\tau_i} \mid x_0)$, the inputs the network was trained on,
# stay the same. `NoiseSchedule.respace` does this; the function below takes the
# chain as an argument and is Algorithm 2 verbatim. For $\sigma_t^2$ we use
# $\tilde\beta_t$, the variance of the true posterior, which Ho et al. found as good
# as $\beta_t$ with all steps and which is much better with few.

# %%
def _eps(eps_model, x, tau):
    return eps_model(x, torch.full((len(x),), tau, dtype=torch.long, device=x.device))


@torch.inference_mode()
def ancestral_scratch(eps_model, n, timesteps, generator):
    """Algorithm 2 of Ho et al. (2020) on the chain that visits `timesteps` (all of 0..T−1, or fewer)."""
    chain = schedule.respace(timesteps)  # β'_i, α'_i, ᾱ'_i of the (possibly shorter) chain
    beta, alpha, alpha_bar = chain.betas.tolist(), chain.alphas.tolist(), chain.alphas_bar.tolist()
    x = torch.randn(n, 1, 28, 28, generator=generator).to(device)  # 1: x_T ~ N(0, I)
    for i in reversed(range(len(timesteps))):  # 2: for t = T, ..., 1
        z = torch.randn(x.shape, generator=generator).to(device) if i > 0 else torch.zeros_like(x)  # 3
        alpha_bar_prev = alpha_bar[i - 1] if i > 0 else 1.0
        sigma = math.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar[i]) * beta[i])  # σ_t² = β̃_t
        eps = _eps(eps_model, x, int(timesteps[i]))  # ε_θ(x_t, t): the network sees the original step τ_i
        x = (x - beta[i] / math.sqrt(1 - alpha_bar[i]) * eps) / math.sqrt(alpha[i]) + sigma * z  # 4
    return x.clamp(-1, 1)  # 6: return x_0 (in the pixel range)


def eps_model(x, t):
    """ε_θ under bf16 autocast on a GPU (a no-op on the CPU), in float32."""
    with genbook.autocast(device):
        return model(x, t).float()


# %% [markdown]
# **Check against genbook.** `genbook.diffusion.ddpm_sample` implements the same
# algorithm (with a choice of $\sigma_t^2$, and the option of clipping $\hat x_0$);
# given the same random generator it must return the same images:

# %%
check_steps = spaced_timesteps(T, 50)
ours = ancestral_scratch(eps_model, 16, check_steps, torch.Generator().manual_seed(3))
theirs = ddpm_sample(eps_model, (16, 1, 28, 28), schedule, check_steps, variance="posterior",
                     generator=torch.Generator().manual_seed(3), device=device)
print(f"max |scratch − genbook| = {(ours - theirs).abs().max().item():.2e}")
assert torch.allclose(ours, theirs, atol=1e-4)
genbook.show_images(ours, nrow=16, title="ancestral sampling, 50 steps")
plt.show()

# %% [markdown]
# ## 7. DDIM: a deterministic sampler in few steps
#
# Song, Meng and Ermon (2021) observed that $L_\text{simple}$ (and any reweighting of its terms,
# such as $L_\gamma$) only involves the marginals $q(x_t \mid x_0)$, never the Markov chain that
# produced them. Many
# *non-Markovian* forward processes share these marginals; each has its own reverse
# process, and the same trained $\varepsilon_\theta$ serves all of them. Their family
# is indexed by the noise $\sigma_t$ injected per step (eq. 12):
#
# $$
# x_{t-1} = \sqrt{\bar\alpha_{t-1}}\;\underbrace{\frac{x_t - \sqrt{1-\bar\alpha_t}\,\varepsilon_\theta(x_t, t)}{\sqrt{\bar\alpha_t}}}_{\text{predicted } x_0}
# \; + \; \underbrace{\sqrt{1-\bar\alpha_{t-1}-\sigma_t^2}\;\varepsilon_\theta(x_t, t)}_{\text{direction pointing to } x_t}
# \; + \; \underbrace{\sigma_t\,\varepsilon_t}_{\text{random noise}},
# \qquad
# \sigma_t = \eta\,\sqrt{\frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}}\sqrt{1-\frac{\bar\alpha_t}{\bar\alpha_{t-1}}} .
# $$
#
# With $\eta = 1$ this is ancestral sampling with $\sigma_t^2 = \tilde\beta_t$; with
# $\eta = 0$ it is **DDIM**: no noise is added after $x_T$, so sampling is a
# deterministic map from noise to image (a discretised ODE, as chapter 06 shows),
# and because eq. 12 holds for any pair of steps, it can jump straight from
# $\tau_i$ to $\tau_{i-1}$: tens of steps instead of 1000. (Song et al. report it; section 8
# tests it: DDIM against ancestral chains on all $n$ images, and against a long ancestral
# chain on a subset: all 1000 steps in the full profile, a fraction of them in the fast one.)

# %%
@torch.inference_mode()
def ddim_scratch(eps_model, n, timesteps, generator):
    """DDIM (Song et al. 2021, eq. 12 with η = 0) over the increasing steps `timesteps`."""
    alpha_bar = schedule.alphas_bar[timesteps].tolist()
    x = torch.randn(n, 1, 28, 28, generator=generator).to(device)  # x_T ~ N(0, I)
    for i in reversed(range(len(timesteps))):
        a, a_prev = alpha_bar[i], (alpha_bar[i - 1] if i > 0 else 1.0)  # ᾱ_t and ᾱ_{t−1} (ᾱ = 1 at the data)
        eps = _eps(eps_model, x, int(timesteps[i]))  # ε_θ(x_t, t)
        x0_pred = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)  # predicted x_0
        x = math.sqrt(a_prev) * x0_pred + math.sqrt(1 - a_prev) * eps  # eq. 12 with σ_t = 0
    return x.clamp(-1, 1)


check_steps = spaced_timesteps(T, 20)
ours = ddim_scratch(eps_model, 16, check_steps, torch.Generator().manual_seed(3))
theirs = ddim_sample(eps_model, (16, 1, 28, 28), schedule, check_steps, generator=torch.Generator().manual_seed(3),
                     device=device)
print(f"max |scratch − genbook| = {(ours - theirs).abs().max().item():.2e}")
assert torch.allclose(ours, theirs, atol=1e-4)
genbook.show_images(ours, nrow=16, title="DDIM, 20 steps, from the same x_T as above")
plt.show()

# %% [markdown]
# **An independent reference: data whose ε we know exactly.** Agreeing with genbook
# only shows that two copies of one algorithm agree. For Gaussian data every quantity
# is known in closed form. Let every pixel of $x_0$ be $\mathcal N(\mu, s^2)$,
# independently. Then $x_t = \sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon$ and
# $\varepsilon$ are jointly Gaussian, and the best possible noise prediction is
#
# $$
# \varepsilon^*(x_t, t) = \mathbb E[\varepsilon \mid x_t]
#   = \frac{\sqrt{1-\bar\alpha_t}\,\big(x_t - \sqrt{\bar\alpha_t}\,\mu\big)}{\bar\alpha_t s^2 + 1 - \bar\alpha_t}.
# $$
#
# With $\varepsilon^*$ every sampler step is affine, $x' = P x + Q + \sigma z$, so the
# mean and variance of a sampler's output follow exactly from
# $m' = P m + Q,\ v' = P^2 v + \sigma^2$, starting at $m = 0, v = 1$: a prediction
# computed from the equations, not from any sampler code. Our from-scratch samplers
# must hit it within sampling error (5 standard errors, as in the forward-process
# check), DDIM with $\eta = 1$ must reproduce ancestral sampling with $\sigma_t^2 = \tilde\beta_t$
# exactly (same noise), and with all $T$ steps both must return (nearly: the chain is
# discrete) the data distribution. With few steps they do *not*: the 10-step rows show
# how far the equations themselves, with a perfect network, are from the data.

# %%
MU, S = 0.2, 0.25  # every pixel ~ N(μ, s²): well inside [−1, 1], so clamping changes nothing


def exact_eps(x, t):
    """E[ε | x_t] for data N(μ, s²) per pixel."""
    a = schedule.alphas_bar.to(x.dtype)[t].view(-1, 1, 1, 1)
    return (1 - a).sqrt() * (x - a.sqrt() * MU) / (a * S**2 + 1 - a)


def exact_output_moments(timesteps, sampler, eta=0.0):
    """Mean and variance of a sampler's output with ε*, propagated through its affine steps."""
    alpha_bar = schedule.alphas_bar[timesteps].tolist()
    m, v = 0.0, 1.0  # x_T ~ N(0, 1)
    for i in reversed(range(len(timesteps))):
        a, a_prev = alpha_bar[i], (alpha_bar[i - 1] if i > 0 else 1.0)
        k = math.sqrt(1 - a) / (a * S**2 + 1 - a)  # ε*(x) = k x + e0
        e0 = -k * math.sqrt(a) * MU
        if sampler == "ddim":  # eq. 12, σ of eq. 16
            sigma = eta * math.sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev))
            c_x0, c_eps = math.sqrt(a_prev), math.sqrt(1 - a_prev - sigma**2)
            P = c_x0 * (1 - math.sqrt(1 - a) * k) / math.sqrt(a) + c_eps * k
            Q = (-c_x0 * math.sqrt(1 - a) / math.sqrt(a) + c_eps) * e0
        else:  # Algorithm 2 on the respaced chain, σ² = β̃
            beta = 1 - a / a_prev
            sigma = math.sqrt((1 - a_prev) / (1 - a) * beta)
            P = (1 - beta / math.sqrt(1 - a) * k) / math.sqrt(1 - beta)
            Q = -beta / math.sqrt(1 - a) * e0 / math.sqrt(1 - beta)
        m, v = P * m + Q, P**2 * v + sigma**2
    return m, v


n_gauss = 64  # 64 images × 784 pixels = 50,176 independent draws per check
exact_rows = []
for name, run, step_count in [
    ("ancestral (scratch)", lambda ts, g: ancestral_scratch(exact_eps, n_gauss, ts, g), 10),
    ("DDIM (scratch)", lambda ts, g: ddim_scratch(exact_eps, n_gauss, ts, g), 10),
    ("DDIM η = 0.5 (genbook)", lambda ts, g: ddim_sample(exact_eps, (n_gauss, 1, 28, 28), schedule, ts, eta=0.5,
                                                          generator=g, device=device), 10),
    ("ancestral (scratch)", lambda ts, g: ancestral_scratch(exact_eps, n_gauss, ts, g), T),
    ("DDIM (scratch)", lambda ts, g: ddim_scratch(exact_eps, n_gauss, ts, g), T),
]:
    timesteps = spaced_timesteps(T, step_count)
    x = run(timesteps, torch.Generator().manual_seed(5)).double().cpu()
    kind = "ddim" if name.startswith("DDIM") else "ancestral"
    m, v = exact_output_moments(timesteps, kind, eta=0.5 if "0.5" in name else 0.0)
    n_draws = x.numel()
    z_mean = (x.mean().item() - m) / math.sqrt(v / n_draws)
    z_var = (x.var().item() - v) / (v * math.sqrt(2 / (n_draws - 1)))
    exact_rows.append((name, step_count, m, v, x.mean().item(), x.var().item(), z_mean, z_var))
print(f"{'sampler':<24} {'steps':>5} {'exact mean':>10} {'measured':>9} {'exact var':>10} {'measured':>9} "
      f"{'z mean':>7} {'z var':>6}")
for name, steps_, m, v, xm, xv, zm, zv in exact_rows:
    print(f"{name:<24} {steps_:5d} {m:10.4f} {xm:9.4f} {v:10.5f} {xv:9.5f} {zm:7.2f} {zv:6.2f}")
print(f"data: mean {MU}, variance {S**2}: with all T steps both samplers must return it")
assert all(abs(zm) < 5 and abs(zv) < 5 for *_, zm, zv in exact_rows), exact_rows
for name, steps_, m, v, *_ in exact_rows:
    if steps_ == T:
        print(f"{name}, all {T} steps: exact output variance / data variance = {v / S**2:.4f}")
        assert abs(m - MU) < 1e-3 and abs(v - S**2) < 0.03 * S**2, (name, m, v)  # the full chain ≈ the data

# η = 1 is ancestral sampling with σ² = β̃_t: the same noise gives the same samples
a = ddim_sample(exact_eps, (8, 1, 28, 28), schedule, 10, eta=1.0, generator=torch.Generator().manual_seed(6),
                device=device)
b = ancestral_scratch(exact_eps, 8, spaced_timesteps(T, 10), torch.Generator().manual_seed(6))
print(f"DDIM η = 1 vs ancestral (σ² = β̃), same noise: max difference {(a - b).abs().max().item():.1e}")
assert torch.allclose(a, b, atol=1e-5)

# %% [markdown]
# ## 8. Quality against the number of network evaluations
#
# Each sampling step costs one evaluation of the network (NFE), which dominates
# the cost of generating. We measure samples with the book's one protocol for
# Fashion-MNIST (`genbook.metrics.evaluate_fashion`, the same $n$ in every chapter):
#
# - **FD**: the Fréchet distance between Gaussians fitted to features of genbook's
#   Fashion-MNIST classifier, for $n$ samples against $n$ test images (it is not
#   Inception FID; lower is better), with a bootstrap interval that says how much it
#   moves between sample sets at this $n$;
# - **precision** and **recall** (Kynkäänniemi et al. 2019) in the same feature
#   space: the fraction of samples that fall near real images, and of real images
#   that fall near samples. A sampler that draws a few good images over and over
#   has high precision and low recall;
# - three baselines at the same $n$: the **real-vs-real** floor (training images
#   against the test images: what a perfect model would score), **blurred** training
#   images (σ = 1 px: real content without its fine detail) and a **PCA-Gaussian**
#   model (a Gaussian on the top 32 principal components of the training images:
#   blurry, but a density model);
# - the **cost**: milliseconds per image, timed around the sampling alone
#   (`timed_sampling`), and the NFE.
#
# Every sampler and every step count starts from the same $x_T$ (drawn once, for all
# $n$ images); the noise that ancestral steps inject comes from a separate generator.
# So differences between rows are differences between samplers.

# %%
n_eval = n_eval_images()  # the same n in every Fashion-MNIST chapter
evaluator = fashion_evaluator(device)
start = time.perf_counter()
baselines = image_baselines(n_eval, evaluator=evaluator)
print(f"baselines at n = {n_eval} ({time.perf_counter() - start:.0f} s): "
      + ", ".join(f"{k} = {v:.2f}" for k, v in baselines.items()))
x_T = torch.randn(n_eval, 1, 28, 28, generator=torch.Generator().manual_seed(1234))  # one x_T for every sampler


def generate(sampler, steps, n=n_eval, **options):
    """n samples (CPU) from the shared x_T, in batches of cfg['sample_batch'], timed; per-step noise from its own seed."""
    done = [0]

    def sample_batch(b, step_noise):  # step_noise: timed_sampling's generator, used only for the noise of each step
        i = done[0]
        done[0] += b
        return sampler(eps_model, (b, 1, 28, 28), schedule, steps, generator=step_noise, device=device,
                       x_T=x_T[i:i + b], **options)

    return timed_sampling(sample_batch, n, batch_size=cfg["sample_batch"], nfe=steps, device=device, seed=1)


m_ref = min(cfg["reference_subset"], n_eval)  # the subset of x_T that the long chain also runs on (below)
results, samples, on_subset = [], {}, {}
for name, key, sampler, options, step_counts in [
    ("ancestral", "ancestral", ddpm_sample, dict(variance="posterior"), cfg["ancestral_steps"]),
    ("DDIM", "ddim", ddim_sample, {}, cfg["ddim_steps"]),
]:
    for steps in step_counts:
        images, cost = generate(sampler, steps, **options)
        scores = evaluate_fashion(images, n=n_eval, evaluator=evaluator)
        results.append(dict(sampler=name, key=f"{key}_{steps}", steps=steps, nfe=cost["nfe"], ms=cost["ms_per_image"],
                            **scores))
        samples[name, steps], on_subset[f"{key}_{steps}"] = images[:16], (f"{name}, {steps} steps", images[:m_ref])
        save_samples("05_ddpm", f"{key}_{steps}", images, cost=cost, training=info.get("training"), sampler=name,
                     steps=steps, **options)
        print(f"{name:>9} {steps:5d} steps  FD {scores['fd']:7.2f} ± {scores['fd_ci']:.2f}   "
              f"({cost['ms_per_image']:.1f} ms per image)")

# %% [markdown]
# The table, with the baselines:

# %%
print(f"{'sampler':<11} {'NFE':>5} {'FD':>8} {'± (95%)':>8} {'precision':>10} {'recall':>7} {'FD / PCA-G.':>12} "
      f"{'ms/image':>9}")
for r in results:
    print(f"{r['sampler']:<11} {r['nfe']:>5} {r['fd']:>8.2f} {r['fd_ci']:>8.2f} {r['precision']:>10.3f} "
          f"{r['recall']:>7.3f} {r['fd'] / baselines['fd_pca_gaussian']:>12.2f} {r['ms']:>9.2f}")
for label, key in (("PCA-Gaussian", "fd_pca_gaussian"), ("blurred data", "fd_blurred"),
                   ("real vs real", "fd_real_vs_real")):
    print(f"{label:<17} {baselines[key]:>8.2f}")

# %%
fig, ax = plt.subplots(figsize=(6, 3.6))
for name, marker in (("ancestral", "o"), ("DDIM", "s")):
    rows = [r for r in results if r["sampler"] == name]
    ax.errorbar([r["nfe"] for r in rows], [r["fd"] for r in rows], yerr=[r["fd_ci"] for r in rows], marker=marker,
                capsize=3, label=name)
ax.axhline(baselines["fd_pca_gaussian"], color="tab:red", ls="--", label="PCA-Gaussian")
ax.axhline(baselines["fd_blurred"], color="tab:purple", ls="-.", label="blurred data (σ = 1 px)")
ax.axhline(baselines["fd_real_vs_real"], color="0.4", ls=":", label="real vs real")
ax.set(xscale="log", yscale="log", xlabel="network evaluations per sample (NFE)", ylabel=f"FD (n = {n_eval})",
       title="sample quality against sampling cost")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# **The headline against a long ancestral chain.** DDIM's promise is
# "10–50 steps instead of 1000". The table's longest ancestral chain is far shorter than
# $T$, because a chain costs one network evaluation per step and image. So a long
# chain, `reference_steps` steps (all $T$ in the full profile; the fast profile affords
# the fraction printed below), runs on a subset: the first `reference_subset` starting
# noises of the shared $x_T$, and every row of the table is compared with it on the
# *same* images. If the short samplers match it there, the long chain's extra steps buy
# nothing that this measurement can see.
# FD cannot be used on a few dozen images (its covariance is singular below 128 images,
# it is strongly biased well above that, and genbook refuses it below 2 × 128), so on the subset we use the kernel distance KID
# (Bińkowski et al. 2018, `genbook.metrics.kid`): unbiased at any $n$, against the same
# test images as FD, next to the baselines drawn at the same subset size. Its ± is a
# 95% interval from the jackknife (leave one image out), which says how much KID moves
# between sets of that many images. With so few images the comparison can only resolve
# large differences; the cell says which ones it does.

# %%
long_steps = cfg["reference_steps"]
long_images, long_cost = generate(ddpm_sample, long_steps, n=m_ref, variance="posterior")
samples["ancestral", long_steps] = long_images[:16]
on_subset[f"ancestral_{long_steps}_subset"] = (f"ancestral, {long_steps} steps", long_images)
eta_steps = cfg["eta_sweep_steps"][0]  # DDIM with η = 0.5 (below), on the same subset only
eta_images, eta_cost = generate(ddim_sample, eta_steps, n=m_ref, eta=0.5)
samples["DDIM η=0.5", eta_steps] = eta_images[:16]
on_subset[f"ddim_eta05_{eta_steps}"] = (f"DDIM η=0.5, {eta_steps} steps", eta_images)
print(f"ancestral, {long_steps} of T = {T} steps, on the first {m_ref} of the shared x_T: "
      f"{long_cost['ms_per_image']:.0f} ms per image; all n = {n_eval} images would take "
      f"{long_cost['ms_per_image'] * n_eval / 1000:.0f} s, and all T steps {T / long_steps:.0f}× that")
real_features = evaluator.features(reference_images(n_eval))  # FD's reference set
real_kernel = polynomial_kernel(real_features.double(), real_features.double())  # k(y_i, y_j), (n, n)


def subset_kid(images):
    """KID of images[:m_ref] against the n_eval test images, and the 95% half-width of a jackknife over the images.

    KID = unbiased MMD² under k(x, y) = (xᵀy/D + 1)³ (Bińkowski et al. 2018); the jackknife (leave one image
    out, Efron and Stein 1981) estimates how much it moves between sets of m_ref images.
    """
    x = evaluator.features(images[:m_ref]).double()  # (m, D)
    k_xx, k_xy = polynomial_kernel(x, x), polynomial_kernel(x, real_features.double())  # (m, m), (m, n)
    kid = mmd2_unbiased(k_xx, real_kernel, k_xy).item()
    m, n = k_xy.shape
    # MMD² without image i, for every i at once: drop row and column i from the sums of mmd2_unbiased
    off_xx = k_xx.sum() - k_xx.diagonal().sum()
    yy = (real_kernel.sum() - real_kernel.diagonal().sum()) / (n * (n - 1))
    leave_one_out = ((off_xx - 2 * (k_xx.sum(1) - k_xx.diagonal())) / ((m - 1) * (m - 2)) + yy
                     - 2 * (k_xy.sum() - k_xy.sum(1)) / ((m - 1) * n))  # (m,)
    half_width = 1.96 * math.sqrt((m - 1) * leave_one_out.var(unbiased=False).item())
    return kid, half_width


train_images = train_sample(m_ref, seed=0)[0]
kid_rows = {label: subset_kid(images) for label, images in on_subset.values()}
kid_baselines = {
    "real vs real": subset_kid(train_images),
    "blurred data (σ = 1 px)": subset_kid(gaussian_blur(train_images, 1.0).clamp(-1, 1)),
    "PCA-Gaussian": subset_kid(fit_pca_gaussian().sample(m_ref, torch.Generator().manual_seed(0))),
}
print(f"KID on the same {m_ref} starting noises (lower is better):")
for label, (kid, ci) in {**kid_rows, **kid_baselines}.items():
    print(f"  {label:<28} {kid:8.2f} ± {ci:.2f}")
long_kid = kid_rows[f"ancestral, {long_steps} steps"]
for label, (kid, ci) in kid_rows.items():
    if label != f"ancestral, {long_steps} steps":
        diff, diff_ci = kid - long_kid[0], math.hypot(ci, long_kid[1])
        print(f"{label} − ancestral with {long_steps} steps: {diff:+.2f} ± {diff_ci:.2f} "
              + ("(resolved)" if abs(diff) > diff_ci else f"(not resolved on {m_ref} images)"))
pca_kid = kid_baselines["PCA-Gaussian"]
print(f"the {long_steps}-step chain against the PCA-Gaussian: {(long_kid[0] - pca_kid[0]):+.2f} ± "
      f"{math.hypot(long_kid[1], pca_kid[1]):.2f}")
assert long_kid[0] < pca_kid[0], (long_kid, pca_kid)  # the reference chain draws better images than the PCA model

# %% [markdown]
# **Between the two samplers: η.** DDIM's η (eq. 16) interpolates between the
# deterministic sampler (η = 0) and ancestral sampling with $\sigma_t^2 = \tilde\beta_t$
# (η = 1; checked exactly on Gaussian data above). At the step count of the sweep the
# table holds both ends on all $n$ images; the middle, η = 0.5, was drawn only on the
# subset (a full-$n$ row would cost as much as a row of the table, and no bar of the
# chapter rests on it), so the three are compared there, with KID, from the same
# starting noises:

# %%
eta_rows = {0.0: f"ddim_{eta_steps}", 0.5: f"ddim_eta05_{eta_steps}", 1.0: f"ancestral_{eta_steps}"}
eta_kid = {eta: kid_rows[on_subset[key][0]] for eta, key in eta_rows.items()}  # (KID, 95% half-width)
full_n = {r["key"]: r for r in results}  # the rows on all n images
for eta, (kid, ci) in eta_kid.items():
    r = full_n.get(eta_rows[eta])
    fd_note = f"; FD on all {n_eval}: {r['fd']:.2f} ± {r['fd_ci']:.2f}" if r else ""
    print(f"η = {eta:.1f}, {eta_steps} steps: KID on {m_ref} images {kid:6.2f} ± {ci:.2f}"
          + fd_note)
spread = max(k for k, _ in eta_kid.values()) - min(k for k, _ in eta_kid.values())
eta_best = min(eta_kid, key=lambda e: eta_kid[e][0])
print(f"best at {eta_steps} steps on the subset: η = {eta_best}; spread {spread:.2f} against a typical ± of "
      f"{statistics.mean(ci for _, ci in eta_kid.values()):.2f}")

# %% [markdown]
# The bars of this chapter, against the baselines of this run:
#
# - the best FD is at most half the PCA-Gaussian's;
# - DDIM with at most 50 steps comes within 1.25× of the best ancestral result on all
#   $n$ images (the longest ancestral chain in that table is printed; the full
#   profile's includes all 1000 steps; the long chain of the fast profile is the
#   subset comparison above).
#
# A bar is only worth as much as the noise under it, so the cell also prints the
# margin by which each is met and that margin's uncertainty (the bootstrap
# half-widths, combined as if independent), and where the best model stands between
# the floor and the blurred rung.

# %%
best_ancestral = min((r for r in results if r["sampler"] == "ancestral"), key=lambda r: r["fd"])
best_ddim50 = min((r for r in results if r["sampler"] == "DDIM" and r["steps"] <= 50), key=lambda r: r["fd"])
best = min((r for r in results if r["sampler"] in ("ancestral", "DDIM")), key=lambda r: r["fd"])  # the two samplers
print(f"best: {best['sampler']} with {best['steps']} steps, FD {best['fd']:.2f} ± {best['fd_ci']:.2f} "
      f"= {best['fd'] / baselines['fd_pca_gaussian']:.2f} × the PCA-Gaussian's, "
      f"{best['fd'] / baselines['fd_real_vs_real']:.1f} × the real-vs-real floor ({baselines['fd_real_vs_real']:.2f}), "
      f"{best['fd'] - baselines['fd_blurred']:+.2f} from blurred data ({baselines['fd_blurred']:.2f})")
print(f"best DDIM (≤ 50 steps): {best_ddim50['steps']} steps, FD {best_ddim50['fd']:.2f} "
      f"= {best_ddim50['fd'] / best_ancestral['fd']:.2f} × the best ancestral ({best_ancestral['steps']} steps; "
      f"the longest ancestral chain on all {n_eval} images has {max(cfg['ancestral_steps'])} steps)")
margin = 1.25 * best_ancestral["fd"] - best_ddim50["fd"]
margin_ci = math.hypot(1.25 * best_ancestral["fd_ci"], best_ddim50["fd_ci"])
print(f"1.25× bar: margin {margin:.2f} ± {margin_ci:.2f}: "
      + ("the bar is met by more than its uncertainty" if margin > margin_ci else
         "met, but within the FD's uncertainty: the two samplers are not resolved at this n"))
difference = best_ddim50["fd"] - best_ancestral["fd"]
difference_ci = math.hypot(best_ancestral["fd_ci"], best_ddim50["fd_ci"])
print(f"DDIM − ancestral = {difference:+.2f} ± {difference_ci:.2f}: "
      + ("a resolved difference" if abs(difference) > difference_ci else "not resolved at this n"))
assert best["fd"] <= 0.5 * baselines["fd_pca_gaussian"], (best, baselines)
assert best_ddim50["fd"] <= 1.25 * best_ancestral["fd"], (best_ddim50, best_ancestral)

metrics = {"fd": best["fd"], "fd_ci": best["fd_ci"], "precision": best["precision"], "recall": best["recall"],
           "closed_form_max_z": closed_form_max_z}
metrics.update({f"fd_{r['key']}": r["fd"] for r in results})
metrics.update({f"kid_subset_{key}": kid_rows[label][0] for key, (label, _) in on_subset.items()})
timings = {f"ms_per_image_{r['key']}": r["ms"] for r in results}
timings[f"ms_per_image_ancestral_{long_steps}_subset"] = long_cost["ms_per_image"]
timings[f"ms_per_image_ddim_eta05_{eta_steps}_subset"] = eta_cost["ms_per_image"]
if info.get("training"):  # absent in a checkpoint saved before training was metered
    timings["train_ms_per_step"] = info["training"]["ms_per_step"]
genbook.report("05_ddpm", metrics=metrics, baselines=baselines, n_samples=n_eval, timings=timings,
               parameters=count_parameters(model), train_steps=cfg["steps"],
               best=f"{best['sampler']} {best['steps']} steps")

# %% [markdown]
# The same 16 starting noises under each sampler and step count: DDIM changes
# little between step counts (it is a deterministic map that converges as the
# steps shrink), while ancestral sampling draws fresh noise at every step and
# ends somewhere else each time.

# %%
fig, axes = plt.subplots(len(samples), 1, figsize=(9, 0.75 * len(samples)))
for ax, ((name, steps), images) in zip(axes, samples.items()):
    genbook.show_images(images, nrow=16, ax=ax)
    ax.set_title(f"{name}, {steps} steps", fontsize=8, loc="left")
plt.tight_layout()
plt.show()

# %% [markdown]
# Finally, what DDIM does along the way: the predicted clean image
# $\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\varepsilon_\theta)/\sqrt{\bar\alpha_t}$ at each of 10 steps.
# Coarse shape is decided first, at high noise; detail is added last.

# %%
steps10 = spaced_timesteps(T, 10)
_, path = ddim_sample(eps_model, (6, 1, 28, 28), schedule, steps10, generator=torch.Generator().manual_seed(1234),
                      device=device, return_trajectory=True)
rows = []
for i, x_t in zip(reversed(range(10)), path[:-1]):
    a = schedule.alphas_bar[steps10[i]].item()
    with torch.inference_mode():
        eps = _eps(eps_model, x_t.to(device), int(steps10[i])).cpu()
    rows.append(((x_t - math.sqrt(1 - a) * eps) / math.sqrt(a)).clamp(-1, 1))
grid = torch.stack(rows, dim=1).reshape(-1, 1, 28, 28)  # sample-major: one row per sample
genbook.show_images(grid, nrow=10, title="predicted x̂_0 along 10 DDIM steps (left: t = T)")
plt.show()

# %% [markdown]
# **What about "draw me a sneaker"?** Everything here is unconditional. Class- and
# text-conditional generation, and the classifier-free guidance that makes it work
# well, are the subject of chapter 08; genbook's `UNet` already takes a class label
# (`num_classes=...`) for it.
#
# ## Exercises
#
# **Exercise 5.1: the forward-process posterior.** Write `posterior(x0, x_t, t, schedule)`
# that returns the mean $\tilde\mu_t(x_t, x_0)$ and the variance $\tilde\beta_t$ of
# $q(x_{t-1} \mid x_t, x_0)$ (eq. 7) for a batch: `x0` and `x_t` of shape (B, C, H, W),
# `t` of shape (B,) with indices 0..T−1 (index 0 is the paper's $t = 1$, where
# $\bar\alpha_{t-1} = \bar\alpha_0 = 1$). Use `schedule.alphas_bar`, `schedule.alphas` and
# `schedule.betas` (float64 tensors of shape (T,)); return the variance with shape (B,).
# The check compares with Bayes' rule for two Gaussians.

# %% tags=["exercise"]
def posterior(x0, x_t, t, schedule):
    """Mean (B, C, H, W) and variance (B,) of q(x_{t−1} | x_t, x_0), Ho et al. (2020) eq. 7."""
    # BEGIN SOLUTION
    alphas_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), schedule.alphas_bar[:-1]])  # ᾱ_0 = 1
    a, a_prev = schedule.alphas_bar[t], alphas_bar_prev[t]
    beta, alpha = schedule.betas[t], schedule.alphas[t]
    coef_x0 = (a_prev.sqrt() * beta / (1 - a)).view(-1, 1, 1, 1)
    coef_xt = (alpha.sqrt() * (1 - a_prev) / (1 - a)).view(-1, 1, 1, 1)
    return coef_x0 * x0 + coef_xt * x_t, (1 - a_prev) / (1 - a) * beta
    # END SOLUTION


# %%
from genbook.exercises.ddpm import check_posterior

check_posterior(posterior)
print("posterior: correct")

# %% [markdown]
# **Exercise 5.2: v-prediction.** Salimans and Ho (2022) let the network predict
# $v = \sqrt{\bar\alpha_t}\,\varepsilon - \sqrt{1-\bar\alpha_t}\,x_0$, which is what $F_\theta$ in
# our `NoisePredictor` learns. Since $(x_t, v)$ is $(x_0, \varepsilon)$ rotated by an angle
# $\phi$ with $\cos\phi = \sqrt{\bar\alpha_t}$, both can be recovered. Write
# `eps_and_x0_from_v(x_t, v, t, schedule)` returning $(\varepsilon, x_0)$, each of shape
# (B, C, H, W), then convince yourself that `NoisePredictor` computes $\varepsilon$ this way.

# %% tags=["exercise"]
def eps_and_x0_from_v(x_t, v, t, schedule):
    """(ε, x_0) from x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε and v = √ᾱ_t ε − √(1 − ᾱ_t) x_0."""
    # BEGIN SOLUTION
    a = schedule.alphas_bar[t].view(-1, 1, 1, 1)
    eps = a.sqrt() * v + (1 - a).sqrt() * x_t
    x0 = a.sqrt() * x_t - (1 - a).sqrt() * v
    return eps, x0
    # END SOLUTION


# %%
from genbook.exercises.ddpm import check_eps_and_x0_from_v

check_eps_and_x0_from_v(eps_and_x0_from_v)
print("eps_and_x0_from_v: correct")

# %% [markdown]
# **Exercise 5.3: plain ε-prediction against the skip in time.** Section 4 gave
# $\varepsilon_\theta$ a skip connection in time; Ho et al. let the network output
# $\hat\varepsilon$ directly. The fast profile cannot afford to train both (one training run
# costs the seconds printed below), so this comparison is yours. First the algebra: write
# `x0_from_output(out, x_t, t, schedule, skip)` that returns the predicted clean image
# $\hat x_0$ (B, C, H, W) from the network's raw output `out`, which is $\hat\varepsilon$ itself
# when `skip` is False and $F_\theta$ when it is True. It must stay accurate in float32 up
# to $t = T$, where $\sqrt{\bar\alpha_t} \approx 5\cdot 10^{-5}$: substitute and simplify
# before you divide. How much does an error $\delta$ in `out` move $\hat x_0$ under each
# parameterisation, at $t = T/2$ and at $t = T$?
#
# Then the experiment: set `output="eps"` in the fast profile's settings (it is part of the
# model's checkpoint key, so a new model is trained on the same batches from the same
# initial weights) and run the chapter again. Compare the NFE table with this one,
# then sample the plain model with `clip_x0=True` (genbook's samplers clip $\hat x_0$ to
# $[-1, 1]$, as Ho et al.'s code does). Which rows change most, and why the few-step ones?

# %% tags=["exercise"]
def x0_from_output(out, x_t, t, schedule, skip):
    """x̂_0 (B, C, H, W) from the raw output: ε̂ = out (skip=False) or ε̂ = √(1 − ᾱ_t) x_t + √ᾱ_t out (skip=True)."""
    # BEGIN SOLUTION
    a = schedule.alphas_bar[t].to(out.dtype).view(-1, 1, 1, 1)
    if skip:
        return a.sqrt() * x_t - (1 - a).sqrt() * out  # (x_t − √(1 − ᾱ) ε̂)/√ᾱ, simplified: nothing divided
    return (x_t - (1 - a).sqrt() * out) / a.sqrt()  # eq. 4 solved for x_0
    # END SOLUTION


# %%
from genbook.exercises.ddpm import check_x0_from_output

check_x0_from_output(x0_from_output)
if info.get("training"):
    print(f"x0_from_output: correct. One training run of this chapter's model took "
          f"{info['training']['seconds']:.0f} s ({info['training']['steps']} steps, "
          f"{info['training']['ms_per_step']:.0f} ms per step on {info['training']['device']})")
else:
    print("x0_from_output: correct")

# %% [markdown]
# **Exercise 5.4 (no check): η with more steps.** The chapter compared
# $\eta \in \{0, 0.5, 1\}$ at `cfg["eta_sweep_steps"]` steps, with KID on a subset. Repeat it
# at 50 steps on all $n$ images (`generate(ddim_sample, 50, eta=...)` returns the images and
# their cost; `evaluate_fashion` measures them). Does the order change? Relate your answer to the
# noise that each step injects and to how many steps are left to remove it.
#
# **Exercise 5.5 (no check): the linear schedule.** Set `schedule="linear"` in
# the fast profile's settings and run the chapter again (a new model is trained).
# Compare the NFE table with the cosine one. Looking at the SNR figure, which
# steps of the linear schedule does the network rarely need, and what does that
# mean for few-step samplers?
#
# **Exercise 5.6 (no check): why σ matters.** Replace `variance="posterior"` by
# `variance="beta"` ($\sigma_t^2 = \beta_t$) for ancestral sampling with 10 and 100
# steps. Explain the difference with the respaced $\beta'_i$: how large is
# $\beta'_i$ compared with $\tilde\beta'_i$ when a step jumps over 100 of the original steps?
#
# **Exercise 5.7 (no check): $L_\text{simple}$ against min-SNR.** Set `loss_weighting="simple"`
# in the fast profile's settings and run the chapter again: a new model is trained on the same
# batches, times and noise from the same initial weights; only the weights of the per-step terms
# differ. Compare the NFE table and the held-out loss by $t$. At which $t$ does each model fit
# the noise better, and which of those steps shows in the samples? Then try $\gamma = 1$ and
# $\gamma = 20$ (`min_snr_gamma`).
#
# ## References
#
# - J. Sohl-Dickstein, E. Weiss, N. Maheswaranathan and S. Ganguli, "Deep Unsupervised
#   Learning using Nonequilibrium Thermodynamics", ICML 2015.
# - J. Ho, A. Jain and P. Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020.
#   Equations (1)–(14) and Algorithms 1 and 2 are quoted from it.
# - A. Nichol and P. Dhariwal, "Improved Denoising Diffusion Probabilistic Models", ICML 2021
#   (cosine schedule, eq. 17; respacing, sec. 4).
# - J. Song, C. Meng and S. Ermon, "Denoising Diffusion Implicit Models", ICLR 2021 (eqs. 12 and 16).
# - O. Ronneberger, P. Fischer and T. Brox, "U-Net: Convolutional Networks for Biomedical
#   Image Segmentation", MICCAI 2015.
# - T. Karras, M. Aittala, T. Aila and S. Laine, "Elucidating the Design Space of
#   Diffusion-Based Generative Models", NeurIPS 2022 (input and output scalings).
# - T. Hang, S. Gu, C. Li, J. Bao, D. Chen, H. Hu, X. Geng and B. Guo, "Efficient Diffusion Training
#   via Min-SNR Weighting Strategy", ICCV 2023 (min-SNR-γ weighting).
# - T. Salimans and J. Ho, "Progressive Distillation for Fast Sampling of Diffusion Models",
#   ICLR 2022 (v-prediction).
# - Y. Wu and K. He, "Group Normalization", ECCV 2018; K. He et al., "Deep Residual
#   Learning for Image Recognition", CVPR 2016; A. Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
# - D. P. Kingma, T. Salimans, B. Poole and J. Ho, "Variational Diffusion Models",
#   NeurIPS 2021 (the signal-to-noise ratio view of schedules).
