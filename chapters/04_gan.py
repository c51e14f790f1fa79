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
# # Generative adversarial networks
#
# A counterfeiter prints banknotes; a detective learns to tell them from real
# ones; the counterfeiter studies what gave the fakes away and prints better ones.
# If both keep learning, the fakes end up indistinguishable from the real thing.
# That is the whole idea of a **generative adversarial network** (GAN; Goodfellow
# et al. 2014): a *generator* $G$ turns random noise $z$ into samples $G(z)$, a
# *discriminator* $D$ outputs the probability $D(x)$ that $x$ came from the data
# rather than from $G$, and the two are trained against each other.
#
# Two things set GANs apart from the models of the other chapters. The generator
# never evaluates a density: it is trained only through the discriminator's
# judgement, so it can be any network that maps noise to images. And sampling is a
# *single forward pass* of that network, which makes GANs among the fastest image
# samplers there are (a VAE's decoder, a normalizing flow and a distilled diffusion
# model are single-pass too); we measure how fast, so that the diffusion and flow
# chapters can compare.
#
# This chapter:
#
# 1. states the minimax game of Goodfellow et al., derives the optimal
#    discriminator and the Jensen–Shannon divergence hidden in it, and checks both
#    numerically against a discriminator trained on samples;
# 2. writes both players' updates in one training step, with the *non-saturating*
#    generator loss, and shows why the loss of the original game is not used as is;
# 3. sees **mode collapse** happen on a mixture of eight Gaussians and measures it;
# 4. trains a **DCGAN** (Radford et al. 2016) on Fashion-MNIST and compares its
#    Fréchet distance with baselines computed in the same run;
# 5. trains a **conditional GAN** that draws the class it is asked for;
# 6. measures sampling speed and the diagnostics a GAN practitioner looks at.

# %%
import math
import statistics
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

import genbook
from genbook.data.fashion_mnist import CLASS_NAMES, fashion_mnist
from genbook.data.toy2d import eight_gaussians
from genbook.gan import (
    DCGANDiscriminator,
    DCGANGenerator,
    dcgan_init,
    discriminator_loss,
    generator_loss,
    mode_coverage,
    optimal_discriminator,
)
from genbook.metrics import (
    conditional_accuracy,
    evaluate_fashion,
    fashion_evaluator,
    fit_pca_gaussian,
    image_baselines,
    mmd,
    precision_recall,
    reference_images,
    save_samples,
    timed_sampling,
    train_sample,
)
from genbook.metrics import n_eval as n_eval_images

cfg = genbook.profile(
    fast=dict(
        optimal_d=dict(steps=1000, batch_size=512, width=64, lr=3e-3),
        toy=dict(width=64, z_dim=2, batch_size=256, lr=1e-3),
        tuned=dict(steps=1000, generator_steps=1, discriminator_steps=1, snapshot_every=200),
        naive=dict(steps=200, generator_steps=5, discriminator_steps=1, snapshot_every=40),
        dcgan=dict(steps=1300, batch_size=64, width=32, z_dim=64, lr=2e-3, ema=0.99, snapshot_every=260),
        cgan=dict(steps=800, batch_size=64, width=32, z_dim=64, lr=2e-3, ema=0.99, snapshot_every=160),
        n_toy=2000,  # 2D samples for the mode-coverage metrics (images use genbook's n_eval())
    ),
    full=dict(
        optimal_d=dict(steps=3000, batch_size=2048, width=128, lr=1e-3),
        toy=dict(width=128, z_dim=2, batch_size=512, lr=1e-3),
        tuned=dict(steps=5000, generator_steps=1, discriminator_steps=1, snapshot_every=1000),
        naive=dict(steps=1000, generator_steps=5, discriminator_steps=1, snapshot_every=200),
        dcgan=dict(steps=20_000, batch_size=128, width=64, z_dim=100, lr=2e-4, ema=0.999, snapshot_every=4000),
        cgan=dict(steps=20_000, batch_size=128, width=64, z_dim=100, lr=2e-4, ema=0.999, snapshot_every=4000),
        n_toy=10_000,
    ),
)
device = genbook.device()
rng = genbook.seed_everything(0)  # the chapter's random numbers (G is the generator)
print("profile:", genbook.profile_name(), "| device:", device)

# %% [markdown]
# ## The minimax game
#
# Let $p_\text{data}$ be the data distribution, $p_z$ a simple noise distribution
# (a standard Gaussian here) and $p_g$ the distribution of $G(z)$ for $z \sim p_z$.
# Goodfellow et al. (2014, eq. 1) train $D$ and $G$ on the value function
#
# $$
# \min_G \max_D V(D, G) = \mathbb{E}_{x \sim p_\text{data}}\big[\log D(x)\big]
#   + \mathbb{E}_{z \sim p_z}\big[\log\big(1 - D(G(z))\big)\big]. \tag{1}
# $$
#
# $D$ maximises $V$: the log-likelihood of a binary classifier that labels data 1
# and samples 0. $G$ minimises it: it wants $D(G(z))$ to be high.
#
# **The optimal discriminator** (Proposition 1). For a fixed $G$, write $V$ as one
# integral, $V = \int p_\text{data}(x) \log D(x) + p_g(x) \log(1 - D(x))\,dx$. For
# each $x$ the integrand $a \log y + b \log(1-y)$ is maximised at $y = a/(a+b)$, so
#
# $$
# D^*_G(x) = \frac{p_\text{data}(x)}{p_\text{data}(x) + p_g(x)}. \tag{2}
# $$
#
# **The Jensen–Shannon view** (Theorem 1). Put $D^*_G$ back into $V$. With the
# mixture $m = \tfrac12(p_\text{data} + p_g)$,
#
# $$
# C(G) = \max_D V(D, G) = -\log 4 + \mathrm{KL}\big(p_\text{data} \,\|\, m\big)
#      + \mathrm{KL}\big(p_g \,\|\, m\big) = -\log 4 + 2\,\mathrm{JSD}(p_\text{data} \,\|\, p_g). \tag{3}
# $$
#
# The Jensen–Shannon divergence is non-negative and zero only when the two
# distributions agree, so the generator's best move against a perfect
# discriminator is $p_g = p_\text{data}$, where $D^* = \tfrac12$ everywhere and
# $C(G) = -\log 4$. Training a GAN is, in this idealised picture, minimising a
# divergence between model and data that we never have to write down.
#
# ### The losses, in code
#
# A network outputs a *logit* $\ell$, and $D = \sigma(\ell)$. Taking $\log\sigma$
# after $\sigma$ underflows ($\sigma(-100) = 0$ in float32, and $\log 0 = -\infty$);
# `F.logsigmoid` computes $\log \sigma(\ell)$ directly, and
# $\log(1 - \sigma(\ell)) = \log\sigma(-\ell)$. From scratch, the three losses of this chapter:

# %%
def d_loss_scratch(real_logits, fake_logits):
    """−V(D, G) on a batch (eq. 1): D ascends V by descending this."""
    return -(F.logsigmoid(real_logits).mean() + F.logsigmoid(-fake_logits).mean())


def g_loss_minimax_scratch(fake_logits):
    """The generator's part of eq. 1: mean log(1 − D(G(z)))."""
    return F.logsigmoid(-fake_logits).mean()


def g_loss_non_saturating_scratch(fake_logits):
    """−mean log D(G(z)) (Goodfellow et al. 2014, sec. 3)."""
    return -F.logsigmoid(fake_logits).mean()


# %% [markdown]
# The independent reference is PyTorch's binary cross-entropy: $D$'s loss is the
# cross-entropy with target 1 on data and 0 on samples, the non-saturating loss
# is the cross-entropy of the samples with target 1, and the minimax loss is minus
# the cross-entropy with target 0. We check ours, and genbook's versions that the
# rest of the chapter uses, on random logits and on extreme ones (±100).

# %%
real_logits = torch.cat([4 * torch.randn(1000, generator=rng), torch.tensor([100.0, -100.0])]).double()
fake_logits = torch.cat([4 * torch.randn(800, generator=rng), torch.tensor([-100.0, 100.0])]).double()
bce = F.binary_cross_entropy_with_logits
ones, zeros = torch.ones_like(fake_logits), torch.zeros_like(fake_logits)
pairs = {
    "discriminator": (d_loss_scratch(real_logits, fake_logits), discriminator_loss(real_logits, fake_logits),
                      bce(real_logits, torch.ones_like(real_logits)) + bce(fake_logits, zeros)),
    "minimax G": (g_loss_minimax_scratch(fake_logits), generator_loss(fake_logits, "minimax"),
                  -bce(fake_logits, zeros)),
    "non-saturating G": (g_loss_non_saturating_scratch(fake_logits), generator_loss(fake_logits, "non_saturating"),
                         bce(fake_logits, ones)),
}
for name, (ours, genbooks, reference) in pairs.items():
    print(f"{name:>17}: scratch {ours.item():.10f}  genbook {genbooks.item():.10f}  BCE {reference.item():.10f}")
    assert torch.allclose(ours, reference, atol=1e-10) and torch.allclose(genbooks, reference, atol=1e-10)
naive = -(torch.sigmoid(torch.tensor([-100.0])).log()).item()
print(f"naive −log σ(−100) in float32 = {naive}; stable F.logsigmoid: {-F.logsigmoid(torch.tensor([-100.0])).item()}")

# %% [markdown]
# ### Why the generator's loss is made non-saturating
#
# Early in training the generator is bad and the discriminator rejects its
# samples confidently: $D(G(z)) \approx 0$. Look at the gradient that reaches the
# generator through the logit $\ell$ of a sample:
#
# $$
# \frac{\partial}{\partial \ell} \log\big(1 - \sigma(\ell)\big) = -\sigma(\ell) = -D(G(z)) \to 0,
# \qquad
# \frac{\partial}{\partial \ell} \big[-\log \sigma(\ell)\big] = -\big(1 - D(G(z))\big) \to -1.
# $$
#
# The minimax loss *saturates*: the worse a sample, the less it is pushed. Goodfellow
# et al. (2014, sec. 3) therefore train $G$ to maximise $\log D(G(z))$ instead. The
# fixed point is the same ($D^* = \tfrac12$ at $p_g = p_\text{data}$), but the
# gradients are strong exactly where they are needed. We measure both gradients with
# autograd on genbook's losses.

# %%
logit = torch.linspace(-10, 10, 401, requires_grad=True)
(grad_minimax,) = torch.autograd.grad(generator_loss(logit, "minimax") * len(logit), logit)
(grad_non_saturating,) = torch.autograd.grad(generator_loss(logit, "non_saturating") * len(logit), logit)
d_of_g = torch.sigmoid(logit).detach()
assert torch.allclose(grad_minimax, -d_of_g, atol=1e-6) and torch.allclose(grad_non_saturating, d_of_g - 1, atol=1e-6)
at = logit.detach().sub(-6.9).abs().argmin()  # D(G(z)) ≈ 0.001
print(f"at D(G(z)) = {d_of_g[at]:.4f}: |gradient| minimax {grad_minimax[at].abs():.4f}, "
      f"non-saturating {grad_non_saturating[at].abs():.4f}")

fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(d_of_g, grad_minimax.abs(), label=r"minimax: $\log(1 - D(G(z)))$")
ax.plot(d_of_g, grad_non_saturating.abs(), label=r"non-saturating: $-\log D(G(z))$")
ax.set_xscale("log")
ax.set_xlabel(r"$D(G(z))$ (how real D finds a sample)")
ax.set_ylabel(r"|d loss / d logit|")
ax.set_title("gradient reaching the generator")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Checking the theory on a problem we can solve exactly
#
# Proposition 1 and Theorem 1 can be checked where the densities are known. Take
# $p_\text{data}$ a two-bump mixture on the real line and freeze a "generator" whose
# samples follow a broad Gaussian $p_g$. Then (a) a discriminator trained on
# samples only, with `discriminator_loss`, should approach the closed form (2); (b)
# $V(D^*, G)$ computed by numerical integration should equal $-\log 4 + 2\,\mathrm{JSD}$,
# with the JSD computed separately from its definition; (c) the trained
# discriminator's value $V(D, G)$ can only be lower than $C(G)$, and close to it.
#
# As the loss section taught, $V$ is computed from logits with `F.logsigmoid`, never
# as $\log$ of a sigmoid: the logit of $D^*$ is $\log p_\text{data} - \log p_g$, and the
# trained network outputs its logit directly. Be clear about what (b) and (c)'s first
# half test: $D^*$ is the pointwise maximiser on the very grid we integrate over, so
# $V(D, G) \le C(G)$ cannot fail, and (b) is an identity that checks our code for
# $D^*$ and the JSD, not the theorem. The informative numbers are the gap
# $C(G) - V(D, G)$ and the distance between the trained $D$ and $D^*$.

# %%
p_data = torch.distributions.MixtureSameFamily(
    torch.distributions.Categorical(probs=torch.tensor([0.5, 0.5], dtype=torch.float64)),
    torch.distributions.Normal(torch.tensor([-1.5, 1.5], dtype=torch.float64), torch.tensor([0.5, 0.5]).double()),
)
p_g = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.5, dtype=torch.float64))
setup = cfg["optimal_d"]
x_data = p_data.sample((50_000, 1)).float()
x_model = p_g.sample((50_000, 1)).float()
disc_1d = nn.Sequential(nn.Linear(1, setup["width"]), nn.ReLU(), nn.Linear(setup["width"], setup["width"]), nn.ReLU(),
                        nn.Linear(setup["width"], 1)).to(device)
optimizer = torch.optim.Adam(disc_1d.parameters(), lr=setup["lr"])
genbook.fit(lambda x, x_g: discriminator_loss(disc_1d(x), disc_1d(x_g)),  # −V(D, G): D ascends V (eq. 1)
            genbook.batches(x_data, x_model, batch_size=setup["batch_size"], generator=rng, device=device),
            setup["steps"], model=disc_1d, optimizer=optimizer, desc="1-D discriminator")

xs = torch.linspace(-12, 12, 240_001, dtype=torch.float64)  # a fine grid for the integrals
dx = xs[1] - xs[0]
log_pd, log_pg = p_data.log_prob(xs), p_g.log_prob(xs)
pd, pg = log_pd.exp(), log_pg.exp()
d_star = optimal_discriminator(log_pd, log_pg)  # eq. 2
logit_star = log_pd - log_pg  # the logit of D*: log p_data − log p_g
with torch.no_grad():
    logit_trained = disc_1d(xs.float()[:, None].to(device)).squeeze(1).double().cpu()
d_trained = torch.sigmoid(logit_trained)  # for the plot only


def value_of(logits):
    """V(D, G) = ∫ p_data log D + p_g log(1 − D) dx (eq. 1) for D = σ(logits), by the rectangle rule on the grid."""
    return ((pd * F.logsigmoid(logits) + pg * F.logsigmoid(-logits)).sum() * dx).item()


m = (pd + pg) / 2
jsd = 0.5 * ((torch.xlogy(pd, pd) - torch.xlogy(pd, m)).sum() + (torch.xlogy(pg, pg) - torch.xlogy(pg, m)).sum()) * dx
c_of_g = value_of(logit_star)
assert torch.allclose(torch.sigmoid(logit_star), d_star)  # the same D* as eq. 2
print(f"C(G) = V(D*, G)          = {c_of_g:.10f}")
print(f"-log 4 + 2 JSD(p_data‖p_g) = {-math.log(4) + 2 * jsd.item():.10f}   (JSD = {jsd.item():.4f} nats)")
print(f"V(D_trained, G)          = {value_of(logit_trained):.6f}   (gap to C(G): {c_of_g - value_of(logit_trained):.6f})")
d_error = ((d_trained - d_star).abs() * m).sum().item() * dx.item()
print(f"E_m |D_trained − D*|     = {d_error:.4f}")
assert abs(c_of_g - (-math.log(4) + 2 * jsd.item())) < 1e-9  # Theorem 1
assert value_of(logit_trained) <= c_of_g + 1e-6 and c_of_g - value_of(logit_trained) < 0.02  # D* is the maximiser
assert d_error < 0.04  # Proposition 1, up to sampling and optimisation error

# %%
fig, ax = plt.subplots(figsize=(6, 3))
keep = xs.abs() <= 4.5
ax.plot(xs[keep], pd[keep], color="k", lw=1, label=r"$p_\mathrm{data}$")
ax.plot(xs[keep], pg[keep], color="0.6", lw=1, label=r"$p_g$")
ax.plot(xs[keep], d_star[keep], "C0", lw=2, label=r"$D^*$ (eq. 2)")
ax.plot(xs[keep], d_trained[keep], "C1--", lw=2, label="D trained on samples")
ax.axhline(0.5, color="0.8", lw=0.8)
ax.set_xlabel("x")
ax.legend(fontsize=8, loc="upper right")
ax.set_title("the optimal discriminator: closed form vs trained")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## One training step, both players
#
# Algorithm 1 of Goodfellow et al. alternates $k$ steps of the discriminator with
# one step of the generator; like them (and DCGAN) we use $k = 1$. The step below
# is all of GAN training; everything else in this chapter is architecture and
# measurement. Read it against the equations:
#
# 1. sample noise $z$ and a minibatch $x$ of data; compute $G(z)$;
# 2. **discriminator**: descend $-V(D, G)$ of eq. (1), i.e. ascend $V$; the samples
#    are *detached* so that this update changes only $D$;
# 3. **generator**: descend the non-saturating loss $-\log D(G(z))$ (or eq. 1's
#    $\log(1 - D(G(z)))$ when `g_loss="minimax"`); its gradient flows *through* $D$
#    into $G$, and only $G$'s optimiser steps.
#
# The step updates both players itself and returns detached numbers, so
# `genbook.fit` runs it with `optimizer=None`. `generator_steps` lets the generator
# take several steps per discriminator step: we need that knob to break things.
# `ema` keeps an exponential moving average of the generator's weights, a cheap and
# effective way to smooth out the oscillations of the game (Yazıcı et al. 2019);
# we sample from the average. `on_step` is a hook for diagnostics (saving the
# samples of a fixed noise batch). The class labels `y`, when given, go to both
# players: that is the conditional GAN of the last part of the chapter.

# %%
def make_gan_step(G, D, opt_G, opt_D, *, z_dim, g_loss="non_saturating", d_loss=discriminator_loss,
                  generator_steps=1, discriminator_steps=1, ema=None, on_step=None):
    """One step of Algorithm 1 (Goodfellow et al. 2014): returns step(x) or step(x, y).

    k = ``discriminator_steps`` updates of D (each on the same data batch, fresh z), then ``generator_steps``
    updates of G. ``step.updates`` counts the updates each player has taken. ``g_loss`` names a loss of
    ``generator_loss`` or is a function of the samples' logits; ``d_loss(real_logits, fake_logits)`` is D's loss.
    """
    count = 0
    updates = {"D": 0, "G": 0}

    def step(x, y=None):
        nonlocal count
        label = () if y is None else (y,)  # a conditional GAN tells both players the class
        # --- 1. the discriminator ascends V(D, G) = E log D(x) + E log(1 − D(G(z)))    (eq. 1)
        for _ in range(discriminator_steps):
            z = torch.randn(len(x), z_dim, device=x.device)  # z ~ p_z
            fake = G(z, *label)
            real_logits, fake_logits = D(x, *label), D(fake.detach(), *label)  # detach: this update moves D only
            loss_D = d_loss(real_logits, fake_logits)  # −V(D, G)
            opt_D.zero_grad(set_to_none=True)
            loss_D.backward()
            opt_D.step()
            updates["D"] += 1
        # --- 2. the generator descends −log D(G(z))  (non-saturating, sec. 3)  or  log(1 − D(G(z)))  (eq. 1)
        for k in range(generator_steps):
            if k > 0:  # further generator steps draw fresh noise
                fake = G(torch.randn(len(x), z_dim, device=x.device), *label)
            D.requires_grad_(False)  # gradients flow through D into G; D's own weights need none here
            fake_logits_G = D(fake, *label)
            loss_G = g_loss(fake_logits_G) if callable(g_loss) else generator_loss(fake_logits_G, g_loss)
            opt_G.zero_grad(set_to_none=True)
            loss_G.backward()
            opt_G.step()
            updates["G"] += 1
            D.requires_grad_(True)
        if ema is not None:  # a running average of G's weights to sample from (Yazıcı et al. 2019)
            ema.update(G)
        count += 1
        if on_step is not None:
            on_step(count)
        return {"loss_D": loss_D.detach(), "loss_G": loss_G.detach(),
                "D(x)": torch.sigmoid(real_logits).mean().detach(), "D(G(z))": torch.sigmoid(fake_logits).mean().detach()}

    step.updates = updates
    return step


# %% [markdown]
# ## Mode collapse on eight Gaussians
#
# The 2D mixture of eight Gaussians on a circle (radius 2, standard deviation
# 0.2) is the standard test of mode collapse (e.g. Metz et al. 2017): every mode is
# easy, the difficulty is to cover *all* of them at once.
#
# **Why GANs collapse.** Nothing in the game rewards diversity directly. Suppose
# the generator is optimised against a *fixed* discriminator: its best response is
# to put every sample on the single point that $D$ rates most real. Then $D$
# learns that this point is fake, the generator jumps to the next favourite, and so
# on: the order of $\min_G \max_D$ matters, and training that lets $G$ run ahead of
# $D$ behaves like $\max_D \min_G$ (Goodfellow 2016, sec. 5.1.1). Goodfellow et al.
# (2014, sec. 6) already warn that $G$ "must not be trained too much without updating
# $D$", or it collapses many values of $z$ onto the same $x$: the "Helvetica
# scenario". A second, subtler cause: with an optimal $D$, the non-saturating loss
# minimises $\mathrm{KL}(p_g \,\|\, p_\text{data}) - 2\,\mathrm{JSD}$ (Arjovsky & Bottou
# 2017), and the reverse KL punishes samples where there is no data much more than
# missing a mode.
#
# **Measuring it.** We need a rule that says when a mode is covered. A sample is
# *high quality* when it lies within $3\sigma$ of the nearest mode's centre (as in
# Srivastava et al. 2017); it then counts for that mode. With $N$ samples and $K$
# modes a perfect sampler gives each mode about $N/K$ samples (98.9% of them within
# $3\sigma$ in 2D); we call a mode **covered when at least a quarter of its fair
# share, $N/(4K)$, of samples count for it**. A handful of stray samples does not
# cover a mode; a generator that visits it a quarter as often as it should does.
# From scratch:

# %%
def count_modes(samples, centres, std, radius=3.0, min_share=0.25):
    """Number of modes with at least min_share · N/K samples within radius·std of them (nearest mode only)."""
    distance, nearest = torch.cdist(samples.double(), centres.double()).min(dim=1)  # (N,), (N,)
    high_quality = distance <= radius * std
    counts = torch.bincount(nearest[high_quality], minlength=len(centres))  # (K,)
    return int((counts >= min_share * len(samples) / len(centres)).sum())


toy = eight_gaussians()  # radius 2, std 0.2
toy_std = 0.2
centres = toy.means.float()
n = cfg["n_toy"]
angle = 2 * math.pi * torch.rand(n, generator=rng)
check_sets = {
    "true samples": toy.sample(n, rng),
    "three modes only": centres[torch.arange(n) % 3] + toy_std * torch.randn(n, 2, generator=rng),
    "a ring inside the modes": 1.4 * torch.stack([angle.cos(), angle.sin()], 1),
}
for name, points in check_sets.items():
    ours, genbooks = count_modes(points, centres, toy_std), mode_coverage(points, centres, toy_std)
    print(f"{name:>24}: scratch {ours} modes | genbook {genbooks}")
    assert ours == genbooks.covered
# genbook's rule is a copy of ours, so the independent check is what the constructed sets must give:
expected = {"true samples": 8, "three modes only": 3, "a ring inside the modes": 0}
assert all(count_modes(check_sets[name], centres, toy_std) == count for name, count in expected.items())

# %% [markdown]
# Two setups, identical except for one thing: how often the discriminator is
# updated. Both use small MLPs, the non-saturating loss, Adam with $\beta_1 = 0.5$
# (Radford et al. 2016), the same data order and the same number of generator updates.
#
# - **tuned**: Algorithm 1 with $k = 1$, one discriminator step per generator step;
# - **naive**: the generator takes five steps per discriminator step ("the generator
#   is what we want, so train it more"), for a fifth as many rounds: the same number
#   of generator updates as the tuned run, a fifth of the discriminator updates.
#
# The run prints the update counts each player actually took.
#
# Each run saves the samples of a fixed batch of noise every few steps.

# %%
toy_data = toy.sample(50_000, rng)
toy_noise = torch.randn(cfg["n_toy"], cfg["toy"]["z_dim"], generator=rng)  # fixed noise for snapshots and eval


def mlp(n_in, n_out, width, activation):
    """Three hidden layers: enough for eight modes."""
    return nn.Sequential(nn.Linear(n_in, width), activation(), nn.Linear(width, width), activation(),
                         nn.Linear(width, width), activation(), nn.Linear(width, n_out))


def toy_gan(width, z_dim, spectral_norm=False):
    genbook.seed_everything(0)
    D = mlp(2, 1, width, lambda: nn.LeakyReLU(0.2))
    return nn.ModuleDict({"G": mlp(z_dim, 2, width, nn.ReLU), "D": spectral_norm_critic(D) if spectral_norm else D})


def train_toy(setup):
    def train(gan):
        G, D = gan["G"], gan["D"]
        opt_G = genbook.adam(G.parameters(), setup["lr"], betas=(0.5, 0.999))  # Adam, fused where it can be
        opt_D = genbook.adam(D.parameters(), setup["lr"], betas=(0.5, 0.999))
        snapshots, noise = [], toy_noise[:500].to(device)

        def snapshot(count):
            if count % setup["snapshot_every"] == 0:
                with torch.no_grad():
                    snapshots.append((count, G(noise).cpu().tolist()))

        step = make_gan_step(G, D, opt_G, opt_D, z_dim=setup["z_dim"], generator_steps=setup["generator_steps"],
                             discriminator_steps=setup["discriminator_steps"], on_step=snapshot,
                             **(dict(d_loss=hinge_d_loss, g_loss=hinge_g_loss) if setup.get("loss") == "hinge" else {}))
        order = torch.Generator().manual_seed(0)  # the order of the minibatches
        data = genbook.batches(toy_data, batch_size=setup["batch_size"], generator=order, device=device)
        history = genbook.fit(step, data, setup["steps"], model=gan, log_every=50, desc=setup["name"])
        return {"history": history, "snapshots": snapshots, "updates": dict(step.updates)}

    gan = toy_gan(setup["width"], setup["z_dim"], setup.get("spectral_norm", False)).to(device)
    return genbook.load_or_train(gan, train, chapter="04_gan", name=f"toy_{setup['name']}", config=setup)


toy_runs, evaluation = {}, torch.Generator().manual_seed(1)  # fresh data for the metrics
for name in ("naive", "tuned"):
    setup = {**cfg["toy"], **cfg[name], "name": name}
    gan, info = train_toy(setup)
    with torch.no_grad():
        samples = gan["G"](toy_noise.to(device)).cpu()
    toy_runs[name] = dict(samples=samples, info=info, coverage=mode_coverage(samples, centres, toy_std),
                          mmd=mmd(samples, toy.sample(n, evaluation)))
mmd_real = mmd(toy.sample(n, evaluation), toy.sample(n, evaluation))
for name, run in toy_runs.items():
    updates = run["info"]["updates"]
    print(f"{name:>6}: {updates['G']} generator and {updates['D']} discriminator updates; {run['coverage']}; "
          f"counts per mode {run['coverage'].counts}; MMD² {run['mmd']:.4f}")
assert toy_runs["naive"]["info"]["updates"]["G"] == toy_runs["tuned"]["info"]["updates"]["G"]  # the one difference: D
print(f"  real: MMD² between two fresh samples of the mixture {mmd_real:.4f}")

# %% [markdown]
# The bar: the tuned setup covers at least 7 of the 8 modes. The naive one,
# whatever it does, must do worse (it collapses).

# %%
assert toy_runs["tuned"]["coverage"].covered >= 7, toy_runs["tuned"]["coverage"]
assert toy_runs["naive"]["coverage"].covered < toy_runs["tuned"]["coverage"].covered

# %%
n_snap = max(len(run["info"]["snapshots"]) for run in toy_runs.values())
fig, axes = plt.subplots(2, n_snap, figsize=(2.0 * n_snap, 4.5), sharex=True, sharey=True)
theta = torch.linspace(0, 2 * math.pi, 100)
for row, (name, run) in enumerate(toy_runs.items()):
    for col, (count, points) in enumerate(run["info"]["snapshots"]):
        ax = axes[row, col]
        points = torch.tensor(points)
        covered = mode_coverage(points, centres, toy_std).covered
        outside = (points.abs() > 3).any(1)  # drawn on the frame, as crosses
        ax.scatter(toy_data[:500, 0], toy_data[:500, 1], s=1, color="0.8")
        colour = "C3" if name == "naive" else "C0"
        ax.scatter(points[~outside, 0], points[~outside, 1], s=1, color=colour)
        ax.scatter(*points[outside].clamp(-2.9, 2.9).T, s=12, marker="x", color=colour)
        for c in centres:  # the 3σ circles of the coverage rule
            ax.plot(c[0] + 3 * toy_std * theta.cos(), c[1] + 3 * toy_std * theta.sin(), color="0.5", lw=0.5)
        ax.set_title(f"{name}, step {count}\n{covered}/8 modes, {outside.float().mean():.0%} off the frame",
                     fontsize=8)
        ax.set_xlim(-3, 3)
        ax.set_ylim(-3, 3)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    for col in range(len(run["info"]["snapshots"]), n_snap):
        axes[row, col].set_axis_off()
fig.suptitle("the same 500 noise vectors over training (grey: data; circles: 3σ around each mode)")
plt.tight_layout()
plt.show()

# %% [markdown]
# The naive generator's snapshots show the Helvetica scenario as it happens: at
# every moment its samples crowd into one small region, and the crowd jumps
# elsewhere when the discriminator catches up, at times onto a mode, at times
# between modes or off the data altogether. Where exactly it is at the last step is
# a matter of chance (it differs between machines); that it is never spread over
# the eight modes is not. The tuned generator first covers the whole ring, then
# concentrates its mass on the modes. Note that a single sample of the naive
# generator can look perfect: only the *distribution* is wrong, which is why GANs
# must be judged on many samples at once.
#
# ## The Wasserstein view
#
# Theorem 1 has a blind spot, and it is the usual situation in practice. When
# $p_\text{data}$ and $p_g$ have **disjoint supports** (two thin manifolds in a
# high-dimensional space almost never overlap), $D^*$ is 1 on the data and 0 on the
# samples, $\mathrm{JSD} = \log 2$ and $C(G) = -\log 4 + 2\log 2 = 0$ *however far
# apart* the two are: the divergence is flat, and its gradient tells the generator
# nothing (exercise 4.1's check contains this case). Arjovsky, Chintala & Bottou
# (2017) make it concrete with the simplest example: $p_\text{data} = \delta_0$,
# $p_\theta = \delta_\theta$. Then $\mathrm{JSD}(p_\text{data}\,\|\,p_\theta) = \log 2$ for
# every $\theta \ne 0$, while the **Wasserstein-1** (earth mover's) distance,
# the cost of moving one distribution's mass onto the other,
#
# $$
# W_1(p, q) = \inf_{\gamma \in \Pi(p, q)} \mathbb{E}_{(x, y)\sim\gamma} \|x - y\|
#           = \sup_{\|f\|_L \le 1} \mathbb{E}_{p} f - \mathbb{E}_{q} f, \tag{5}
# $$
#
# is $|\theta|$: it shrinks smoothly as the generator moves towards the data. The
# second form (Kantorovich–Rubinstein duality) turns the discriminator into a
# **critic** $f$ that outputs a score, not a probability, constrained to be
# 1-Lipschitz. We compute both divergences on a grid, the JSD from its definition and
# $W_1$ as $\int |F_p - F_q|\,dx$ (the 1-D closed form through the CDFs), checked
# against SciPy's independent implementation.

# %%
from scipy.stats import wasserstein_distance

grid_1d = torch.linspace(-2, 2, 401, dtype=torch.float64)  # support points; δ_θ sits on one of them
thetas = grid_1d[::20]


def point_mass(at):
    p = torch.zeros_like(grid_1d)
    p[(grid_1d - at).abs().argmin()] = 1.0
    return p


def jsd_discrete(p, q):
    m = (p + q) / 2
    return 0.5 * ((torch.xlogy(p, p) - torch.xlogy(p, m)).sum() + (torch.xlogy(q, q) - torch.xlogy(q, m)).sum()).item()


def w1_discrete(p, q):
    """∫ |F_p − F_q| dx on the grid (the 1-D closed form of eq. 5)."""
    return ((p.cumsum(0) - q.cumsum(0)).abs()[:-1] * grid_1d.diff()).sum().item()


p_zero = point_mass(0.0)
jsd_curve = [jsd_discrete(p_zero, point_mass(th)) for th in thetas]
w1_curve = [w1_discrete(p_zero, point_mass(th)) for th in thetas]
w1_scipy = [wasserstein_distance(grid_1d, grid_1d, p_zero, point_mass(th)) for th in thetas]
assert all(abs(a - b) < 1e-9 for a, b in zip(w1_curve, w1_scipy))  # our W1 = SciPy's
assert all(abs(w - abs(th)) < 1e-9 for w, th in zip(w1_curve, thetas.tolist()))  # W1 = |θ|
assert all(abs(j - math.log(2)) < 1e-12 for j, th in zip(jsd_curve, thetas.tolist()) if abs(th) > 1e-9)  # flat at log 2
print("θ:  ", [round(th, 1) for th in thetas.tolist()[::5]])
print("JSD:", [round(j, 4) for j in jsd_curve[::5]], f"(log 2 = {math.log(2):.4f})")
print("W1: ", [round(w, 4) for w in w1_curve[::5]])

fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(thetas, jsd_curve, "o-", ms=3, label=r"JSD$(\delta_0 \| \delta_\theta)$")
ax.plot(thetas, w1_curve, "s-", ms=3, label=r"$W_1(\delta_0, \delta_\theta)$")
ax.set_xlabel(r"$\theta$ (where the generator puts its mass)")
ax.legend(fontsize=8)
ax.set_title("disjoint supports: JSD is flat, W1 is not")
plt.tight_layout()
plt.show()

# %% [markdown]
# **Critics in practice.** WGAN trains a critic $f$ to maximise the dual form of
# eq. (5) and the generator to minimise $-\mathbb{E}_z f(G(z))$; the hard part is the
# Lipschitz constraint. Weight clipping (the original WGAN) is crude; the gradient
# penalty of Gulrajani et al. (2017) pushes $\|\nabla f\|$ towards 1 between data and
# samples; **spectral normalisation** (Miyato et al. 2018) divides each layer's
# weight by its largest singular value (estimated by one power iteration per step),
# which makes every linear layer 1-Lipschitz and the whole network at most
# 1-Lipschitz with LeakyReLU activations. It costs almost nothing, so it became the
# default, usually with the **hinge loss** (Lim & Ye 2017; Miyato et al. 2018):
#
# $$
# L_D = \mathbb{E}_x\big[\max(0, 1 - f(x))\big] + \mathbb{E}_z\big[\max(0, 1 + f(G(z)))\big],
# \qquad L_G = -\mathbb{E}_z f(G(z)).
# $$
#
# We train a spectrally normalised critic with the hinge loss on the eight Gaussians,
# in the two setups above (the same networks, data order and update counts), and
# measure it against the non-saturating GAN.

# %%
def hinge_d_loss(real_scores, fake_scores):
    """L_D of the hinge loss: scores of data pushed above 1, of samples below −1."""
    return F.relu(1 - real_scores).mean() + F.relu(1 + fake_scores).mean()


def hinge_g_loss(fake_scores):
    """L_G = −E f(G(z)): the generator raises the critic's score of its samples."""
    return -fake_scores.mean()


def spectral_norm_critic(critic):
    """Spectral normalisation (Miyato et al. 2018) on every linear layer of ``critic``."""
    for i, layer in enumerate(critic):
        if isinstance(layer, nn.Linear):
            critic[i] = torch.nn.utils.parametrizations.spectral_norm(layer)
    return critic


for name in ("naive", "tuned"):
    setup = {**cfg["toy"], **cfg[name], "name": f"sn_hinge_{name}", "loss": "hinge", "spectral_norm": True}
    gan, info = train_toy(setup)
    with torch.no_grad():
        samples = gan["G"](toy_noise.to(device)).cpu()
    toy_runs[f"SN + hinge, {name}"] = dict(samples=samples, info=info,
                                            coverage=mode_coverage(samples, centres, toy_std),
                                            mmd=mmd(samples, toy.sample(n, evaluation)))
print(f"{'setup':>22} {'G updates':>9} {'D updates':>9} {'modes':>5} {'high quality':>12} {'MMD²':>8}")
for name, run in toy_runs.items():
    print(f"{name:>22} {run['info']['updates']['G']:9d} {run['info']['updates']['D']:9d} "
          f"{run['coverage'].covered:5d} {run['coverage'].high_quality:12.3f} {run['mmd']:8.4f}")
print(f"{'real':>22} {'':9} {'':9} {'8':>5} {'':12} {mmd_real:8.4f}")

fig, axes = plt.subplots(1, 4, figsize=(12, 3.2), sharex=True, sharey=True)
for ax, (name, run) in zip(axes, toy_runs.items()):
    ax.scatter(toy_data[:500, 0], toy_data[:500, 1], s=1, color="0.8")
    ax.scatter(*run["samples"][:500].clamp(-2.9, 2.9).T, s=1)
    ax.set_title(f"{name}\n{run['coverage'].covered}/8 modes, MMD² {run['mmd']:.3f}", fontsize=8)
    ax.set_xlim(-3, 3)
    ax.set_ylim(-3, 3)
    ax.set_aspect("equal")
plt.tight_layout()
plt.show()

# %% [markdown]
# The table holds what this run measured; read it row by row. The interesting
# comparison is within each setup (the same update counts): does the Lipschitz
# critic with the hinge loss keep more modes, or a lower MMD², than the
# non-saturating GAN, and does it survive the naive schedule that collapses the
# non-saturating generator? The cell below states it from the numbers.

# %%
for setup_name in ("tuned", "naive"):
    ns, sn = toy_runs[setup_name], toy_runs[f"SN + hinge, {setup_name}"]
    print(f"{setup_name}: SN + hinge covers {sn['coverage'].covered} modes vs {ns['coverage'].covered} "
          f"(non-saturating); MMD² {sn['mmd']:.4f} vs {ns['mmd']:.4f} (real {mmd_real:.4f}): "
          + ("better on both" if sn["coverage"].covered >= ns["coverage"].covered and sn["mmd"] < ns["mmd"] else
             "worse on both" if sn["coverage"].covered <= ns["coverage"].covered and sn["mmd"] > ns["mmd"] else
             "mixed"))

# %% [markdown]
# Whatever the verdict above, note what was held fixed: one critic step per generator
# step, the learning rate and the number of updates tuned for the non-saturating GAN.
# Miyato et al. (2018) train spectrally normalised critics with several critic steps per
# generator step and their own learning rates; a constraint that makes the critic smoother
# also makes it slower to learn, and at a small fixed budget that can cost more than it
# saves. Exercise 4.6 asks you to give the critic its own schedule.

# %% [markdown]
# ## DCGAN on Fashion-MNIST
#
# Early GANs used fully connected networks and were hard to train on images.
# Radford, Metz & Chintala (2016) found a convolutional architecture that trains
# reliably, through a set of guidelines:
#
# 1. **No pooling: strided convolutions in $D$, fractionally-strided (transposed)
#    convolutions in $G$.** The networks learn their own down- and up-sampling.
# 2. **Batch normalisation in both networks**, except at $G$'s output and $D$'s
#    input. Normalising every layer's inputs stabilises learning, helps gradients
#    through deep generators, and (the paper reports) keeps $G$ from collapsing all
#    samples to one point.
# 3. **No fully connected hidden layers.** $z$ is projected and reshaped to a small
#    stack of feature maps; $D$'s last feature maps go straight to one logit.
# 4. **ReLU in $G$, tanh at its output**: a bounded output saturates quickly and
#    covers the pixel range $[-1, 1]$ of the data.
# 5. **LeakyReLU (slope 0.2) in $D$**: gradients flow back to $G$ even through
#    units that are off, which a ReLU would block.
#
# Training details from the same paper: Adam with $\beta_1 = 0.5$ (the default 0.9
# made training oscillate) and weights initialised from $\mathcal{N}(0, 0.02^2)$.
# The paper found a learning rate of $10^{-3}$ too high and used $2\cdot10^{-4}$,
# which is what the full profile uses. The fast profile has about a thousand steps
# on a CPU; its narrow networks, with the averaged generator (EMA) we sample from,
# train well at $2\cdot10^{-3}$, and the bars below check that they did.
#
# At 28×28 the generator goes $z \to 7\times7 \to 14\times14 \to 28\times28$ and
# the discriminator back down. From scratch:

# %%
class Generator(nn.Module):
    """DCGAN generator: z (B, z_dim) -> images (B, 1, 28, 28) in [-1, 1]."""

    def __init__(self, z_dim, width):
        super().__init__()
        w = width
        self.project = nn.Sequential(  # guideline 3: project and reshape, no hidden fully connected layer
            nn.Linear(z_dim, 2 * w * 7 * 7, bias=False), nn.Unflatten(1, (2 * w, 7, 7)),
            nn.BatchNorm2d(2 * w), nn.ReLU(),  # (B, 2w, 7, 7); guidelines 2 and 4
        )
        self.upsample = nn.Sequential(  # guideline 1: transposed convolutions double the resolution
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),  # 14x14
            nn.ConvTranspose2d(w, 1, 4, stride=2, padding=1), nn.Tanh(),  # (B, 1, 28, 28); no BN at the output
        )

    def forward(self, z):
        return self.upsample(self.project(z))


class Discriminator(nn.Module):
    """DCGAN discriminator: images (B, 1, 28, 28) -> logits (B,)."""

    def __init__(self, width):
        super().__init__()
        w = width
        self.features = nn.Sequential(  # guideline 1: strided convolutions halve the resolution
            nn.Conv2d(1, w, 4, stride=2, padding=1), nn.LeakyReLU(0.2),  # (B, w, 14, 14); no BN at the input
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2),
            nn.Flatten(),  # (B, 2w·7·7)
        )
        self.out = nn.Linear(2 * w * 7 * 7, 1)  # guideline 3: features straight to one logit

    def forward(self, x):
        return self.out(self.features(x)).squeeze(1)


setup = cfg["dcgan"]
G_scratch, D_scratch = Generator(setup["z_dim"], setup["width"]), Discriminator(setup["width"])
z = torch.randn(16, setup["z_dim"], generator=rng)
print("G:", tuple(z.shape), "->", tuple(G_scratch(z).shape), "| D:", tuple(G_scratch(z).shape), "->",
      tuple(D_scratch(G_scratch(z)).shape))
print(f"parameters: G {sum(p.numel() for p in G_scratch.parameters()):,}, "
      f"D {sum(p.numel() for p in D_scratch.parameters()):,}")

# %% [markdown]
# genbook's `DCGANGenerator` and `DCGANDiscriminator` are the same networks (plus
# the optional class conditioning we use later). Loading our weights into them must
# give identical outputs, in training mode (batch statistics) and in evaluation
# mode (running statistics):

# %%
G_genbook, D_genbook = DCGANGenerator(setup["z_dim"], setup["width"]), DCGANDiscriminator(setup["width"])
G_genbook.load_state_dict(G_scratch.state_dict())
D_genbook.load_state_dict(D_scratch.state_dict())
for mode in ("train", "eval"):
    for net in (G_scratch, D_scratch, G_genbook, D_genbook):
        net.train(mode == "train")
    with torch.no_grad():
        images = G_scratch(z)
        assert torch.allclose(images, G_genbook(z), atol=1e-6)
        assert torch.allclose(D_scratch(images), D_genbook(images), atol=1e-5)
print("scratch DCGAN == genbook DCGAN (train and eval mode)")

# %% [markdown]
# Training uses `make_gan_step` unchanged. The diagnostics: the step saves the
# images of 20 fixed noise vectors every few hundred steps, so we can watch the
# same $z$ turn into clothes; `fit` logs both players' losses and their verdicts
# $D(x)$ and $D(G(z))$.

# %%
x_train, y_train = fashion_mnist("train")


def to_pixels(images):
    """[-1, 1] floats -> 0..255 ints (plain lists store compactly in a checkpoint)."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().tolist()


def from_pixels(pixels):
    return torch.tensor(pixels, dtype=torch.float32) / 127.5 - 1


def train_image_gan(setup, num_classes=None):
    def train(gan):
        G, D = gan["G"], gan["D"]
        G_average = gan["G_ema"].model  # the generator we sample from
        # genbook.adam: the same Adam update, fused into one kernel over each player's parameters where it can
        opt_G = genbook.adam(G.parameters(), setup["lr"], betas=(0.5, 0.999))
        opt_D = genbook.adam(D.parameters(), setup["lr"], betas=(0.5, 0.999))
        fixed_z = torch.randn(20, setup["z_dim"], generator=torch.Generator().manual_seed(1)).to(device)
        fixed_y = (torch.arange(20) % 10).to(device) if num_classes else None
        snapshots = []

        def snapshot(count):
            if count % setup["snapshot_every"] == 0 or count == 1:
                G_average.eval()
                with torch.no_grad():
                    snapshots.append((count, to_pixels(G_average(fixed_z, fixed_y))))

        step = make_gan_step(G, D, opt_G, opt_D, z_dim=setup["z_dim"], ema=gan["G_ema"], on_step=snapshot,
                             g_loss=setup.get("g_loss", "non_saturating"))  # a g_loss in the settings (Ex. 4.4) is used
        tensors = (x_train, y_train) if num_classes else (x_train,)
        order = torch.Generator().manual_seed(0)  # the order of the minibatches
        data = genbook.batches(*tensors, batch_size=setup["batch_size"], generator=order, device=device)
        start = time.perf_counter()
        history = genbook.fit(step, data, setup["steps"], model=gan, log_every=25, desc=setup["name"])
        return {"history": history, "snapshots": snapshots, "train_seconds": time.perf_counter() - start}

    genbook.seed_everything(0)
    gan = nn.ModuleDict({"G": DCGANGenerator(setup["z_dim"], setup["width"], num_classes),
                         "D": DCGANDiscriminator(setup["width"], num_classes)})
    gan.apply(dcgan_init)  # weights ~ N(0, 0.02²), as Radford et al.
    gan["G_ema"] = genbook.EMA(gan["G"], decay=setup["ema"])  # saved and loaded with the two players
    return genbook.load_or_train(gan.to(device), train, chapter="04_gan", name=setup["name"], config=setup)


dcgan, dcgan_info = train_image_gan({**cfg["dcgan"], "name": "dcgan"})
G = dcgan["G_ema"].model.eval()
print("loaded from cache" if dcgan_info["cached"] else f"trained in {dcgan_info['train_seconds']:.0f} s")

# %% [markdown]
# ### How good is it? The book's image protocol
#
# We draw samples and measure them the way every Fashion-MNIST chapter of this book
# does (`genbook.metrics.evaluate_fashion`, at the same $n$ everywhere), so the
# numbers here can be set beside the diffusion and flow chapters':
#
# - the **Fréchet distance** (FD) to real test images in the feature space of
#   genbook's Fashion-MNIST classifier, with a bootstrap interval that says how much
#   it moves between sample sets at this $n$. This is the recipe of FID (Heusel et al.
#   2017) with a different feature network, so the numbers are *not* comparable with
#   published FIDs;
# - **precision** and **recall** (Kynkäänniemi et al. 2019) in the same feature
#   space: the fraction of samples that land near real images, and of real images
#   that land near samples. Mode collapse shows as high precision with low recall.
#   (The "high quality" fraction of the 2D experiment was a precision of this kind.)
#
# Three baselines, computed in this run at the same $n$, frame the FD:
#
# - **real vs real**: training images against the test images, the floor;
# - **blurred data**: training images blurred by a Gaussian of σ = 1 px, real content
#   without its fine detail;
# - **PCA-Gaussian**: a Gaussian on the top 32 principal components of the
#   training images, the simplest generative model with a density.
#
# The samples are drawn with `timed_sampling`, whose clock covers the sampling alone,
# and saved with `save_samples` for the book's final comparison.
#
# The bar: the DCGAN's FD is at most half the PCA-Gaussian's.

# %%
n_eval = n_eval_images()  # the same n in every Fashion-MNIST chapter
evaluator = fashion_evaluator(device)
reference = reference_images(n_eval)
baselines = image_baselines(n_eval, evaluator=evaluator)


def sample_dcgan(b, noise_generator):
    with genbook.autocast(device):
        return G(torch.randn(b, cfg["dcgan"]["z_dim"], generator=noise_generator, device=device)).float()


timed_sampling(sample_dcgan, 100, batch_size=100, nfe=1, device=device)  # a warm-up call, not timed for the record
dcgan_samples, dcgan_cost = timed_sampling(sample_dcgan, n_eval, batch_size=n_eval, nfe=1, device=device, seed=2)
save_samples("04_gan", "gan", dcgan_samples, cost=dcgan_cost, steps=cfg["dcgan"]["steps"],
             training=dcgan_info.get("training"))
dcgan_eval = evaluate_fashion(dcgan_samples, n=n_eval, evaluator=evaluator)
pca_samples = fit_pca_gaussian(32).sample(n_eval, torch.Generator().manual_seed(0))
fd = {
    "DCGAN": dcgan_eval["fd"],
    "PCA-Gaussian": baselines["fd_pca_gaussian"],
    "blurred data": baselines["fd_blurred"],
    "real vs real": baselines["fd_real_vs_real"],
}
print(f"FD at n = {n_eval}:")
for name, fd_value in fd.items():
    interval = f" ± {dcgan_eval['fd_ci']:.2f}" if name == "DCGAN" else ""
    print(f"  {name:>13} {fd_value:8.2f}{interval}")
print(f"DCGAN precision {dcgan_eval['precision']:.3f}, recall {dcgan_eval['recall']:.3f}")
print(f"DCGAN / PCA-Gaussian = {fd['DCGAN'] / fd['PCA-Gaussian']:.2f} (bar: at most 0.5); "
      f"{fd['DCGAN'] / fd['real vs real']:.1f} × the real-vs-real floor; "
      f"{fd['DCGAN'] - fd['blurred data']:+.2f} from blurred data")
print(f"sampling: {dcgan_cost['ms_per_image']:.3f} ms per image, NFE {dcgan_cost['nfe']} (one forward pass)")

# %%
assert fd["DCGAN"] <= 0.5 * fd["PCA-Gaussian"], fd

# %% [markdown]
# ### Diagnostics
#
# **Losses.** A GAN's losses do not go down the way a classifier's do: each
# player's loss is the other's gain. At the game's equilibrium $D = \tfrac12$
# everywhere, so $-V = \log 4 \approx 1.39$ for the discriminator and $\log 2 \approx 0.69$
# for the non-saturating generator (dashed lines). What to look for is that neither
# player wins: a discriminator loss falling to 0, with $D(x) \to 1$ and
# $D(G(z)) \to 0$, means $G$ gets no useful signal.

# %%
def plot_game(info, title):
    fig, (ax_loss, ax_d) = plt.subplots(1, 2, figsize=(10, 3))
    history = info["history"]
    genbook.plot_losses({k: history[k] for k in ("loss_D", "loss_G")}, ax=ax_loss, title=f"{title}: losses")
    ax_loss.axhline(math.log(4), color="C0", ls="--", lw=0.8)
    ax_loss.axhline(math.log(2), color="C1", ls="--", lw=0.8)
    genbook.plot_losses({k: history[k] for k in ("D(x)", "D(G(z))")}, ax=ax_d, title=f"{title}: D's verdicts")
    ax_d.axhline(0.5, color="0.5", ls="--", lw=0.8)
    plt.tight_layout()
    plt.show()


plot_game(dcgan_info, "DCGAN")

# %% [markdown]
# **A fixed-noise grid over training.** The same ten noise vectors, rendered at
# several points of training (rows), show how the generator organises: a flat grey
# at the first step (the untrained network outputs about 0), then blurred
# silhouettes, then garments with edges and texture. Because we draw from the
# averaged generator, consecutive rows change smoothly.

# %%
def snapshot_grid(info, columns=10, title=""):
    frames = [from_pixels(pixels)[:columns] for _, pixels in info["snapshots"]]
    genbook.show_images(torch.cat(frames), nrow=columns, title=title)
    plt.show()
    print("rows: steps", [count for count, _ in info["snapshots"]])


snapshot_grid(dcgan_info, title="DCGAN: fixed noise over training (one row per snapshot)")

# %% [markdown]
# **What the model draws: the class histogram.** An unconditional GAN is never
# told the classes, so the evaluator classifies its samples. Real test images
# spread evenly over the ten classes; a generator that drops a mode shows a missing
# bar, one that collapses a tall one. We summarise the histogram by its total
# variation distance to the real one, $\tfrac12\sum_c |p_c - q_c|$.

# %%
def class_frequencies(images):
    return torch.bincount(evaluator.predict(images), minlength=10).double() / len(images)


frequencies = {"real test": class_frequencies(reference), "DCGAN": class_frequencies(dcgan_samples),
               "PCA-Gaussian": class_frequencies(pca_samples)}
class_tv = {name: 0.5 * (f - frequencies["real test"]).abs().sum().item() for name, f in frequencies.items()}
fig, ax = plt.subplots(figsize=(9, 3))
for k, (name, f) in enumerate(frequencies.items()):
    ax.bar(torch.arange(10) + 0.27 * (k - 1), f, width=0.27, label=f"{name} (TV {class_tv[name]:.2f})")
ax.set_xticks(range(10), CLASS_NAMES, rotation=30, fontsize=8)
ax.set_ylabel("fraction of samples")
ax.set_title("classes of unconditional samples, as the evaluator sees them")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
print("DCGAN class frequencies:", [round(v, 3) for v in frequencies["DCGAN"].tolist()])
assert class_tv["DCGAN"] < class_tv["PCA-Gaussian"], class_tv

# %%
genbook.show_images(dcgan_samples[:64], nrow=16, title="DCGAN samples")
plt.show()

# %% [markdown]
# **Walking in latent space.** Radford et al. (2016, sec. 6.1) show that a trained
# generator maps a path between two noise vectors to a smooth sequence of images:
# the generator has organised its input space, it has not memorised a lookup table
# of training images (which would jump). Because a Gaussian $z$ in many dimensions
# lies near a sphere of radius $\sqrt{d}$, we walk along the great circle
# between the two ends (spherical interpolation, White 2016) rather than along the
# straight chord, which would pass through lower-norm vectors $G$ rarely saw.

# %%
def slerp(z0, z1, w):
    """Spherical interpolation between rows of z0 and z1 (B, d) at weights w (W,) -> (B, W, d)."""
    omega = torch.arccos((F.normalize(z0, dim=1) * F.normalize(z1, dim=1)).sum(1).clamp(-1, 1))[:, None, None]  # (B,1,1)
    w = w[None, :, None]  # (1, W, 1)
    return (torch.sin((1 - w) * omega) * z0[:, None] + torch.sin(w * omega) * z1[:, None]) / torch.sin(omega)


z_ends = torch.randn(2, 6, cfg["dcgan"]["z_dim"], generator=torch.Generator().manual_seed(4))  # 6 pairs of ends
path_z = slerp(z_ends[0], z_ends[1], torch.linspace(0, 1, 10)).reshape(-1, cfg["dcgan"]["z_dim"])  # (60, d)
with torch.no_grad():
    walk = G(path_z.to(device)).cpu()
genbook.show_images(walk, nrow=10, title="DCGAN: spherical interpolation between two noise vectors (one row each)")
plt.show()

# %% [markdown]
# ## Sampling speed: one forward pass
#
# A GAN generates a batch with a single call of $G$: one network evaluation per
# image (NFE = 1), which puts it among the fastest samplers there are (a VAE's
# decoder, a normalizing flow and a diffusion model distilled to one step are
# single-pass too). Every chapter of the book measures sampling cost the same way,
# with `genbook.metrics.timed_sampling`: milliseconds per image at a stated NFE, the
# clock around the sampling alone. We repeat the timing of the samples above a few
# times and keep the median; `genbook.report` files it under timings (it depends on
# the machine), so the diffusion chapter, which needs tens to hundreds of network
# calls per image, and the flow-matching chapter can compare on the same machine.

# %%
ms_per_image = statistics.median(
    [dcgan_cost["ms_per_image"]]
    + [timed_sampling(sample_dcgan, n_eval, batch_size=n_eval, nfe=1, device=device, seed=2)[1]["ms_per_image"]
       for _ in range(4)])
speed = 1000 / ms_per_image
print(f"DCGAN: {ms_per_image:.3f} ms per image, {speed:,.0f} images per second on {device} "
      f"({torch.get_num_threads()} CPU threads), NFE 1")

# %% [markdown]
# ## A conditional GAN
#
# A DCGAN draws *some* piece of clothing; often we want to say which. Mirza &
# Osindero (2014) give both players the condition $y$:
#
# $$
# \min_G \max_D \; \mathbb{E}_{(x, y) \sim p_\text{data}}\big[\log D(x \mid y)\big]
#   + \mathbb{E}_{z \sim p_z,\, y \sim p(y)}\big[\log\big(1 - D(G(z \mid y) \mid y)\big)\big]. \tag{4}
# $$
#
# The discriminator now asks "is this a real image *of class $y$*?", so a generator
# that draws a good sneaker when asked for a bag is caught. In genbook's DCGAN the
# generator reads a learned embedding of $y$ next to $z$ (Mirza & Osindero feed a
# one-hot $y$ to both networks), and the discriminator is a **projection
# discriminator** (Miyato & Koyama 2018):
#
# $$
# \ell(x, y) = w^\top \phi(x) + b + v_y^\top \phi(x),
# $$
#
# where $\phi(x)$ are $D$'s last features and $v_y$ a learned vector per class. The
# form follows from eq. (2): the optimal logit is
# $\log p_\text{data}(x \mid y) / p_g(x \mid y)$, which splits into a part that
# ignores $y$ and a log-ratio of class posteriors, linear in $\phi(x)$ when those
# posteriors are softmax classifiers on $\phi$.
#
# The same idea made the first text-to-image GANs: Reed et al. (2016) replace the
# class embedding by an embedding of a sentence, concatenated with $z$ in the
# generator and with $D$'s feature maps in the discriminator, and also show $D$ real
# images with *mismatched* text as fakes, so that it learns to check the text.
#
# The training step is `make_gan_step` again: it passes the minibatch labels to
# both players.

# %%
cgan, cgan_info = train_image_gan({**cfg["cgan"], "name": "cgan"}, num_classes=10)
G_cond = cgan["G_ema"].model.eval()
print("loaded from cache" if cgan_info["cached"] else f"trained in {cgan_info['train_seconds']:.0f} s")

# %% [markdown]
# We ask for every class equally often and let the evaluator judge: the
# **conditional accuracy** is the fraction of samples it assigns to the requested
# class; chance is 10%. The evaluator's accuracy on real test images is a
# *reference*, not a ceiling: a generator that draws one prototypical, easily
# classified image per class can exceed it. Such a generator has collapsed *within*
# each class, the failure this chapter is about, and accuracy cannot see it. So we
# also measure, class by class, the **recall** of the samples of class $c$ against
# the real test images of class $c$ (Kynkäänniemi et al. 2019, in the evaluator's
# features): the fraction of real images of the class that lie near some sample.
# References at the same per-class counts: real training images of the class (what
# a perfect generator would get at this small $n$), a generator collapsed within each
# class (one of its own, correctly classified, samples per class, repeated), and the unconditional DCGAN's
# samples grouped by the class the evaluator assigns them.
#
# The bars: conditional accuracy at least 70%; the conditional GAN's FD at most half
# the PCA-Gaussian's, as for the DCGAN; and a mean per-class recall above the
# collapsed generator's. The cell after them says how far from real images it is.

# %%
requested = torch.arange(n_eval) % 10  # every class equally often


labels_done = [0]  # how many of the requested labels have been drawn


def sample_cgan(b, noise_generator):
    y = requested[labels_done[0]:labels_done[0] + b].to(device)
    labels_done[0] += b
    return G_cond(torch.randn(b, cfg["cgan"]["z_dim"], generator=noise_generator, device=device), y)


cgan_samples, cgan_cost = timed_sampling(sample_cgan, n_eval, batch_size=n_eval, nfe=1, device=device, seed=2)
save_samples("04_gan", "cgan", cgan_samples, cost=cgan_cost, labels=requested, steps=cfg["cgan"]["steps"],
             training=cgan_info.get("training"))
cgan_eval = evaluate_fashion(cgan_samples, n=n_eval, evaluator=evaluator, labels=requested)
accuracy = cgan_eval["accuracy"]
real_labels = fashion_mnist("test", n=n_eval)[1]
real_accuracy = conditional_accuracy(reference, real_labels, evaluator=evaluator)
fd["conditional GAN"] = cgan_eval["fd"]
print(f"conditional accuracy: {accuracy:.3f} (real test images {real_accuracy:.3f}, chance 0.100)")
print(f"conditional GAN FD: {cgan_eval['fd']:.2f} ± {cgan_eval['fd_ci']:.2f} (PCA-Gaussian {fd['PCA-Gaussian']:.2f}, "
      f"blurred data {fd['blurred data']:.2f}); precision {cgan_eval['precision']:.3f}, recall {cgan_eval['recall']:.3f}")
per_class = [(evaluator.predict(cgan_samples[requested == c]) == c).double().mean().item() for c in range(10)]
print("accuracy per class:", {CLASS_NAMES[c]: round(a, 2) for c, a in enumerate(per_class)})

# %%
train_x, train_y = train_sample(n_eval, seed=1)
cgan_classes = evaluator.predict(cgan_samples)
prototypes = torch.stack([cgan_samples[(requested == c) & (cgan_classes == c)][0] for c in range(10)])  # (10, 1, 28, 28)
collapsed = prototypes[requested]  # one well-classified image per class, repeated
real_features, fake_features = evaluator.features(reference), evaluator.features(cgan_samples)
train_features, collapsed_features = evaluator.features(train_x), evaluator.features(collapsed)
dcgan_features, dcgan_classes = evaluator.features(dcgan_samples), evaluator.predict(dcgan_samples)
class_recall = {"conditional GAN": [], "real training images": [], "collapsed within class": [],
                "DCGAN (by evaluator class)": []}
for c in range(10):
    real_c = real_features[real_labels == c]
    for name, feats in (("conditional GAN", fake_features[requested == c]),
                        ("real training images", train_features[train_y == c]),
                        ("collapsed within class", collapsed_features[requested == c]),
                        ("DCGAN (by evaluator class)", dcgan_features[dcgan_classes == c])):
        class_recall[name].append(precision_recall(real_c, feats[: len(real_c)])["recall"] if len(feats) > 3 else 0.0)
mean_class_recall = {name: statistics.mean(values) for name, values in class_recall.items()}
collapsed_accuracy = conditional_accuracy(collapsed, requested, evaluator=evaluator)
for name, values in class_recall.items():
    print(f"{name:>22}: mean per-class recall {mean_class_recall[name]:.3f} "
          f"(per class {[round(v, 2) for v in values]})")
print(f"the collapsed generator's conditional accuracy: {collapsed_accuracy:.3f} (the bar is 0.70)")

# %%
assert accuracy >= 0.70, accuracy
assert cgan_eval["fd"] <= 0.5 * fd["PCA-Gaussian"], (cgan_eval, fd)
assert mean_class_recall["conditional GAN"] > mean_class_recall["collapsed within class"], mean_class_recall
assert mean_class_recall["collapsed within class"] < 0.5 * mean_class_recall["real training images"]  # caught
assert collapsed_accuracy >= 0.70  # ... while accuracy alone passes it

# %%
ratio = mean_class_recall["conditional GAN"] / mean_class_recall["real training images"]
print(f"per-class recall: conditional GAN {mean_class_recall['conditional GAN']:.3f}, "
      f"{ratio:.0%} of real images' {mean_class_recall['real training images']:.3f}; the unconditional DCGAN, "
      f"grouped by the evaluator's class: {mean_class_recall['DCGAN (by evaluator class)']:.3f}")

# %% [markdown]
# Read these numbers against the bars. The conditional GAN passes the accuracy bar
# comfortably, and so does the generator that draws one image per class; per-class
# recall separates those two. But it also shows that this conditional GAN has largely
# collapsed *within* its classes: its per-class recall is a small fraction of real
# images' and of the unconditional DCGAN's, while its precision is high (both printed
# above; the assert below checks that this is what the run measured). It draws
# convincing garments of the requested class, but few kinds of each, and accuracy,
# which it passes at about the level of real test images (both printed above), sees none of it.
# High accuracy with low per-class recall is the signature of within-class collapse;
# it is the number to watch when you train longer or change the conditioning.

# %%
assert mean_class_recall["conditional GAN"] < 0.5 * mean_class_recall["DCGAN (by evaluator class)"], mean_class_recall
assert cgan_eval["precision"] > dcgan_eval["precision"] and cgan_eval["recall"] < dcgan_eval["recall"]
# %%
rows = torch.arange(10).repeat_interleave(10)
z_grid = torch.randn(10, cfg["cgan"]["z_dim"], generator=torch.Generator().manual_seed(3)).repeat(10, 1)  # the same z in every row
with torch.no_grad():
    grid = G_cond(z_grid.to(device), rows.to(device)).cpu()
genbook.show_images(grid, nrow=10, title="conditional GAN: one row per class, one noise vector per column")
plt.show()
print("rows:", ", ".join(CLASS_NAMES))

# %%
plot_game(cgan_info, "conditional GAN")

# %% [markdown]
# Within a column the noise is fixed and only the class changes: the noise
# carries what the classes share (brightness, size, pose), the label carries
# which garment it is.
#
# ## Results
#
# Every number below was computed in this run and is stored by `genbook.report`
# in `_build/results/04_gan.json`, next to the baselines.

# %%
record = genbook.report(
    "04_gan",
    metrics={
        "dcgan_fd": fd["DCGAN"],
        "cgan_conditional_accuracy": accuracy,
        "cgan_fd": fd["conditional GAN"],
        "modes_covered_tuned": toy_runs["tuned"]["coverage"].covered,
        "modes_covered_naive": toy_runs["naive"]["coverage"].covered,
        "high_quality_tuned": toy_runs["tuned"]["coverage"].high_quality,
        "high_quality_naive": toy_runs["naive"]["coverage"].high_quality,
        "toy_mmd_tuned": toy_runs["tuned"]["mmd"],
        "toy_mmd_naive": toy_runs["naive"]["mmd"],
        "dcgan_class_tv": class_tv["DCGAN"],
        "fd_ci": dcgan_eval["fd_ci"],
        "precision": dcgan_eval["precision"],
        "recall": dcgan_eval["recall"],
        "cgan_fd_ci": cgan_eval["fd_ci"],
        "cgan_precision": cgan_eval["precision"],
        "cgan_recall": cgan_eval["recall"],
        "cgan_mean_class_recall": mean_class_recall["conditional GAN"],
        "toy_updates_G_naive": toy_runs["naive"]["info"]["updates"]["G"],
        "toy_updates_D_naive": toy_runs["naive"]["info"]["updates"]["D"],
        "toy_updates_G_tuned": toy_runs["tuned"]["info"]["updates"]["G"],
        "toy_updates_D_tuned": toy_runs["tuned"]["info"]["updates"]["D"],
        **{f"modes_covered_sn_hinge_{k}": toy_runs[f"SN + hinge, {k}"]["coverage"].covered for k in ("naive", "tuned")},
        **{f"toy_mmd_sn_hinge_{k}": toy_runs[f"SN + hinge, {k}"]["mmd"] for k in ("naive", "tuned")},
        "w1_at_theta_1": w1_curve[thetas.sub(1).abs().argmin()],
    },
    baselines={
        "pca_gaussian_fd": fd["PCA-Gaussian"],
        "real_vs_real_fd": fd["real vs real"],
        **baselines,  # fd_real_vs_real, fd_pca_gaussian, fd_blurred: the protocol's names
        "real_mean_class_recall": mean_class_recall["real training images"],
        "collapsed_mean_class_recall": mean_class_recall["collapsed within class"],
        "real_test_accuracy": real_accuracy,
        "chance_accuracy": 0.1,
        "toy_mmd_real": mmd_real,
        "pca_gaussian_class_tv": class_tv["PCA-Gaussian"],
    },
    timings={"samples_per_second": speed, "ms_per_image": ms_per_image, "cgan_ms_per_image": cgan_cost["ms_per_image"]},
    n_eval=n_eval,
    samples_per_second_device=str(device),
)
for kind in ("metrics", "baselines", "timings"):
    print(kind)
    for key, val in record[kind].items():
        print(f"  {key:<28} {val:10.4g}")

# %% [markdown]
# ## Exercises
#
# **Exercise 4.1: the value at the optimum.** For distributions on finitely many
# points, write `value_at_optimum(p_data, p_model)` that returns $C(G) = V(D^*, G)
# = \sum_x p_\text{data}(x)\log D^*(x) + p_g(x)\log(1 - D^*(x))$ with $D^*$ from
# eq. (2), as a 0-d tensor. The check compares it with $-\log 4 + 2\,\mathrm{JSD}$
# (Theorem 1), also for distributions with zeros: there $0 \cdot \log 0 = 0$, which
# `torch.xlogy` computes and `p * torch.log(d)` does not.

# %% tags=["exercise"]
def value_at_optimum(p_data, p_model):
    """V(D*, G) for probability vectors p_data, p_model of shape (K,); a 0-d tensor."""
    # BEGIN SOLUTION
    d_star = p_data / (p_data + p_model)  # eq. 2
    return (torch.xlogy(p_data, d_star) + torch.xlogy(p_model, 1 - d_star)).sum()
    # END SOLUTION


# %%
from genbook.exercises.gan import check_feature_matching_loss, check_smoothed_discriminator_loss, check_value_at_optimum

check_value_at_optimum(value_at_optimum)
uniform = torch.full((4,), 0.25, dtype=torch.float64)
print(f"p_g = p_data: {value_at_optimum(uniform, uniform):.4f} = -log 4 = {-math.log(4):.4f}")

# %% [markdown]
# **Exercise 4.2: one-sided label smoothing.** Salimans et al. (2016, sec. 3.4)
# keep the discriminator from becoming over-confident by training it towards
# $\alpha = 0.9$ instead of 1 on real data, while samples keep the target 0 (smoothing
# that target too would reward $G$ for staying where it is). Write
# `smoothed_discriminator_loss(real_logits, fake_logits, alpha)`
# $= -\operatorname{mean}[\alpha \log D(x) + (1-\alpha)\log(1 - D(x))] - \operatorname{mean}\log(1 - D(G(z)))$,
# stable for logits of any size.

# %% tags=["exercise"]
def smoothed_discriminator_loss(real_logits, fake_logits, alpha=0.9):
    """Discriminator loss with real targets alpha and fake targets 0; a scalar tensor."""
    # BEGIN SOLUTION
    real_term = alpha * F.logsigmoid(real_logits) + (1 - alpha) * F.logsigmoid(-real_logits)
    return -real_term.mean() - F.logsigmoid(-fake_logits).mean()
    # END SOLUTION


# %%
check_smoothed_discriminator_loss(smoothed_discriminator_loss)
print("alpha = 1 gives back discriminator_loss:",
      torch.allclose(smoothed_discriminator_loss(real_logits, fake_logits, 1.0),
                     discriminator_loss(real_logits, fake_logits)))

# %% [markdown]
# **Exercise 4.3: feature matching.** Salimans et al. (2016, sec. 3.1) give the
# generator a target that does not move as fast as $D$'s verdict: match the mean of
# the discriminator's features $f$ on data, $\big\|\mathbb{E}_x f(x) - \mathbb{E}_z f(G(z))\big\|_2^2$.
# Write `feature_matching_loss(real_features, fake_features)` for feature batches
# (B, F) and (B', F).

# %% tags=["exercise"]
def feature_matching_loss(real_features, fake_features):
    """‖mean of real features − mean of fake features‖², a scalar tensor."""
    # BEGIN SOLUTION
    return (real_features.mean(0) - fake_features.mean(0)).pow(2).sum()
    # END SOLUTION


# %%
check_feature_matching_loss(feature_matching_loss)
with torch.no_grad():
    phi_real = dcgan["D"].features(reference[:500].to(device))
    phi_fake = dcgan["D"].features(dcgan_samples[:500].to(device))
print(f"feature matching loss of the trained DCGAN: {feature_matching_loss(phi_real, phi_fake).item():.4f}")

# %% [markdown]
# **Exercise 4.4 (no check): the saturating loss.** Train the DCGAN with
# `g_loss="minimax"`: add `g_loss="minimax"` to `cfg["dcgan"]` (`train_image_gan` passes
# it to `make_gan_step`, and a changed setting trains a new checkpoint). Plot $D(G(z))$ over the first few hundred steps and
# compare with the non-saturating run. Where does the gradient figure of this
# chapter predict the difference, and does the FD agree?
#
# **Exercise 4.5 (no check): curing the naive setup.** Keep five generator steps
# per discriminator step in the 2D experiment, but give the discriminator five
# steps too (`discriminator_steps=5` in `cfg["naive"]`; or give `opt_D` a learning
# rate five times larger, which needs a second learning-rate setting in `train_toy`). Does the collapse go away?
# What does that tell you about which player should lead?
#
# **Exercise 4.6 (no check): a critic with its own schedule.** Train the spectrally
# normalised hinge critic of the Wasserstein section with `discriminator_steps=5` (and
# `"name": "sn_hinge_5"`, so a new checkpoint is trained), and then also with a smaller
# learning rate. How many modes does it cover now, at what MMD², and for how many critic
# updates? Compare with the non-saturating GAN at the same number of generator updates.
#
# ## References
#
# - I. Goodfellow, J. Pouget-Abadie, M. Mirza, B. Xu, D. Warde-Farley, S. Ozair,
#   A. Courville, Y. Bengio, "Generative Adversarial Nets", NeurIPS 2014 (eq. 1,
#   Algorithm 1, Proposition 1, Theorem 1, the non-saturating loss in sec. 3).
# - I. Goodfellow, "NIPS 2016 Tutorial: Generative Adversarial Networks",
#   arXiv:1701.00160 (mode collapse and the Helvetica scenario, sec. 5.1.1).
# - A. Radford, L. Metz, S. Chintala, "Unsupervised Representation Learning with
#   Deep Convolutional Generative Adversarial Networks", ICLR 2016 (DCGAN).
# - M. Mirza, S. Osindero, "Conditional Generative Adversarial Nets", arXiv:1411.1784, 2014.
# - T. Salimans, I. Goodfellow, W. Zaremba, V. Cheung, A. Radford, X. Chen,
#   "Improved Techniques for Training GANs", NeurIPS 2016 (feature matching,
#   one-sided label smoothing).
# - L. Metz, B. Poole, D. Pfau, J. Sohl-Dickstein, "Unrolled Generative Adversarial
#   Networks", ICLR 2017 (mode collapse on a 2D mixture of Gaussians).
# - A. Srivastava, L. Valkov, C. Russell, M. Gutmann, C. Sutton, "VEEGAN: Reducing
#   Mode Collapse in GANs using Implicit Variational Learning", NeurIPS 2017
#   (high-quality samples within 3σ of a mode).
# - M. Arjovsky, L. Bottou, "Towards Principled Methods for Training Generative
#   Adversarial Networks", ICLR 2017 (what the non-saturating loss minimises).
# - S. Reed, Z. Akata, X. Yan, L. Logeswaran, B. Schiele, H. Lee, "Generative
#   Adversarial Text to Image Synthesis", ICML 2016.
# - T. Miyato, M. Koyama, "cGANs with Projection Discriminator", ICLR 2018.
# - Y. Yazıcı, C.-S. Foo, S. Winkler, K.-H. Yap, G. Piliouras, V. Chandrasekhar,
#   "The Unusual Effectiveness of Averaging in GAN Training", ICLR 2019.
# - M. Heusel, H. Ramsauer, T. Unterthiner, B. Nessler, S. Hochreiter, "GANs Trained
#   by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium",
#   NeurIPS 2017 (FID).
# - T. Karras, S. Laine, T. Aila, "A Style-Based Generator Architecture for
#   Generative Adversarial Networks", CVPR 2019 (StyleGAN: where this road led).
