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
# # Score-based models and stochastic differential equations
#
# Chapter 05 added noise in a thousand small steps and trained a network to predict
# the noise. Chapter 07 learned a velocity field that carries noise to data. This
# chapter joins the two into one picture (Song, Sohl-Dickstein, Kingma, Kumar, Ermon
# and Poole 2021):
#
# - noise is added by a **stochastic differential equation** (SDE) running in
#   continuous time $t \in [0, 1]$, from the data at $t = 0$ to pure noise at $t = 1$;
# - a network learns the **score** $\nabla_x \log p_t(x)$ of every intermediate
#   distribution, by denoising (Vincent 2011; Song and Ermon 2019);
# - sampling runs time backwards, either by the **reverse-time SDE** (Anderson 1982)
#   or by a deterministic **probability-flow ODE** with the same marginals, which also
#   gives exact likelihoods.
#
# The plan, in the order of the ideas:
#
# 1. scores and Langevin dynamics, with an exact score, and why Langevin alone mixes badly;
# 2. denoising score matching, derived, then a noise-conditional score network in 2D,
#    checked against the *exact* score of the noised data;
# 3. the VP and VE SDEs, the reverse SDE, Euler–Maruyama, the probability-flow ODE and
#    predictor–corrector sampling, each checked with the exact score;
# 4. likelihoods through the ODE, and Hutchinson's trace estimator;
# 5. Fashion-MNIST: DDPM's network as a score model, sample quality against network
#    evaluations for the three samplers, and bits per dimension.
#
# **Convention.** Here, as in Song et al. (2021) and chapter 05, $t = 0$ is data and
# $t = 1$ is noise. Chapter 07 runs time the other way.

# %%
import math
import time

import matplotlib.pyplot as plt
import torch
from torch import nn

import genbook
from genbook.data.toy2d import GaussianMixture
from genbook.diffusion import (
    VESDE,
    VPSDE,
    euler_maruyama,
    mixture_score,
    noised_mixture,
    ode_log_likelihood,
    ode_nfe,
    ode_sample,
    predictor_corrector,
    probes,
    time_grid,
)
from genbook.metrics import wasserstein

chapter_start = time.perf_counter()
device = genbook.device()
generator = genbook.seed_everything(0)
print("profile:", genbook.profile_name(), "| device:", device)

cfg = genbook.profile(
    fast=dict(
        n_toy=1000, toy_draws=2, floor_draws=5,  # 2D evaluation: points per W2, draws averaged (samplers, floor)
        langevin=dict(steps=500, step_size=0.02),
        score_net=dict(width=128, depth=3, steps=2000, batch_size=512, lr=2e-3, ema=0.995),
        exact_samplers=dict(em_steps=400, pc_steps=150, ode_steps=50, snr=0.16),
        nll=dict(points=2000, steps=50, eps=1e-5), hutchinson=dict(points=2000, probes=64),
        unet=dict(channels=[16, 32], blocks=1, patch_size=2, attention=True),
        image=dict(steps=1300, batch_size=32, lr=4e-3, warmup=50, ema=0.99, log_snr_std=2.0),
        samplers=[("ode", 12), ("em", 10), ("pc", 5)], image_snr=0.05,
        sample_batch=250, bpd=dict(images=24, steps=16, eps=1e-4), ppca_train=10_000,
    ),
    full=dict(
        n_toy=4000, toy_draws=3, floor_draws=5,
        langevin=dict(steps=5000, step_size=0.005),
        score_net=dict(width=256, depth=4, steps=20_000, batch_size=2048, lr=1e-3, ema=0.999),
        exact_samplers=dict(em_steps=1000, pc_steps=1000, ode_steps=200, snr=0.16),
        nll=dict(points=10_000, steps=100, eps=1e-5), hutchinson=dict(points=5000, probes=256),
        unet=dict(channels=[64, 128, 128], blocks=2, patch_size=1, attention=True),
        image=dict(steps=30_000, batch_size=128, lr=2e-4, warmup=1000, ema=0.9995, log_snr_std=2.0),
        samplers=[("ode", 5), ("ode", 10), ("ode", 18), ("ode", 50), ("em", 100), ("em", 1000), ("pc", 500)],
        image_snr=0.16, sample_batch=1000, bpd=dict(images=500, steps=100, eps=1e-5), ppca_train=60_000,
    ),
)
print(cfg)

# %% [markdown]
# ## 1. Scores and Langevin dynamics
#
# The **score** of a density $p(x)$ is the gradient of its log, $s(x) = \nabla_x \log p(x)$:
# a vector field pointing uphill, towards where the data are. It does not care about the
# normalising constant ($\nabla \log (\tilde p / Z) = \nabla \log \tilde p$), which is why
# it is easier to model than the density itself. And it is enough to sample: **Langevin
# dynamics** (Parisi 1981; Grenander and Miller 1994),
#
# $$
# x_{k+1} = x_k + \frac{\delta}{2}\, \nabla_x \log p(x_k) + \sqrt{\delta}\; z_k, \qquad z_k \sim \mathcal N(0, I),
# $$
#
# has $p$ as its stationary distribution as $\delta \to 0$ and $k \to \infty$: the drift
# climbs the density, the noise keeps it from collapsing onto the modes.
#
# Our 2D data are a mixture of three elongated Gaussians with unequal weights. genbook's
# `GaussianMixture` knows its exact `log_prob` and `score`.

# %%
def rotated_covariance(std_long, std_short, angle):
    rotation = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]],
                            dtype=torch.float64)
    return rotation @ torch.diag(torch.tensor([std_long**2, std_short**2], dtype=torch.float64)) @ rotation.T


data = GaussianMixture(
    means=torch.tensor([[-1.6, -1.0], [1.6, -1.0], [0.0, 1.7]], dtype=torch.float64),
    covariances=torch.stack([rotated_covariance(0.5, 0.25, 0.7), rotated_covariance(0.5, 0.25, -0.7),
                             rotated_covariance(0.6, 0.25, 0.0)]),
    weights=torch.tensor([0.5, 0.3, 0.2]),
)
n_toy = cfg["n_toy"]
print(f"data: {len(data.weights)} Gaussians, weights {data.weights.tolist()}, entropy {data.entropy():.4f} nats")


def w2_to_fresh(sample_fn, draws=cfg["toy_draws"]):
    """W2 between sample_fn(n_toy) and fresh data, averaged over draws; and the first draw's samples."""
    distances, first = [], None
    for _ in range(draws):
        x = sample_fn(n_toy).float().cpu()
        first = x if first is None else first
        distances.append(wasserstein(x, data.sample(n_toy, generator)).value)
    return sum(distances) / draws, first


# The floor: W2 between two independent sets of n_toy real points, what a perfect sampler scores at this n.
w2_data_floor, _ = w2_to_fresh(lambda n: data.sample(n, generator), draws=cfg["floor_draws"])
print(f"W2 floor (data vs data, n = {n_toy}, {cfg['floor_draws']} draws): {w2_data_floor:.4f}")


# %% [markdown]
# Langevin from scratch, with the exact score, started from points spread uniformly over
# the square $[-4, 4]^2$:

# %%
@torch.no_grad()
def langevin(score, x, steps, step_size, generator):
    """Unadjusted Langevin dynamics: x ← x + δ/2 ∇log p(x) + √δ z."""
    for _ in range(steps):
        x = x + 0.5 * step_size * score(x) + math.sqrt(step_size) * torch.randn(x.shape, generator=generator,
                                                                                  dtype=x.dtype)
    return x


def langevin_samples(n):
    start = (torch.rand(n, 2, generator=generator, dtype=torch.float64) * 8 - 4)
    return langevin(data.score, start, cfg["langevin"]["steps"], cfg["langevin"]["step_size"], generator)


def mode_shares(x):
    """Share of the points nearest (in Mahalanobis terms: highest responsibility) to each component."""
    joint, _ = data._component_log_probs(x.double())
    return torch.bincount(joint.argmax(1), minlength=len(data.weights)).double() / len(x)


start = time.perf_counter()
w2_langevin, langevin_x = w2_to_fresh(langevin_samples)
shares_langevin, shares_data = mode_shares(langevin_x), mode_shares(data.sample(4000, generator))
print(f"Langevin, {cfg['langevin']['steps']} steps of δ = {cfg['langevin']['step_size']} ({time.perf_counter() - start:.1f} s): "
      f"W2 to fresh data {w2_langevin:.3f}, data-vs-data floor {w2_data_floor:.3f}")
print(f"share of points per mode: Langevin {[round(s, 3) for s in shares_langevin.tolist()]}, "
      f"data {[round(s, 3) for s in shares_data.tolist()]}")

# %%
grid_1d = torch.linspace(-3.5, 3.5, 160)
grid = torch.cartesian_prod(grid_1d, grid_1d).double()
fig, axes = plt.subplots(1, 3, figsize=(13, 4))
axes[0].imshow(data.log_prob(grid).exp().reshape(160, 160).T, origin="lower", extent=(-3.5, 3.5, -3.5, 3.5),
               cmap="magma")
axes[0].set_title("p(x)")
coarse = torch.cartesian_prod(torch.linspace(-3.5, 3.5, 21), torch.linspace(-3.5, 3.5, 21)).double()
arrows = data.score(coarse)
arrows = arrows / (1 + arrows.norm(dim=1, keepdim=True))  # squash long arrows for the picture
axes[1].quiver(coarse[:, 0], coarse[:, 1], arrows[:, 0], arrows[:, 1], color="tab:blue")
axes[1].set_title("score ∇ log p(x) (length squashed)")
axes[2].scatter(*langevin_x.T, s=2, label="Langevin")
axes[2].scatter(*data.sample(n_toy, generator).T, s=2, alpha=0.4, label="data")
axes[2].set_title("Langevin with the exact score")
axes[2].legend(markerscale=4)
for ax in axes:
    ax.set_aspect("equal")
    ax.set_xlim(-3.5, 3.5)
    ax.set_ylim(-3.5, 3.5)
plt.tight_layout()
plt.show()

# %% [markdown]
# Each mode looks right, yet the shares of the modes are set by where the chains started
# (which basin they fell into), not by the data's weights: the score inside one mode says
# nothing about how heavy the other modes are, and crossing the empty region between them
# takes Langevin an exponentially long time (Song and Ermon 2019, sec. 3.2). A second problem
# appears once the score must be *learned*: it is only learned where there are data, so in
# the empty regions, exactly where the chains start, it is wrong. Song and Ermon's cure is to
# **add noise**: noised data fill the space, their scores are learnable everywhere,
# and annealing the noise down guides the chain from one scale to the next. The SDE
# view below makes that annealing continuous.
#
# ## 2. Denoising score matching
#
# We want $s_\theta(x) \approx \nabla \log p(x)$ but have only samples of $p$. Vincent
# (2011) showed that matching the score of a *noised* version of the data is easy. Perturb
# $x_0 \sim p$ with a Gaussian kernel $q(x_t \mid x_0) = \mathcal N(\alpha_t x_0, \sigma_t^2 I)$;
# then, with $p_t$ the distribution of $x_t$,
#
# $$
# \mathbb E_{x_t \sim p_t}\big\|s_\theta(x_t) - \nabla \log p_t(x_t)\big\|^2
# = \mathbb E_{x_0,\, x_t \sim q(\cdot \mid x_0)}\big\|s_\theta(x_t) - \nabla_{x_t} \log q(x_t \mid x_0)\big\|^2 + C .
# $$
#
# Expand both squares: the $\|s_\theta\|^2$ terms agree; the cross terms agree because
# $\nabla \log p_t(x) = \mathbb E[\nabla_x \log q(x \mid x_0) \mid x_t = x]$ (differentiate
# $p_t(x) = \int q(x \mid x_0)\, p(x_0)\, dx_0$ under the integral); what is left does not depend
# on $\theta$. The right side needs only the kernel's score, which is known:
# $\nabla_{x_t} \log q(x_t \mid x_0) = -(x_t - \alpha_t x_0)/\sigma_t^2 = -\varepsilon/\sigma_t$ with
# $x_t = \alpha_t x_0 + \sigma_t \varepsilon$. Training one network for all noise levels, a
# **noise-conditional score network** $s_\theta(x, t)$, with a weight $\lambda(t)$ per level
# (Song and Ermon 2019, eq. 2; Song et al. 2021, eq. 7):
#
# $$
# \mathcal L(\theta) = \mathbb E_{t,\, x_0,\, \varepsilon}\Big[\lambda(t)\,
# \big\| s_\theta(\alpha_t x_0 + \sigma_t \varepsilon,\ t) + \varepsilon/\sigma_t \big\|^2\Big].
# $$
#
# Song et al. choose $\lambda(t) = \sigma_t^2$, which makes every level's target of unit size.
# Write the network as $s_\theta = -\varepsilon_\theta/\sigma_t$ and the loss becomes
# $\mathbb E\,\|\varepsilon_\theta(x_t, t) - \varepsilon\|^2$: **DDPM's loss (chapter 05) is
# denoising score matching**, and its noise predictor is a score model in disguise,
# $s_\theta(x_t, t) = -\varepsilon_\theta(x_t, t)/\sigma_t$ (Ho et al. 2020, sec. 3.2).
#
# For $\alpha_t$ and $\sigma_t$ we use the variance-preserving process of section 3 (its
# marginals are all we need here). genbook's `VPSDE` holds them.
#
# ### The exact score of the noised data
#
# A Gaussian mixture stays a Gaussian mixture under this noise: component $k$, $\mathcal N(\mu_k, \Sigma_k)$,
# becomes $\mathcal N(\alpha_t \mu_k,\ \alpha_t^2 \Sigma_k + \sigma_t^2 I)$ (a linear map of a Gaussian plus an
# independent Gaussian), with the same weight. So the score of $p_t$ is known exactly for every
# $t$: a reference for the learned score, and for every sampler below. From scratch, with the
# responsibilities $r_k(x) \propto w_k\,\mathcal N(x; \alpha_t\mu_k, C_k)$,
#
# $$
# \nabla \log p_t(x) = \sum_k r_k(x)\; C_k^{-1}(\alpha_t \mu_k - x), \qquad C_k = \alpha_t^2 \Sigma_k + \sigma_t^2 I,
# $$
#
# checked against genbook's `mixture_score` and against autograd of the noised log-density:

# %%
vp = VPSDE(beta_min=0.1, beta_max=20.0)


def exact_score_scratch(x, t):
    """∇ log p_t(x) of the noised mixture at one time t (a float): x (B, 2) -> (B, 2)."""
    a, s = vp.alpha(torch.tensor(t, dtype=torch.float64)), vp.sigma(torch.tensor(t, dtype=torch.float64))
    cov = a**2 * data.covariances + s**2 * torch.eye(2, dtype=torch.float64)  # C_k, (K, 2, 2)
    precision = torch.linalg.inv(cov)
    diff = x[:, None] - a * data.means[None]  # x − α μ_k, (B, K, 2)
    log_r = (data.weights.log() - 0.5 * torch.logdet(cov)
             - 0.5 * torch.einsum("bki,kij,bkj->bk", diff, precision, diff))  # log w_k N(x; α μ_k, C_k) + const
    r = log_r.softmax(1)
    return -(r[..., None] * torch.einsum("kij,bkj->bki", precision, diff)).sum(1)


exact_score = mixture_score(data, vp)  # genbook's, for per-sample times
probe_x = torch.randn(500, 2, generator=generator, dtype=torch.float64) * 2
worst = 0.0
for t in (0.0, 0.01, 0.1, 0.5, 1.0):
    xg = probe_x.clone().requires_grad_(True)
    (by_autograd,) = torch.autograd.grad(noised_mixture(data, vp, t).log_prob(xg).sum(), xg)
    ours = exact_score_scratch(probe_x, t)
    theirs = exact_score(probe_x, torch.full((500,), t, dtype=torch.float64))
    worst = max(worst, (ours - by_autograd).abs().max().item(), (theirs - by_autograd).abs().max().item())
print(f"max |score − autograd of log p_t| over 5 times: {worst:.1e}")
assert worst < 1e-8

# %% [markdown]
# ### A noise-conditional score network in 2D
#
# An MLP on $x$ and the noise level predicts the noise; its score is $-\varepsilon_\theta/\sigma_t$. It reads
# the level as the log-SNR $\lambda_t = \log(\alpha_t^2/\sigma_t^2)$ rather than $t$, since the likelihoods of
# section 4 need $t$ down to $10^{-5}$, where $t$ itself hardly changes but $\lambda_t$ does. The loss is
# the one above, in `step`. Time is drawn as $t \sim \mathcal U[\epsilon, 1]$ with a small
# $\epsilon$ (Song et al. 2021 use $10^{-5}$ for likelihoods), and the data come from a
# fixed pool of samples (data are free here, but drawing them costs more than the step).

# %%
class NoiseMLP(nn.Module):
    """ε_θ(x, t): x (B, 2), t (B,) -> (B, 2), an MLP on [x, λ_t / 10] (λ_t = log SNR, so that the small t that
    likelihoods need are told apart); the score is −ε_θ / σ_t."""

    def __init__(self, width=128, depth=3):
        super().__init__()
        layers, d = [], 3
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.SiLU()]
            d = width
        self.net = nn.Sequential(*layers, nn.Linear(d, 2))

    def forward(self, x, t):
        return self.net(torch.cat([x, vp.log_snr(t)[:, None].to(x.dtype) / 10], 1))


t_eps = cfg["nll"]["eps"]
net_cfg = cfg["score_net"]
pool = data.sample(200_000, generator)


def train_score_net(model):
    optimizer = genbook.adam(model.parameters(), net_cfg["lr"])  # fused where torch has the kernel (CPU, CUDA)
    ema = genbook.EMA(model, net_cfg["ema"])

    def step(x0):
        t = t_eps + (1 - t_eps) * torch.rand(len(x0), device=x0.device)  # t ~ U[ε, 1]
        eps = torch.randn_like(x0)  # ε ~ N(0, I)
        x_t = vp.perturb(x0, t, eps)  # α_t x_0 + σ_t ε
        return (model(x_t, t) - eps).square().sum(1).mean()  # λ(t) ‖s_θ + ε/σ_t‖² with λ = σ_t²

    # the batches' own generator: a trained and a loaded model leave `generator` (and all that follows) the same
    data_iter = genbook.batches(pool, batch_size=net_cfg["batch_size"], generator=torch.Generator().manual_seed(5),
                                device=device)
    history = genbook.fit(step, data_iter,
                          net_cfg["steps"], model=model, optimizer=optimizer, ema=ema, log_every=100,
                          desc="score MLP", lr_schedule=genbook.warmup_cosine(net_cfg["lr"], net_cfg["steps"], 100))
    model.load_state_dict(ema.model.state_dict())
    return {"history": history}


with genbook.cpu_threads(1 if device.type == "cpu" else None):  # a tiny MLP: one thread is fastest
    start = time.perf_counter()
    score_net, score_info = genbook.load_or_train(NoiseMLP(net_cfg["width"], net_cfg["depth"]).to(device),
                                                  train_score_net, chapter="06_sde", name="score_mlp",
                                                  config={**net_cfg, "eps": t_eps, "sde": repr(vp)})
    print("score MLP:", "loaded" if score_info["cached"] else f"trained in {time.perf_counter() - start:.1f} s")
score_net.eval().requires_grad_(False)


def learned_score(x, t):
    """s_θ(x, t) = −ε_θ(x, t) / σ_t, in x's dtype."""
    t = t.to(x.dtype)
    return -score_net(x.float().to(device), t.float().to(device)).to(x.dtype).cpu() / vp.sigma(t)[:, None]


genbook.plot_losses(score_info["history"], title="denoising score matching (2D)")
plt.show()

# %% [markdown]
# **How good is the learned score?** At each time $t$ we draw $x_t \sim p_t$ (noised fresh data) and
# measure the relative error $\sqrt{\mathbb E\|s_\theta - \nabla\log p_t\|^2 / \mathbb E\|\nabla\log p_t\|^2}$
# against the exact score. `score_rel_error_2d` is its plain average over ten times spread
# uniformly over $[0.1, 1]$ (uniform weight in $t$). Below $t = 0.1$ the score grows like $1/\sigma_t$ and
# the error with it; the likelihood of section 4 probes that region.

# %%
score_times = torch.linspace(0.1, 1.0, 10, dtype=torch.float64)
rel_errors = []
with torch.no_grad():
    for t in score_times.tolist():
        x0 = data.sample(4000, generator).double()
        tt = torch.full((4000,), t, dtype=torch.float64)
        x_t = vp.perturb(x0, tt, torch.randn(x0.shape, generator=generator, dtype=torch.float64))
        truth = exact_score(x_t, tt)
        rel_errors.append(((learned_score(x_t, tt) - truth).square().sum(1).mean()
                           / truth.square().sum(1).mean()).sqrt().item())
score_rel_error_2d = sum(rel_errors) / len(rel_errors)
print("relative error per t:", {round(t, 2): round(e, 3) for t, e in zip(score_times.tolist(), rel_errors)})
print(f"score_rel_error_2d = {score_rel_error_2d:.4f} (bar 0.15)")
assert score_rel_error_2d <= 0.15, rel_errors

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 4))
axes[0].plot(score_times, rel_errors, "o-")
axes[0].set(xlabel="t", ylabel="relative L2 error", title="learned vs exact score", ylim=(0, None))
for ax, t in zip(axes[1:], (0.1, 0.5)):
    tt = torch.full((len(coarse),), t, dtype=torch.float64)
    for field, color, label in ((exact_score(coarse, tt), "k", "exact"), (learned_score(coarse, tt), "tab:red",
                                                                          "learned")):
        ax.quiver(coarse[:, 0], coarse[:, 1], field[:, 0], field[:, 1], color=color, alpha=0.6, label=label,
                  angles="xy", scale_units="xy", scale=4)
    ax.set_title(f"scores at t = {t} (arrows at 1/4 length)")
    ax.set_aspect("equal")
    ax.legend(loc="lower right")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 3. Stochastic differential equations
#
# Let the noise level grow continuously. An Itô SDE (Song et al. 2021, eq. 5)
#
# $$
# dx = f(x, t)\, dt + g(t)\, dw
# $$
#
# moves $x$ by a deterministic drift $f$ plus Brownian increments $dw$ of variance $dt$, scaled
# by the diffusion coefficient $g$. With a linear drift its transition kernels are Gaussian,
# $x_t \mid x_0 \sim \mathcal N(\alpha_t x_0, \sigma_t^2 I)$: the mean obeys $\dot m = f(m, t)$
# and the variance $\dot v = 2 c(t) v + g^2$ for $f = c(t)\,x$. The two SDEs of the paper:
#
# - **VE** (variance exploding), the continuous limit of NCSN's noise levels (Song and Ermon 2019):
#   $dx = \sqrt{d[\sigma^2(t)]/dt}\; dw$ with $\sigma(t) = \sigma_{\min}(\sigma_{\max}/\sigma_{\min})^t$;
#   so $\alpha_t = 1$ and $\sigma_t^2 = \sigma^2(t) - \sigma^2(0)$ (eq. 30; the paper drops the $\sigma^2(0)$);
# - **VP** (variance preserving), the continuous limit of DDPM (eq. 11):
#   $dx = -\tfrac12\beta(t)\, x\, dt + \sqrt{\beta(t)}\, dw$ with $\beta(t) = \beta_{\min} + t(\beta_{\max} - \beta_{\min})$;
#   so $\alpha_t = e^{-\frac12\int_0^t \beta(s)ds}$ and $\sigma_t^2 = 1 - \alpha_t^2$ (eq. 29).
#
# DDPM's chain $x_i = \sqrt{1-\beta_i}\,x_{i-1} + \sqrt{\beta_i}\,z$ with $\beta_i = \beta(t)\,\Delta t$ is the Euler–Maruyama
# discretisation of the VP SDE: $\sqrt{1-\beta(t)\Delta t} \approx 1 - \tfrac12\beta(t)\Delta t$.
#
# The marginals from scratch, checked against genbook's SDE classes and against a simulation
# of the VP SDE itself (Euler–Maruyama in small steps, many particles, one starting point):

# %%
def vp_marginal_scratch(t, beta_min=0.1, beta_max=20.0):
    integral = beta_min * t + 0.5 * (beta_max - beta_min) * t**2  # ∫₀ᵗ β(s) ds
    alpha = math.exp(-0.5 * integral)
    return alpha, math.sqrt(1 - alpha**2)


def ve_marginal_scratch(t, sigma_min=0.01, sigma_max=50.0):
    return 1.0, math.sqrt((sigma_min * (sigma_max / sigma_min) ** t) ** 2 - sigma_min**2)


ve = VESDE(sigma_min=0.01, sigma_max=50.0)
for t in (0.01, 0.3, 0.7, 1.0):
    tt = torch.tensor([t], dtype=torch.float64)
    for scratch, sde in ((vp_marginal_scratch, vp), (ve_marginal_scratch, ve)):
        assert abs(scratch(t)[0] - sde.alpha(tt).item()) < 1e-9 and abs(scratch(t)[1] - sde.sigma(tt).item()) < 1e-9

n_sim, sim_steps, x_start = 20_000, 1000, 1.5
x = torch.full((n_sim, 1), x_start, dtype=torch.float64)
sim_z = []
for i in range(sim_steps):  # forward Euler–Maruyama, t from 0 to 1
    t = torch.full((n_sim,), i / sim_steps, dtype=torch.float64)
    x = x + vp.drift(x, t) / sim_steps + vp.diffusion(t)[:, None] * math.sqrt(1 / sim_steps) * torch.randn(
        x.shape, generator=generator, dtype=torch.float64)
    if (i + 1) in (100, 300, 1000):
        a, s = vp_marginal_scratch((i + 1) / sim_steps)
        sim_z.append(((x.mean().item() - a * x_start) / (s / math.sqrt(n_sim)),
                      (x.std().item() - s) / (s / math.sqrt(2 * n_sim))))
        print(f"t = {(i + 1) / sim_steps:.1f}: simulated mean {x.mean().item():+.4f}, std {x.std().item():.4f};"
              f" closed form {a * x_start:+.4f}, {s:.4f}")
assert max(abs(z) for pair in sim_z for z in pair) < 5, sim_z  # within 5 standard errors (plus O(Δt) bias)

# %%
ts = torch.linspace(0, 1, 201, dtype=torch.float64)
fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
axes[0].plot(ts, vp.alpha(ts), label="VP α_t")
axes[0].plot(ts, vp.sigma(ts), label="VP σ_t")
axes[0].plot(ts, ve.sigma(ts), label="VE σ_t")
axes[0].set(yscale="log", ylim=(1e-3, 100), xlabel="t", title="marginal coefficients")
axes[0].legend()
axes[1].plot(ts[1:], vp.log_snr(ts[1:]), label="VP")
axes[1].plot(ts[1:], ve.log_snr(ts[1:]), label="VE")
axes[1].set(xlabel="t", ylabel="log SNR = log α²/σ²", title="signal-to-noise ratio")
axes[1].legend()
for t in (0.0, 0.1, 0.3, 1.0):
    pts = vp.perturb(data.sample(2000, generator).double(), t, torch.randn(2000, 2, generator=generator,
                                                                              dtype=torch.float64))
    axes[2].scatter(*pts.T, s=1, alpha=0.5, label=f"t = {t}")
axes[2].set(title="the data noised by the VP SDE", aspect="equal")
axes[2].legend(markerscale=5, fontsize=7)
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Reversing time
#
# Anderson (1982) showed that the time reversal of such a diffusion is again a diffusion,
# whose drift involves the score of the marginals (Song et al. 2021, eq. 6):
#
# $$
# dx = \big[f(x, t) - g(t)^2\, \nabla_x \log p_t(x)\big]\, dt + g(t)\, d\bar w,
# $$
#
# with $dt < 0$ and $\bar w$ a Brownian motion running backwards. Start at $x_1 \sim p_1$ (about
# $\mathcal N(0, I)$ for VP, $\mathcal N(0, \sigma_{\max}^2 I)$ for VE), run to $t = 0$, and the samples
# follow $p_0$, the data. The **Euler–Maruyama** method steps it with $\Delta t < 0$:
#
# $$
# x_{t + \Delta t} = x_t + \big[f(x_t, t) - g(t)^2 s_\theta(x_t, t)\big]\Delta t + g(t)\sqrt{|\Delta t|}\; z .
# $$
#
# There is also a deterministic process with the *same marginals* $p_t$: write the
# Fokker–Planck equation of the SDE as a continuity equation, and its velocity is the
# **probability-flow ODE** (Song et al. 2021, eq. 13)
#
# $$
# \frac{dx}{dt} = f(x, t) - \tfrac12\, g(t)^2\, \nabla_x \log p_t(x),
# $$
#
# a continuous normalizing flow (chapter 07) whose field is given by the score. Both samplers
# from scratch, then checked against genbook's: the same generator gives the same numbers.

# %%
@torch.no_grad()
def euler_maruyama_scratch(score, sde, x, times, generator):
    """Reverse-time SDE by Euler–Maruyama along the decreasing `times`; the last step adds no noise."""
    for i in range(len(times) - 1):
        t, dt = times[i].item(), (times[i + 1] - times[i]).item()  # dt < 0
        tt = torch.full((len(x),), t, dtype=x.dtype)
        g = sde.diffusion(tt)[:, None]
        x = x + (sde.drift(x, tt) - g**2 * score(x, tt)) * dt  # [f − g² s] Δt
        if i < len(times) - 2:
            x = x + g * math.sqrt(-dt) * torch.randn(x.shape, generator=generator, dtype=x.dtype)  # g √|Δt| z
    return x


@torch.no_grad()
def ode_euler_scratch(score, sde, x, times):
    """Probability-flow ODE dx/dt = f − ½ g² s by Euler's method along `times`."""
    for i in range(len(times) - 1):
        t, dt = times[i].item(), (times[i + 1] - times[i]).item()
        tt = torch.full((len(x),), t, dtype=x.dtype)
        x = x + (sde.drift(x, tt) - 0.5 * sde.diffusion(tt)[:, None] ** 2 * score(x, tt)) * dt
    return x


times = time_grid(vp, 100)
x1 = vp.prior_sample((256, 2), torch.Generator().manual_seed(5)).double()
ours = euler_maruyama_scratch(exact_score, vp, x1, times, torch.Generator().manual_seed(6))
theirs = euler_maruyama(exact_score, vp, x1, times, generator=torch.Generator().manual_seed(6))
ours_ode = ode_euler_scratch(exact_score, vp, x1, times)
theirs_ode = ode_sample(exact_score, vp, x1, times, method="euler")
print(f"max |scratch − genbook|: Euler–Maruyama {(ours - theirs).abs().max():.1e}, "
      f"ODE {(ours_ode - theirs_ode).abs().max():.1e}")
assert torch.allclose(ours, theirs, atol=1e-10) and torch.allclose(ours_ode, theirs_ode, atol=1e-10)

# %% [markdown]
# ### Predictor–corrector sampling
#
# Any numerical solver of the reverse SDE makes errors; but at every $t$ we know the score
# of the distribution we *should* be at, and Langevin dynamics (section 1) at fixed $t$ moves
# samples towards $p_t$. **Predictor–corrector** sampling (Song et al. 2021, Algorithms 1 and 5)
# alternates one solver step (the predictor) with a few Langevin steps (the corrector). The
# corrector's step size is set from a target **signal-to-noise ratio** $r$ of the update,
# $\varepsilon = 2\alpha_i\,(r\,\|z\|/\|s_\theta\|)^2$ (norms averaged over the batch, as in the
# paper's code), with $\alpha_i = 1$ for VE and $1 - \beta_i$ for VP. Annealed Langevin dynamics of
# NCSN (Song and Ermon 2019) is the corrector alone over a ladder of noise levels; here Langevin
# fixes the mode weights that section 1 could not, because the chain starts in the noise, where all
# modes are close, and only narrows as $t$ falls.
#
# ### Every sampler with the exact score
#
# Plug the exact noised-mixture score into each sampler: any error left is the sampler's own.
# The bar: each within 1.5× the data-vs-data floor of W2.

# %%
ex = cfg["exact_samplers"]
ve_exact_score = mixture_score(data, ve)
samplers_2d = {
    "Euler–Maruyama": lambda sde, score, x, g: euler_maruyama(score, sde, x, time_grid(sde, ex["em_steps"]),
                                                               generator=g),
    "predictor–corrector": lambda sde, score, x, g: predictor_corrector(score, sde, x, time_grid(sde, ex["pc_steps"]),
                                                                         snr=ex["snr"], generator=g),
    "probability-flow ODE": lambda sde, score, x, g: ode_sample(score, sde, x, time_grid(sde, ex["ode_steps"],
                                                                                          spacing="log_snr"),
                                                                method="heun"),
}
exact_results, exact_draws = {}, {}
for sde_name, sde, score in (("VP", vp, exact_score), ("VE", ve, ve_exact_score)):
    for name, sampler in samplers_2d.items():
        start = time.perf_counter()

        def draw(n, sde=sde, score=score, sampler=sampler):
            return sampler(sde, score, sde.prior_sample((n, 2), generator).double(), generator)

        exact_results[sde_name, name], exact_draws[sde_name, name] = w2_to_fresh(draw)
        print(f"{sde_name} {name:21s} W2 {exact_results[sde_name, name]:.4f}  floor {w2_data_floor:.4f}  "
              f"ratio {exact_results[sde_name, name] / w2_data_floor:.2f}  ({time.perf_counter() - start:.1f} s)")
for key, w2 in exact_results.items():
    assert w2 <= 1.5 * w2_data_floor, (key, w2, w2_data_floor)
w2_exact_score_sde = exact_results["VP", "Euler–Maruyama"]
w2_exact_score_ode = exact_results["VP", "probability-flow ODE"]
shares_pc = mode_shares(exact_draws["VP", "predictor–corrector"])
print(f"mode shares, predictor–corrector {[round(s, 3) for s in shares_pc.tolist()]} "
      f"vs data weights {data.weights.tolist()}")

# %%
fig, axes = plt.subplots(2, 4, figsize=(15, 7.5))
for row, sde_name in zip(axes, ("VP", "VE")):
    sde = vp if sde_name == "VP" else ve
    for ax, name in zip(row, samplers_2d):
        ax.scatter(*exact_draws[sde_name, name].T, s=1)
        ax.set_title(f"{sde_name}, {name}\nW2 {exact_results[sde_name, name]:.3f} (floor {w2_data_floor:.3f})",
                     fontsize=9)
    score = exact_score if sde_name == "VP" else ve_exact_score
    path = ode_sample(score, sde, sde.prior_sample((300, 2), generator).double(),
                      time_grid(sde, ex["ode_steps"], spacing="log_snr"), method="heun", return_path=True)
    row[3].plot(path[:, :, 0], path[:, :, 1], color="0.5", lw=0.4)
    row[3].scatter(*path[-1].T, s=3, color="tab:red")
    row[3].set_title(f"{sde_name}: probability-flow trajectories", fontsize=9)
    for ax in row:
        ax.set_xlim(-3.5, 3.5)
        ax.set_ylim(-3.5, 3.5)
        ax.set_aspect("equal")
plt.tight_layout()
plt.show()

# %% [markdown]
# ### DDPM's sampler is a discretised reverse SDE
#
# DDPM's ancestral step (chapter 05, Algorithm 2) with $\beta_i = \beta(t)\,h$ for a step $h$ reads
# $x_{t-h} = \big(x_t + \beta_i\, s(x_t, t)\big)/\sqrt{1-\beta_i} + \sqrt{\beta_i}\,z$, using $\varepsilon_\theta = -\sigma_t s$
# and $\beta_i/\sqrt{1-\bar\alpha_i}\cdot\varepsilon_\theta \approx -\beta_i s$. Expanding $1/\sqrt{1-\beta_i} = 1 + \tfrac12\beta_i + O(h^2)$
# gives $x_t + [\tfrac12\beta x + \beta s]\,h + \sqrt{\beta h}\,z + O(h^2)$: exactly one Euler–Maruyama
# step of the reverse VP SDE, up to $O(h^2)$. Measured: the gap between the two steps, same $x$ and
# $z$, shrinks with $h$ at slope 2 on a log–log scale.

# %%
x_mid = vp.perturb(data.sample(2000, generator).double(), 0.5, torch.randn(2000, 2, generator=generator,
                                                                             dtype=torch.float64))
z = torch.randn(x_mid.shape, generator=generator, dtype=torch.float64)
tt = torch.full((len(x_mid),), 0.5, dtype=torch.float64)
s_mid, beta_mid = exact_score(x_mid, tt), vp.beta(tt)[:, None]
gaps, hs = [], [0.04, 0.02, 0.01, 0.005]
for h in hs:
    b = beta_mid * h  # β_i
    ddpm_step = (x_mid + b * s_mid) / torch.sqrt(1 - b) + torch.sqrt(b) * z
    em_step = x_mid - vp.reverse_drift(x_mid, tt, s_mid) * h + vp.diffusion(tt)[:, None] * math.sqrt(h) * z
    gaps.append((ddpm_step - em_step).norm(dim=1).mean().item())
slope = math.log(gaps[0] / gaps[-1]) / math.log(hs[0] / hs[-1])
print("mean |DDPM step − Euler–Maruyama step| per h:", {h: f"{g:.2e}" for h, g in zip(hs, gaps)},
      f"slope {slope:.2f}")
assert abs(slope - 2) < 0.2

# %% [markdown]
# ## 4. Likelihoods through the probability-flow ODE
#
# The ODE is a continuous normalizing flow, so the instantaneous change of variables (Chen et al.
# 2018; chapter 07) gives exact log-likelihoods: with $\tilde f = f - \tfrac12 g^2 s_\theta$,
#
# $$
# \log p_0(x_0) = \log p_1(x_1) + \int_0^1 \nabla\cdot \tilde f(x_t, t)\, dt ,
# $$
#
# integrating $x$ and the divergence together from the data at $t=\epsilon$ to the prior at $t = 1$
# (Song et al. 2021, sec. 4.3). genbook's `ode_log_likelihood` does that with a fixed-step RK4
# and, in 2D, genbook.flow's exact divergence. Checked first with the exact score, where
# it must reproduce the true density of $p_\epsilon$, up to the small *prior mismatch* (the ODE
# ends in $\mathcal N(0, I)$, while $p_1$ still holds a trace $\alpha_1\mu_k$ of the data); then the learned model, on fresh data, against
# the true entropy $H = -\mathbb E\log p$ (what a perfect model scores). Bar: within 0.15 nats.

# %%
nll_cfg = cfg["nll"]
nll_times = time_grid(vp, nll_cfg["steps"], eps=nll_cfg["eps"], spacing="log_snr").flip(0)  # eps -> 1
check_points = data.sample(300, generator).double()
ll_exact_score = ode_log_likelihood(exact_score, vp, check_points, nll_times)
ll_true = noised_mixture(data, vp, nll_cfg["eps"]).log_prob(check_points)
gap = ll_exact_score - ll_true
alpha_1 = vp.alpha(torch.tensor(1.0, dtype=torch.float64)).item()
print(f"exact score through the ODE: log p − true log p_eps: mean {gap.mean():+.1e}, max |.| {gap.abs().max():.1e}"
      f" (prior mismatch: α_1 = {alpha_1:.1e}, so p_1 is not exactly N(0, I))")
assert abs(gap.mean()) < 5e-3 and gap.abs().max() < 0.05

fresh = data.sample(nll_cfg["points"], generator).double()
start = time.perf_counter()
ll_model = ode_log_likelihood(learned_score, vp, fresh, nll_times)
nll_2d_ode, entropy_2d = -ll_model.mean().item(), data.entropy()
nll_true_same = -data.log_prob(fresh).mean().item()
print(f"learned score, NLL on {len(fresh)} fresh points: {nll_2d_ode:.4f} nats ({time.perf_counter() - start:.1f} s)")
print(f"true density on the same points: {nll_true_same:.4f}; entropy: {entropy_2d:.4f}")
assert abs(nll_2d_ode - entropy_2d) <= 0.15, (nll_2d_ode, entropy_2d)

# %% [markdown]
# ### Hutchinson's trace estimator
#
# The exact divergence costs one backward pass per dimension: 2 here, 784 for an image. For a
# random probe $\varepsilon$ with $\mathbb E[\varepsilon\varepsilon^\top] = I$,
# $\mathbb E[\varepsilon^\top J \varepsilon] = \operatorname{tr}(J\,\mathbb E[\varepsilon\varepsilon^\top]) = \operatorname{tr} J$
# (Hutchinson 1989; Skilling 1989), and $\varepsilon^\top J$ is *one* vector–Jacobian product
# (FFJORD, Grathwohl et al. 2019). Its variance depends on the probe: for a symmetric $J$,
# $2\|J\|_F^2$ with Gaussian probes and $2(\|J\|_F^2 - \sum_i J_{ii}^2)$ with Rademacher ($\pm 1$)
# probes, which never err on the diagonal. Measured at noised data points with many probes each,
# against those formulas computed from the exact Jacobian:

# %%
hut = cfg["hutchinson"]
h_t = vp.t_from_log_snr(torch.empty(hut["points"], dtype=torch.float64).uniform_(-4, 8, generator=generator))
h_x = vp.perturb(data.sample(hut["points"], generator).double(), h_t,
                 torch.randn(hut["points"], 2, generator=generator, dtype=torch.float64))


def pf_field(x, t):
    return vp.ode_drift(x, t, learned_score(x, t))


with torch.enable_grad():  # the exact Jacobian, row by row
    xg = h_x.clone().requires_grad_(True)
    out = pf_field(xg, h_t)
    jac = torch.stack([torch.autograd.grad(out[:, i].sum(), xg, retain_graph=True)[0] for i in range(2)], 1)
trace = jac.diagonal(dim1=1, dim2=2).sum(1)
sym = 0.5 * (jac + jac.transpose(1, 2))
theory = {"gaussian": 2 * sym.square().sum((1, 2)),
          "rademacher": 2 * (sym.square().sum((1, 2)) - sym.diagonal(dim1=1, dim2=2).square().sum(1))}
estimates = {}
for kind in ("rademacher", "gaussian"):
    eps = probes((hut["probes"], hut["points"], 2), kind, generator, dtype=torch.float64)
    estimates[kind] = torch.einsum("kbi,bij,kbj->kb", eps, jac, eps)  # εᵀ J ε for every probe and point
    print(f"{kind:10s}: mean estimate − exact trace {(estimates[kind].mean(0) - trace).mean():+.4f}; "
          f"variance {estimates[kind].var(0).mean():.4f} (theory {theory[kind].mean():.4f})")
hutchinson_var_gaussian = estimates["gaussian"].var(0).mean().item()
hutchinson_var_rademacher = estimates["rademacher"].var(0).mean().item()
assert hutchinson_var_gaussian > hutchinson_var_rademacher
for kind in ("rademacher", "gaussian"):
    assert abs(estimates[kind].var(0).mean() / theory[kind].mean() - 1) < 0.1, kind

# %% [markdown]
# Now the likelihood with Hutchinson's estimate in place of the exact divergence, on the same
# fresh points. A fresh Rademacher probe is drawn at every evaluation of the field: the
# log-density is linear in the estimates, so it stays unbiased, and the errors of the
# evaluations average out along the path. Bar: the average NLL within 0.02 nats of the exact one.

# %%
start = time.perf_counter()
hutch_ll = {kind: ode_log_likelihood(learned_score, vp, fresh, nll_times, probe=kind, generator=generator)
            for kind in ("rademacher", "gaussian")}
for kind, ll in hutch_ll.items():
    print(f"{kind:10s} probes: NLL {-ll.mean().item():.4f} vs exact {nll_2d_ode:.4f}; per-point error std "
          f"{(ll - ll_model).std().item():.4f}")
hutchinson_abs_error = abs(-hutch_ll["rademacher"].mean().item() - nll_2d_ode)
print(f"hutchinson_abs_error = {hutchinson_abs_error:.4f} nats ({time.perf_counter() - start:.1f} s)")
assert hutchinson_abs_error <= 0.02

fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for kind, color in (("gaussian", "tab:orange"), ("rademacher", "tab:blue")):
    axes[0].hist((estimates[kind][0] - trace).numpy(), bins=80, alpha=0.6, color=color, density=True,
                 label=f"{kind}: var {estimates[kind].var(0).mean():.2f}")
    axes[1].hist((hutch_ll[kind] - ll_model).numpy(), bins=80, alpha=0.6, color=color, density=True,
                 label=f"{kind}: mean {(hutch_ll[kind] - ll_model).mean():+.4f}")
axes[0].set(title="one probe: εᵀJε − tr J", xlabel="error")
axes[1].set(title="log p with Hutchinson − exact (per point)", xlabel="nats")
for ax in axes:
    ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 5. Images: a score model on Fashion-MNIST
#
# The network is chapter 05's UNet, trained with the loss of section 2 on the VP SDE. It predicts
# the noise, and the score is $s_\theta = -\varepsilon_\theta/\sigma_t$. Three choices make a short CPU
# run go further; none changes what is learned (the minimiser is the true score at every $t$):
#
# - **a skip connection in time**, as in chapter 05: $\varepsilon_\theta = \sigma_t x_t + \alpha_t F_\theta$,
#   exact where the task is trivial ($\alpha_t \to 0$: $\varepsilon \approx x_t$);
# - **what the UNet sees** (a preconditioning in the sense of Karras et al. 2022): the input
#   $x_t/(\alpha_t + \sigma_t)$ and the noise fraction $\sigma_t/(\alpha_t + \sigma_t)$ as its time (embedded
#   as $1000\times$). These are exactly chapter 07's interpolant $\tau x_0 + (1-\tau)\varepsilon$ and its time, at
#   $\tau = \alpha_t/(\alpha_t + \sigma_t)$: one UNet input convention for the two chapters;
# - **where to train**: $t$ is drawn through its log-SNR, $\lambda = \log(\alpha_t^2/\sigma_t^2) \sim \mathcal N(0, 2^2)$,
#   centred where signal and noise are equal (chapter 07's logit-normal time density, Esser et al. 2024),
#   and the squared error is weighted by $\lambda(t) \propto \sigma_t^2(\alpha_t+\sigma_t)^2/\alpha_t^2$ in the notation
#   of section 2. Since $x_0 - \varepsilon = (x_t - (\alpha_t + \sigma_t)\varepsilon)/\alpha_t$, that is the squared
#   error of the velocity $x_0 - \varepsilon$ which $\varepsilon_\theta$ implies: chapter 07's loss, which
#   weighs the noisy levels, where the coarse shape is decided, more than plain $\|\varepsilon_\theta - \varepsilon\|^2$ does.
#
# The optimiser is Adam (Kingma and Ba 2015) with gradient clipping, a short linear warm-up of the rate and
# then a cosine decay; the samplers use an exponential moving average of the weights (Polyak averaging), with a
# decay matched to the length of the run: $1 - \text{decay}$ is about one over the number of steps it averages.
# The settings are printed below the training.

# %%
from genbook.data.fashion_mnist import fashion_mnist
from genbook.likelihood import bpd_from_nll, dequantize, independent_pixels_bpd, ppca_bpd
from genbook.metrics import evaluate_fashion, fashion_evaluator, image_baselines, n_eval, save_samples, timed_sampling
from genbook.nn.unet import UNet, count_parameters
from genbook.paths import repo_relative

x_train, _ = fashion_mnist("train")
img = cfg["image"]


class ScoreUNet(nn.Module):
    """ε_θ(x_t, t) = σ_t x_t + α_t F_θ(x_t / (α_t + σ_t), σ_t / (α_t + σ_t)), F_θ a UNet; forward returns the
    score −ε_θ / σ_t. x (B, 1, 28, 28), t (B,) -> (B, 1, 28, 28)."""

    def __init__(self, sde: VPSDE):
        super().__init__()
        self.sde = sde
        self.net = UNet(in_channels=1, time_scale=1000.0, **cfg["unet"])

    def eps(self, x, t):
        a, s = self.sde.alpha(t).view(-1, 1, 1, 1), self.sde.sigma(t).view(-1, 1, 1, 1)
        with genbook.autocast(x.device):
            out = self.net(x / (a + s), (s / (a + s)).view(-1)).float()  # F_θ, (B, 1, 28, 28)
        return s * x + a * out

    def forward(self, x, t):
        return -self.eps(x, t) / self.sde.sigma(t).view(-1, 1, 1, 1)  # s_θ = −ε_θ / σ_t


def train_image_model(model):
    model.to(device)
    optimizer = genbook.adam(model.parameters(), img["lr"])  # fused where torch has the kernel: the same update, cheaper
    ema = genbook.EMA(model, img["ema"])

    def step(x0):
        log_snr = img["log_snr_std"] * torch.randn(len(x0), device=x0.device)  # λ ~ N(0, std²)
        t = vp.t_from_log_snr(log_snr).clamp(1e-5, 1.0)
        eps = torch.randn_like(x0)  # ε ~ N(0, I)
        x_t = vp.perturb(x0, t, eps)  # α_t x_0 + σ_t ε
        a, s = vp.alpha(t).view(-1, 1, 1, 1), vp.sigma(t).view(-1, 1, 1, 1)
        weight = 0.5 * ((a + s) / a) ** 2  # λ(t)/σ_t²: the velocity error of chapter 07, halved
        return (weight * (model.eps(x_t, t) - eps).square()).mean()  # λ(t) ‖s_θ + ε/σ_t‖², averaged

    # the batches' own generator: the image model does not depend on how much randomness the 2D sections drew
    data_iter = genbook.batches(x_train, batch_size=img["batch_size"], generator=torch.Generator().manual_seed(6),
                                device=device)
    history = genbook.fit(step, data_iter, img["steps"], model=model, optimizer=optimizer, ema=ema, grad_clip=1.0,
                          log_every=50, desc="score UNet",
                          lr_schedule=genbook.warmup_cosine(img["lr"], img["steps"], img["warmup"]))
    model.load_state_dict(ema.model.state_dict())
    return {"history": history}


torch.manual_seed(0)
start = time.perf_counter()
score_unet, unet_info = genbook.load_or_train(ScoreUNet(vp), train_image_model, chapter="06_sde", name="score_unet",
                                              config={**img, **cfg["unet"], "sde": repr(vp)})
train_seconds = time.perf_counter() - start
n_unet_parameters = count_parameters(score_unet.net)  # counts trainable ones: before requires_grad_(False)
score_unet = score_unet.to(device).eval().requires_grad_(False)
print(f"UNet: {n_unet_parameters:,} parameters,",
      "loaded from cache" if unet_info["cached"] else f"trained in {train_seconds:.0f} s")
print(f"{img['steps']} steps of batch {img['batch_size']}: Adam, rate {img['lr']:g} after a {img['warmup']}-step warm-up, "
      f"cosine decay; EMA decay {img['ema']} (an average over about {1 / (1 - img['ema']):.0f} steps)")
genbook.plot_losses(unet_info["history"], title="denoising score matching (Fashion-MNIST), EMA weights kept")
plt.show()

# %% [markdown]
# ### Three samplers, one score model
#
# All samplers start from the same noise and use the same network:
#
# - **Euler–Maruyama** on the reverse SDE, steps uniform in $t$ (Song et al. 2021);
# - **predictor–corrector**: Euler–Maruyama plus one Langevin corrector step per step (2 NFE per step);
# - the **probability-flow ODE** with Heun's method. Few steps need a good variable: the same ODE
#   written for $y = x/\alpha_t$ against $\rho = \sigma_t/\alpha_t$ reads $dy/d\rho = \varepsilon_\theta(x, t)$
#   (Song, Meng and Ermon 2021, eq. 14; Karras et al. 2022), whose solutions are nearly straight lines;
#   Euler's method in $\rho$ *is* DDIM. We take Heun's steps in $\rho$ on Karras et al.'s grid, dense near the data.
#
# Each is timed apart from evaluation (`timed_sampling`) and scored with the protocol of the book:
# FD in the features of genbook's Fashion-MNIST classifier (not Inception FID) with a bootstrap
# interval, precision and recall, at `n_eval()` samples, next to three baselines at the same $n$:
# real vs real (the floor), training images blurred by a 1-pixel Gaussian, and a PCA-Gaussian.

# %%
n = n_eval()
evaluator = fashion_evaluator(device)
start = time.perf_counter()
baselines = image_baselines(n, evaluator=evaluator)
print(f"baselines at n = {n} ({time.perf_counter() - start:.1f} s): "
      + ", ".join(f"{k} = {v:.2f}" for k, v in baselines.items()))


def image_sampler(kind, steps):
    """(sample_batch(b, generator), NFE per image) for one sampler of the table."""
    if kind == "ode":
        times = time_grid(vp, steps, spacing="edm")
        return (lambda b, g: ode_sample(score_unet, vp, vp.prior_sample((b, 1, 28, 28), g, device), times,
                                        method="heun", variable="sigma").clamp(-1, 1)), ode_nfe("heun", steps)
    if kind == "em":
        times = time_grid(vp, steps)
        return (lambda b, g: euler_maruyama(score_unet, vp, vp.prior_sample((b, 1, 28, 28), g, device), times,
                                            generator=g).clamp(-1, 1)), steps
    times = time_grid(vp, steps)
    return (lambda b, g: predictor_corrector(score_unet, vp, vp.prior_sample((b, 1, 28, 28), g, device), times,
                                             snr=cfg["image_snr"], generator=g).clamp(-1, 1)), 2 * steps


names = {"ode": "probability-flow ODE (Heun)", "em": "Euler–Maruyama", "pc": "predictor–corrector"}
table, image_samples = [], {}
for kind, steps in cfg["samplers"]:
    sample_batch, nfe = image_sampler(kind, steps)
    images, cost = timed_sampling(sample_batch, n, batch_size=cfg["sample_batch"], nfe=nfe, device=device, seed=1234)
    scores = evaluate_fashion(images, n=n, evaluator=evaluator)
    table.append(dict(kind=kind, steps=steps, **cost, **scores))
    image_samples[kind, steps] = images
    print(f"{names[kind]:28s} {steps:3d} steps {nfe:3d} NFE: FD {scores['fd']:6.2f} ± {scores['fd_ci']:.2f}, "
          f"precision {scores['precision']:.2f}, recall {scores['recall']:.2f}, {cost['ms_per_image']:.1f} ms/image")

# %%
print(f"{'sampler':30s} {'NFE':>4s} {'FD':>8s} {'95% interval':>16s} {'prec.':>6s} {'recall':>6s} {'ms/img':>7s}")
for r in table:
    interval = f"[{r['fd_low']:.1f}, {r['fd_high']:.1f}]"
    print(f"{names[r['kind']]:30s} {r['nfe']:4d} {r['fd']:8.2f} {interval:>16s} "
          f"{r['precision']:6.2f} {r['recall']:6.2f} {r['ms_per_image']:7.2f}")
for key, label in (("fd_real_vs_real", "real vs real"), ("fd_blurred", "blurred data (σ = 1 px)"),
                   ("fd_pca_gaussian", "PCA-Gaussian")):
    print(f"{label:30s} {'':4s} {baselines[key]:8.2f}")

fig, ax = plt.subplots(figsize=(6.5, 4))
for kind, marker in (("ode", "o"), ("em", "s"), ("pc", "^")):
    rows = [r for r in table if r["kind"] == kind]
    if rows:
        ax.errorbar([r["nfe"] for r in rows], [r["fd"] for r in rows], yerr=[r["fd_ci"] for r in rows],
                    marker=marker, capsize=3, label=names[kind])
for key, style, label in (("fd_pca_gaussian", "--", "PCA-Gaussian"), ("fd_blurred", "-.", "blurred data"),
                          ("fd_real_vs_real", ":", "real vs real")):
    ax.axhline(baselines[key], color="0.4", ls=style, label=label)
ax.set(xscale="log", yscale="log", xlabel="network evaluations per image (NFE)", ylabel=f"FD (n = {n})",
       title="sample quality against cost")
ax.legend(fontsize=8)
plt.show()

# %%
stochastic = min((r for r in table if r["kind"] != "ode"), key=lambda r: r["fd"])
ode_same_cost = min((r for r in table if r["kind"] == "ode" and r["nfe"] <= stochastic["nfe"]), key=lambda r: r["fd"],
                    default=None)
print(f"best stochastic sampler: {names[stochastic['kind']]} with {stochastic['nfe']} NFE, FD {stochastic['fd']:.1f}"
      + (f"; the ODE with at most as many NFE ({ode_same_cost['nfe']}): FD {ode_same_cost['fd']:.1f}"
         if ode_same_cost else ""))

# %% [markdown]
# Each step of Euler–Maruyama injects fresh noise that later steps must remove, and a first-order step
# in $t$ is long where $\beta(t)$ is large: the stochastic samplers are built for many small steps (Song
# et al. use 1000, and the full profile runs them longer). With a budget of a few dozen network
# evaluations, the probability-flow ODE, with a second-order solver in a variable where its paths are
# nearly straight, is the better use of each evaluation. The corrector cannot repair a predictor whose
# steps are too long: Langevin at fixed $t$ only pulls towards $p_t$ locally.
#
# The bars: the best FD at most half the PCA-Gaussian's, and the probability-flow ODE with at most
# 50 evaluations within 1.25× of the best sampler.

# %%
best = min(table, key=lambda r: r["fd"])
best_ode = min((r for r in table if r["kind"] == "ode" and r["nfe"] <= 50), key=lambda r: r["fd"])
fd_best, fd_ode_le50nfe = best["fd"], best_ode["fd"]
print(f"best: {names[best['kind']]} with {best['nfe']} NFE, FD {fd_best:.2f} = "
      f"{fd_best / baselines['fd_pca_gaussian']:.2f} × PCA-Gaussian, {fd_best / baselines['fd_blurred']:.2f} × blurred data")
print(f"best ODE with ≤ 50 NFE: {best_ode['nfe']} NFE, FD {fd_ode_le50nfe:.2f} = {fd_ode_le50nfe / fd_best:.2f} × the best")
assert fd_best <= 0.5 * baselines["fd_pca_gaussian"], (best, baselines)
assert fd_ode_le50nfe <= 1.25 * fd_best, (best_ode, best)
final_name = {"ode": "ode_heun", "em": "euler_maruyama", "pc": "predictor_corrector"}[best["kind"]]
path = save_samples("06_sde", final_name, image_samples[best["kind"], best["steps"]],
                    cost={k: best[k] for k in ("ms_per_image", "nfe", "n", "batch_size", "seconds", "device")},
                    sampler=names[best["kind"]], steps=best["steps"], train_steps=img["steps"],
                    training=unet_info.get("training"))
print("saved:", repo_relative(path))

fig, axes = plt.subplots(1, len(table), figsize=(3.2 * len(table), 3.6))
for ax, r in zip(axes, table):
    genbook.show_images(image_samples[r["kind"], r["steps"]][:36], nrow=6, ax=ax)
    ax.set_title(f"{names[r['kind']]}\n{r['nfe']} NFE, FD {r['fd']:.1f}", fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Bits per dimension through the ODE
#
# Section 4's likelihood, now in 784 dimensions, where only Hutchinson's estimator is affordable
# (a fresh Rademacher probe at every evaluation, one vector–Jacobian product each). Images are
# uniformly dequantised, $y = (k + u)/256\cdot 2 - 1$ with $u \sim \mathcal U[0, 1)$, so that a
# continuous density cannot pile up on the 256 levels; then $-\log p(y)$ in nats plus
# $D\log 128$ bounds the discrete NLL, and divided by $D\ln 2$ it is bits per dimension (Theis et al. 2016).
# The ODE runs from $t = \epsilon$ to 1 in RK4 steps uniform in log-SNR. It is expensive, so
# we use only a small subset of the test images (its size is printed); two baselines on the same
# test images: probabilistic PCA with 16 latent dimensions (an exact Gaussian likelihood, Tipping and
# Bishop 1999) and an independent categorical distribution per pixel.

# %%
bpd_cfg = cfg["bpd"]
x_test, _ = fashion_mnist("test")
test_subset = x_test[: bpd_cfg["images"]]
y = dequantize(test_subset, torch.Generator().manual_seed(7)).to(device)
bpd_times = time_grid(vp, bpd_cfg["steps"], eps=bpd_cfg["eps"], spacing="log_snr").flip(0)
start = time.perf_counter()
ll_images = ode_log_likelihood(score_unet, vp, y, bpd_times, method="rk4", probe="rademacher",
                               generator=torch.Generator().manual_seed(8)).cpu()
bpd_ode = bpd_from_nll(-ll_images.mean().item(), 784)
bpd_seconds = time.perf_counter() - start
bpd_baselines = {"ppca_bpd": ppca_bpd(x_train[: cfg["ppca_train"]], test_subset, latent_dim=16),
                 "independent_pixels_bpd": independent_pixels_bpd(x_train, test_subset)}
print(f"ODE likelihood on {len(test_subset)} test images ({bpd_cfg['steps']} RK4 steps, {bpd_seconds:.1f} s): "
      f"{bpd_ode:.3f} bits/dim (per-image spread ± {bpd_from_nll(-ll_images, 784).std().item():.2f})")
print(f"probabilistic PCA (16 dims): {bpd_baselines['ppca_bpd']:.3f} bits/dim; "
      f"independent pixels: {bpd_baselines['independent_pixels_bpd']:.3f} bits/dim")
winner = "the score model" if bpd_ode < bpd_baselines["independent_pixels_bpd"] else "independent pixels"
print(f"against independent pixels, {winner} wins.")
assert bpd_ode < bpd_baselines["ppca_bpd"], (bpd_ode, bpd_baselines)

fig, ax = plt.subplots(figsize=(5.5, 3))
labels = ["score model (ODE)", "PPCA, 16 dims", "independent pixels"]
values = [bpd_ode, bpd_baselines["ppca_bpd"], bpd_baselines["independent_pixels_bpd"]]
ax.barh(labels, values, color=["tab:blue", "0.6", "0.6"])
for i, v in enumerate(values):
    ax.text(v, i, f" {v:.2f}", va="center")
ax.set(xlabel=f"bits/dim on {len(test_subset)} test images (lower is better)", xlim=(0, max(values) * 1.2))
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Results

# %%
metrics = {
    "score_rel_error_2d": score_rel_error_2d,
    "w2_exact_score_sde": w2_exact_score_sde,
    "w2_exact_score_ode": w2_exact_score_ode,
    "nll_2d_ode": nll_2d_ode,
    "hutchinson_abs_error": hutchinson_abs_error,
    "fd_best": fd_best,
    "fd_ode_le50nfe": fd_ode_le50nfe,
    "bpd_ode": bpd_ode,
    **{f"fd_{r['kind']}_{r['nfe']}nfe": r["fd"] for r in table},
    **{f"w2_{s.lower()}_{k.split()[0].lower().replace('–', '_')}": v for (s, k), v in exact_results.items()},
}
baseline_values = {
    **baselines,
    "w2_data_floor": w2_data_floor,
    "entropy_2d": entropy_2d,
    "hutchinson_var_gaussian": hutchinson_var_gaussian,
    "hutchinson_var_rademacher": hutchinson_var_rademacher,
    **bpd_baselines,
}
timings = {f"ms_per_image_{r['kind']}_{r['nfe']}nfe": r["ms_per_image"] for r in table}
record = genbook.report("06_sde", metrics=metrics, baselines=baseline_values, timings=timings, n_eval=n,
                        n_bpd_images=len(test_subset), train_steps=img["steps"],
                        best=f"{names[best['kind']]} {best['nfe']} NFE")
for key, value in {**record["metrics"], **record["baselines"]}.items():
    print(f"{key:36s} {value:10.4f}")
print(f"chapter wall time so far: {time.perf_counter() - chapter_start:.0f} s")

# %% [markdown]
# ## Exercises
#
# **Exercise 6.1: the VP marginal.** Write `vp_mean_std(x0, t, beta_min, beta_max)` returning the mean
# (B, D) and the standard deviation (B,) of $x_t \mid x_0$ under the VP SDE with
# $\beta(t) = \beta_{\min} + t(\beta_{\max} - \beta_{\min})$. The check compares with a numerical
# integral of $\beta$ and with a simulation of the SDE.

# %% tags=["exercise"]
def vp_mean_std(x0, t, beta_min, beta_max):
    """Mean (B, D) and std (B,) of x_t | x_0 for dx = −½ β(t) x dt + √β(t) dw. x0: (B, D), t: (B,)."""
    # BEGIN SOLUTION
    integral = beta_min * t + 0.5 * (beta_max - beta_min) * t**2  # ∫₀ᵗ β(s) ds
    alpha = torch.exp(-0.5 * integral)
    return alpha[:, None] * x0, torch.sqrt(1 - alpha**2)
    # END SOLUTION


# %%
from genbook.exercises.sde import check_vp_mean_std

check_vp_mean_std(vp_mean_std)
print("vp_mean_std: correct")

# %% [markdown]
# **Exercise 6.2: one step of the reverse SDE.** Write `reverse_sde_step(x, t, dt, score, z, beta_min, beta_max)`:
# one Euler–Maruyama step of Anderson's reverse-time VP SDE from $t$ to $t - dt$ ($dt > 0$), given the
# score $s(x, t)$ (B, D) and the standard normal noise $z$ (B, D) to use.

# %% tags=["exercise"]
def reverse_sde_step(x, t, dt, score, z, beta_min, beta_max):
    """x at t − dt from x at t, for dx = [f − g² s] dt + g dw̄ with f = −½ β x, g = √β. x, score, z: (B, D); t: (B,)."""
    # BEGIN SOLUTION
    beta = (beta_min + t * (beta_max - beta_min))[:, None]
    drift = -0.5 * beta * x - beta * score  # f − g² s
    return x - drift * dt + torch.sqrt(beta * dt) * z
    # END SOLUTION


# %%
from genbook.exercises.sde import check_reverse_sde_step

check_reverse_sde_step(reverse_sde_step)
print("reverse_sde_step: correct")

# %% [markdown]
# **Exercise 6.3: a noise prediction is a score.** Write `score_from_eps(eps, t, sde)`: the score of
# $p_t$ given the best noise prediction $\varepsilon(x_t, t)$, for any genbook SDE (use `sde.alpha(t)` and
# `sde.sigma(t)`). The check uses Gaussian data, whose score is known in closed form.

# %% tags=["exercise"]
def score_from_eps(eps, t, sde):
    """∇ log p_t(x_t) from ε(x_t, t): eps (B, D), t (B,) -> (B, D)."""
    # BEGIN SOLUTION
    return -eps / sde.sigma(t)[:, None]
    # END SOLUTION


# %%
from genbook.exercises.sde import check_score_from_eps

check_score_from_eps(score_from_eps)
print("score_from_eps: correct")

# %% [markdown]
# **Exercise 6.4 (no check): the corrector's signal-to-noise ratio.** Sample Fashion-MNIST with
# `predictor_corrector` for $r \in \{0.01, 0.05, 0.16, 0.3\}$ at the same number of steps (use
# `image_sampler` as a model and `evaluate_fashion`). Where is the optimum, and what do the
# samples look like when $r$ is too large? Why does a larger step size need more steps to stay
# stable?
#
# **Exercise 6.5 (no check): VE on images.** Train the image model on `VESDE(0.01, 50)` instead
# (the network must now predict the score of inputs of size up to 50: scale its input by
# $1/\sqrt{1+\sigma_t^2}$ as Karras et al. 2022 do). Compare the FD-against-NFE table with the VP model's.
#
# **Exercise 6.6 (no check): likelihood weighting.** Song, Durkan, Murray and Ermon (2021) show that
# $\lambda(t) = g(t)^2$ turns the loss into a bound on the KL divergence, and that drawing $t$ with density
# $\propto \beta(t)/\sigma_t^2$ makes the ε-loss exactly that weighting for VP. Show that this density is
# uniform in $\log \mathrm{SNR}$, train the 2D model that way, and compare `nll_2d_ode` and the
# score error at small $t$.
#
# ## References
#
# - Y. Song, J. Sohl-Dickstein, D. P. Kingma, A. Kumar, S. Ermon and B. Poole, "Score-Based
#   Generative Modeling through Stochastic Differential Equations", ICLR 2021 (eqs. 5–13, 29–30,
#   Algorithms 1 and 5, sec. 4.3).
# - Y. Song and S. Ermon, "Generative Modeling by Estimating Gradients of the Data Distribution",
#   NeurIPS 2019 (noise-conditional score networks, annealed Langevin dynamics).
# - B. D. O. Anderson, "Reverse-time diffusion equation models", Stochastic Processes and their
#   Applications 12(3), 1982.
# - P. Vincent, "A Connection Between Score Matching and Denoising Autoencoders", Neural Computation
#   23(7), 2011.
# - M. F. Hutchinson, "A stochastic estimator of the trace of the influence matrix for Laplacian
#   smoothing splines", Communications in Statistics – Simulation and Computation 18(3), 1989.
# - J. Skilling, "The eigenvalues of mega-dimensional matrices", in *Maximum Entropy and Bayesian
#   Methods*, 1989.
# - J. Ho, A. Jain and P. Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020.
# - W. Grathwohl, R. T. Q. Chen, J. Bettencourt, I. Sutskever and D. Duvenaud, "FFJORD: Free-form
#   Continuous Dynamics for Scalable Reversible Generative Models", ICLR 2019.
# - R. T. Q. Chen, Y. Rubanova, J. Bettencourt and D. Duvenaud, "Neural Ordinary Differential
#   Equations", NeurIPS 2018.
# - J. Song, C. Meng and S. Ermon, "Denoising Diffusion Implicit Models", ICLR 2021 (eq. 14: DDIM as an ODE).
# - T. Karras, M. Aittala, T. Aila and S. Laine, "Elucidating the Design Space of Diffusion-Based
#   Generative Models", NeurIPS 2022 (Heun's method, the time grid).
# - Y. Song, C. Durkan, I. Murray and S. Ermon, "Maximum Likelihood Training of Score-Based Diffusion
#   Models", NeurIPS 2021.
# - G. Parisi, "Correlation functions and computer simulations", Nuclear Physics B 180, 1981;
#   U. Grenander and M. I. Miller, "Representations of knowledge in complex systems", JRSS B 56(4), 1994.
# - L. Theis, A. van den Oord and M. Bethge, "A note on the evaluation of generative models", ICLR 2016.
# - M. E. Tipping and C. M. Bishop, "Probabilistic Principal Component Analysis", JRSS B 61(3), 1999.
# - P. Esser et al., "Scaling Rectified Flow Transformers for High-Resolution Image Synthesis", ICML 2024.
# - B. Efron, "Tweedie's Formula and Selection Bias", JASA 106(496), 2011.
# - D. P. Kingma and J. Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
# - B. T. Polyak and A. B. Juditsky, "Acceleration of Stochastic Approximation by Averaging", SIAM Journal on
#   Control and Optimization 30(4), 1992.
