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
# # Autoencoders, VAEs and VQ-VAE
#
# A 28×28 picture of a shoe is 784 numbers, but very few settings of 784 numbers look
# like a shoe. This chapter is about *learned compression*: a network that squeezes an
# image into a small code and another that rebuilds the image from it. Compression on
# its own does not give a generative model, and the chapter is the story of what has to
# be added so that it does. The same idea carries the last two models of the book:
# latent diffusion (chapter 08) runs diffusion on such codes, and DALL·E (chapter 09)
# writes images as sequences of discrete codes, like words.
#
# The ladder of this chapter, all on Fashion-MNIST:
#
# 1. an **autoencoder**, and why it is not yet a generative model;
# 2. the **variational autoencoder** (Kingma & Welling 2014): a latent-variable model
#    trained by a lower bound on its likelihood, which we measure in bits per pixel
#    against exact baselines;
# 3. the **VQ-VAE** (van den Oord et al. 2017): a discrete code from a learned codebook,
#    the straight-through gradient, and codebook collapse (measured) and its cures;
# 4. an **autoregressive prior** over the codes: a small GPT that writes the 49 codes of an
#    image one by one, which turns the VQ-VAE into a generative model;
# 5. **FSQ** (Mentzer et al. 2024), a codebook without a codebook.
#
# Every model is measured against the strongest simple method we know for the same job:
# PCA at the same number of bits for compression, exact probabilistic PCA and a per-pixel
# categorical model for likelihood, a PCA-Gaussian for samples.

# %%
import itertools
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

import genbook
from genbook.data.fashion_mnist import fashion_mnist
from genbook.likelihood import (
    bpd_from_nll,
    dequantize,
    diagonal_gaussian_kl,
    independent_pixels_bpd,
    iwae_bound,
    ppca_bpd,
)
from genbook.metrics import (
    evaluate_fashion,
    fashion_evaluator,
    image_baselines,
    n_eval,
    save_samples,
    timed_sampling,
)
from genbook.nn.autoencoder import ConvDecoder, ConvEncoder
from genbook.nn.transformer import GPT, count_parameters
from genbook.paths import repo_relative
from genbook.quantize import FSQ, VectorQuantizer, codebook_usage

cfg = genbook.profile(
    fast=dict(widths=[16, 32], batch_size=32, lr=2e-3, warmup=50,
              ae_channels=4, ae_steps=150,
              vae_latent=16, vae_channels=8, vae_steps=500, vae_lr=4e-3, vae_scale_lr=0.05, iwae_k=32, likelihood_images=200,
              baseline_images=10_000, codebook_size=64, code_dim=16, vq_steps=500, usage_every=125, fsq_levels=[4, 4, 4],
              prior_images=30_000, prior_d=64, prior_heads=4, prior_layers=2, prior_steps=700,
              prior_batch=32, prior_lr=3e-3, sample_batch=500),
    full=dict(widths=[64, 128], batch_size=128, lr=1e-3, warmup=500,
              ae_channels=4, ae_steps=4000,
              vae_latent=16, vae_channels=16, vae_steps=20_000, vae_lr=5e-4, vae_scale_lr=0.01, iwae_k=256, likelihood_images=10_000,
              baseline_images=60_000, codebook_size=256, code_dim=32, vq_steps=20_000, usage_every=2000, fsq_levels=[8, 8, 4],
              prior_images=60_000, prior_d=256, prior_heads=8, prior_layers=6, prior_steps=20_000,
              prior_batch=128, prior_lr=5e-4, sample_batch=1000),
)
device = genbook.device()
generator = genbook.seed_everything(0)
print("profile:", genbook.profile_name(), "| device:", device)
print(cfg)

x_train, y_train = fashion_mnist("train")
x_test, y_test = fashion_mnist("test")
pixels = x_train[0].numel()
pixel_variance = x_test.var().item()  # the denominator of every normalised MSE below
print(f"train {tuple(x_train.shape)}, test {tuple(x_test.shape)}, {pixels} pixels per image, "
      f"test pixel variance {pixel_variance:.3f}")

# %% [markdown]
# Every image model of this chapter is measured with the book's one protocol: FD, the
# Fréchet distance in the features of genbook's own Fashion-MNIST classifier (not
# Inception FID), with a bootstrap interval, and precision and recall, all on the same
# $n$ images, next to three rungs computed now: real training images against the test
# images (the floor at this $n$), training images blurred by one pixel, and a Gaussian
# on the top principal components (the PCA-Gaussian).

# %%
n = n_eval()
evaluator = fashion_evaluator(device)
baselines = image_baselines(n, evaluator=evaluator)
print(f"n = {n}: " + ", ".join(f"{k} = {v:.1f}" for k, v in baselines.items()))


def normalised_mse(x_hat, x):
    """Mean squared error per pixel divided by the pixel variance of the test set: 1.0 = predicting the mean."""
    return ((x_hat - x) ** 2).mean().item() / pixel_variance


# %% [markdown]
# ## 1. The autoencoder
#
# An **encoder** $f$ maps an image $x$ to a code $z = f(x)$ and a **decoder** $g$ maps the
# code back, $\hat x = g(z)$; both are trained together to make the reconstruction error
# small,
#
# $$
# \min_{f, g}\ \mathbb E_x\, \lVert x - g(f(x)) \rVert^2 .
# $$
#
# If the code is smaller than the image, the pair has to find what the images have in
# common. Our encoder halves the resolution twice with stride-2 convolutions, 28×28 → 14×14 →
# 7×7, and ends with a few channels per position: a **7×7 latent grid**. The decoder mirrors it
# with transposed convolutions. Both live in `genbook.nn.autoencoder`, because chapters 08 and
# 09 use the same pair on 32×32 colour images. The shapes, checked:

# %%
ae_encoder = ConvEncoder(1, cfg["ae_channels"], cfg["widths"])
ae_decoder = ConvDecoder(1, cfg["ae_channels"], cfg["widths"][::-1])
z = ae_encoder(x_train[:2])
grid = z.shape[-1]
print("image", tuple(x_train[:2].shape), "-> code", tuple(z.shape), "->", tuple(ae_decoder(z).shape))
assert z.shape == (2, cfg["ae_channels"], 7, 7) and ae_decoder(z).shape == (2, 1, 28, 28)
print(f"{pixels} numbers in, {z[0].numel()} numbers in the code: {pixels / z[0].numel():.0f}x fewer")


# %% [markdown]
# Training is the equation above and nothing else; `genbook.fit` does the plumbing (device,
# batches, optimizer steps, the warm-up-then-cosine learning rate, logging) and
# `genbook.load_or_train` caches the result so that a second run of the chapter is fast.

# %%
class Autoencoder(nn.Module):
    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, x):
        return self.decoder(self.encoder(x))


def train_autoencoder(model):
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["lr"])

    def step(x):
        return F.mse_loss(model(x), x)  # ‖x − g(f(x))‖², averaged over pixels

    data = genbook.batches(x_train, batch_size=cfg["batch_size"], generator=torch.Generator().manual_seed(11), device=device)
    history = genbook.fit(step, data, cfg["ae_steps"], model=model, optimizer=optimizer, desc="autoencoder",
                          lr_schedule=genbook.warmup_cosine(cfg["lr"], cfg["ae_steps"], cfg["warmup"]))
    return {"history": history}


autoencoder, ae_info = genbook.load_or_train(Autoencoder(ae_encoder, ae_decoder).to(device), train_autoencoder,
                                             chapter="03_vqvae", name="autoencoder", config=cfg)
# load_or_train hands the model back in eval mode, loaded or trained; every model here is used that way


@torch.no_grad()
def in_batches(fn, x, batch=2000):
    """Apply fn to x (on the device) in batches; results back on the CPU."""
    return torch.cat([fn(x[i:i + batch].to(device)).cpu() for i in range(0, len(x), batch)])


ae_recon = in_batches(lambda x: autoencoder(x).clamp(-1, 1), x_test)
ae_nmse = normalised_mse(ae_recon, x_test)
print(f"autoencoder: test MSE / pixel variance = {ae_nmse:.3f}")

# %% [markdown]
# **Is it a generative model?** To generate, we need codes to decode. The autoencoder never
# said which codes are likely: training only ever visited codes of real images. The
# simplest guess is a standard normal. A better one is a Gaussian *fitted* to the codes of the
# training images, with their mean and full covariance. Both, measured:

# %%
train_codes = in_batches(autoencoder.encoder, x_train[:10_000]).flatten(1)  # (N, c·7·7)
code_mean, code_cov = train_codes.mean(0), torch.cov(train_codes.T)
g = torch.Generator().manual_seed(1)
cholesky = torch.linalg.cholesky(code_cov + 1e-4 * torch.eye(len(code_mean)))  # Σ = L Lᵀ (a small ridge for safety)
codes_fitted = code_mean + torch.randn(n, len(code_mean), generator=g) @ cholesky.T  # z = μ + L ε ~ N(μ, Σ)
codes_standard = torch.randn(n, len(code_mean), generator=g)
ae_samples = {
    "N(0, I) codes": in_batches(lambda z: autoencoder.decoder(z.view(-1, cfg["ae_channels"], grid, grid)), codes_standard),
    "fitted Gaussian codes": in_batches(lambda z: autoencoder.decoder(z.view(-1, cfg["ae_channels"], grid, grid)),
                                        codes_fitted),
}
ae_fd = {}
fig, axes = plt.subplots(2, 1, figsize=(9, 2.4))
for ax, (name, images) in zip(axes, ae_samples.items()):
    images = images.clamp(-1, 1)
    ae_fd[name] = evaluate_fashion(images, n=n, evaluator=evaluator)["fd"]
    genbook.show_images(images[:16], nrow=16, ax=ax, title=f"autoencoder decoder, {name}: FD {ae_fd[name]:.0f}")
plt.show()
print("code statistics: mean |μ| = {:.2f}, mean variance = {:.2f} (a standard normal has 0 and 1)".format(
    code_mean.abs().mean().item(), code_cov.diagonal().mean().item()))
for name, fd in ae_fd.items():
    print(f"{name:>22}: FD {fd:6.1f}   (PCA-Gaussian {baselines['fd_pca_gaussian']:.1f}, "
          f"blurred data {baselines['fd_blurred']:.1f})")

# %% [markdown]
# The codes of real images are nothing like a standard normal (their statistics are printed
# above), so decoding $\mathcal N(0, I)$ gives images far from any garment (the first FD). A Gaussian fitted to the codes after training is a real density over codes, and it
# does far better: the autoencoder has become a generative model by adding, after the fact, a
# model of its codes (Ghosh et al. 2020 study exactly this "ex-post density estimation").
# Everything that follows develops that thought: the VAE builds the density of the codes into
# training, and the VQ-VAE makes the codes discrete so that a much richer model of them, a
# transformer, can be fitted afterwards.
#
# ## 2. The variational autoencoder
#
# Make the code a random variable. A **latent-variable model** draws $z \sim p(z) = \mathcal N(0, I)$
# and then an image $x \sim p_\theta(x \mid z)$ from a decoder. Its likelihood
# $p_\theta(x) = \int p_\theta(x \mid z)\, p(z)\, dz$ is an integral over all codes that we
# cannot compute. Kingma and Welling (2014) bring in an encoder $q_\phi(z \mid x)$, a guess of which
# codes could have made $x$, and bound the likelihood from below. For any $q$,
#
# $$
# \log p_\theta(x) = \log \mathbb E_{q_\phi(z\mid x)}\Big[\frac{p_\theta(x \mid z)\,p(z)}{q_\phi(z \mid x)}\Big]
# \;\ge\; \mathbb E_{q_\phi(z\mid x)}\big[\log p_\theta(x \mid z)\big] - \mathrm{KL}\big(q_\phi(z \mid x)\,\Vert\,p(z)\big)
# = \mathcal L(x),
# $$
#
# by Jensen's inequality ($\log$ is concave). $\mathcal L$ is the **evidence lower bound** (ELBO).
# The gap is exactly $\mathrm{KL}(q_\phi(z \mid x)\,\Vert\,p_\theta(z \mid x))$: the bound is tight
# when the encoder finds the true posterior. The first term asks the decoder to reconstruct
# $x$ from codes the encoder proposes; the second keeps those codes close to the prior, so that
# codes drawn from the prior decode to something sensible, which is what the autoencoder lacked.
#
# **The reparameterisation trick.** The encoder outputs a mean $\mu$ and a log-variance
# $\log\sigma^2$ per latent dimension. To backpropagate through the sampling of $z$, write it as
# a deterministic function of the parameters and independent noise:
# $z = \mu + \sigma \odot \varepsilon$, $\varepsilon \sim \mathcal N(0, I)$.
#
# **The KL in closed form.** For $q = \mathcal N(\mu, \operatorname{diag}\sigma^2)$ and
# $p = \mathcal N(0, I)$ the KL needs no sampling (Kingma & Welling 2014, appendix B):
#
# $$
# \mathrm{KL}(q \,\Vert\, p) = \tfrac12 \sum_j \big(\mu_j^2 + \sigma_j^2 - \log \sigma_j^2 - 1\big).
# $$
#
# Written out and checked against PyTorch's own `kl_divergence`:

# %%
def kl_to_standard_normal(mu, logvar):
    """KL(N(μ, σ²) ‖ N(0, 1)) per dimension = ½ (μ² + σ² − log σ² − 1)."""
    return 0.5 * (mu**2 + logvar.exp() - logvar - 1)


mu_check, logvar_check = torch.randn(64, 16, dtype=torch.float64), torch.randn(64, 16, dtype=torch.float64)
reference_kl = torch.distributions.kl_divergence(
    torch.distributions.Normal(mu_check, (0.5 * logvar_check).exp()), torch.distributions.Normal(0.0, 1.0))
assert torch.allclose(kl_to_standard_normal(mu_check, logvar_check), reference_kl, atol=1e-12)
assert torch.allclose(diagonal_gaussian_kl(mu_check, logvar_check), reference_kl, atol=1e-12)
print("closed-form KL == torch.distributions.kl_divergence (and genbook's diagonal_gaussian_kl)")

# %% [markdown]
# **The decoder's likelihood.** Our decoder is a Gaussian per pixel: its mean depends on $z$,
# and its scale $s$ is **one learned number shared by every pixel and every image**,
#
# $$
# p_\theta(y \mid z) = \prod_{j=1}^{D} \mathcal N\big(y_j;\ m_j(z),\ s^2\big), \qquad
# -\log p_\theta(y \mid z) = \frac{\lVert y - m(z) \rVert^2}{2 s^2} + D \log s + \tfrac D2 \log 2\pi .
# $$
#
# The first term is the autoencoder's squared error, weighted by $1/(2s^2)$; learning $s$ with
# the rest sets that weight against the KL term by maximum likelihood instead of by hand (the
# "σ-VAE" of Rybkin et al. 2021: at the optimum, $s^2$ is the mean squared reconstruction error).
# This model is **probabilistic PCA made nonlinear**: PPCA (Tipping & Bishop 1999) is the same
# model, $z \sim \mathcal N(0, I)$ and $y = \mu + W z + \varepsilon$ with
# $\varepsilon \sim \mathcal N(0, \sigma^2 I)$, with a *linear* decoder. So PPCA with as many latent
# dimensions is the controlled baseline for the VAE's likelihood below: the two models differ
# in their decoder only (and in how they are fitted: PPCA's maximum-likelihood fit is exact and
# closed-form, the VAE's a bound climbed by gradient steps).
#
# **Likelihood in bits per pixel, honestly.** A continuous density on 8-bit data can cheat: squeezing
# all its mass onto the 256 grey levels gives an unbounded likelihood. The standard cure
# (Theis et al. 2016) is **uniform dequantisation**: train and evaluate on
# $y = (k + u)/256 \cdot 2 - 1$, with $k$ the pixel's level and $u \sim U[0, 1)$ fresh noise. Then
# $-\log p(y) + D \log(256/2)$ bounds the number of nats needed to encode the *discrete* image,
# and dividing by $D \ln 2$ gives **bits per dimension** (bits/dim), the unit of every likelihood
# in this book. 8 bits/dim is a uniform guess. The model:

# %%
LOG_SCALE_MIN = math.log(2 / 256 / math.sqrt(12))  # the std of a uniform bin: no Gaussian does better on it


class VAE(nn.Module):
    """q(z|x) = N(μ(x), diag σ²(x)); p(z) = N(0, I); p(y|z) = Π_pixels N(m(z), s²), one learned s. z: (B, latent)."""

    def __init__(self, latent, channels, widths):
        super().__init__()
        self.channels = channels
        self.encoder = ConvEncoder(1, channels, widths)  # (B, c, 7, 7)
        self.to_posterior = nn.Linear(channels * 49, 2 * latent)  # -> μ, log σ²
        self.from_latent = nn.Linear(latent, channels * 49)
        self.decoder = ConvDecoder(1, channels, widths[::-1])  # -> the mean of every pixel
        self.raw_log_scale = nn.Parameter(torch.tensor(math.log(0.5)))  # s, shared by all pixels and images

    def encode(self, x):
        mu, logvar = self.to_posterior(self.encoder(x).flatten(1)).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z):
        mean = self.decoder(self.from_latent(z).view(-1, self.channels, 7, 7))
        log_scale = LOG_SCALE_MIN + F.softplus(self.raw_log_scale - LOG_SCALE_MIN)  # softly bounded below
        return mean, log_scale.expand_as(mean)


def gaussian_log_likelihood(y, mean, log_scale):
    """log N(y; mean, scale²) summed over the pixels of each image: (B,)."""
    return (-0.5 * ((y - mean) / log_scale.exp()) ** 2 - log_scale - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)


def negative_elbo(model, y):
    """−L(y) per image (B,), one reparameterised sample: −log p(y|z) + KL(q(z|y) ‖ p(z))."""
    mu, logvar = model.encode(y)
    z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)  # reparameterisation
    mean, log_scale = model.decode(z)
    return -gaussian_log_likelihood(y, mean, log_scale) + kl_to_standard_normal(mu, logvar).sum(1)


def train_vae(model):
    # the one scale gets a larger step: it must travel from 0.5 to the size of the errors in a few hundred steps
    network = [p for name, p in model.named_parameters() if name != "raw_log_scale"]
    optimizer = torch.optim.Adam([{"params": network, "lr": cfg["vae_lr"]},
                                  {"params": [model.raw_log_scale], "lr": cfg["vae_scale_lr"]}])
    schedule = genbook.warmup_cosine(1.0, cfg["vae_steps"], cfg["warmup"])  # a factor on both learning rates
    dequant, step_index = torch.Generator().manual_seed(2), itertools.count()

    def step(x):
        factor = schedule(next(step_index))
        for group, peak in zip(optimizer.param_groups, (cfg["vae_lr"], cfg["vae_scale_lr"])):
            group["lr"] = peak * factor
        y = dequantize(x.cpu(), dequant).to(x.device)  # fresh uniform noise every step
        return negative_elbo(model, y).mean() / pixels  # nats per pixel keep the step size sane

    data = genbook.batches(x_train, batch_size=cfg["batch_size"], generator=torch.Generator().manual_seed(12), device=device)
    history = genbook.fit(step, data, cfg["vae_steps"], model=model, optimizer=optimizer, grad_clip=1.0, desc="VAE")
    return {"history": history}


torch.manual_seed(10)  # the same initial VAE whether or not the models above came from the cache
vae, vae_info = genbook.load_or_train(VAE(cfg["vae_latent"], cfg["vae_channels"], cfg["widths"]).to(device), train_vae,
                                      chapter="03_vqvae", name="vae", config=cfg)
vae.eval()
vae_scale = vae.decode(torch.zeros(1, cfg["vae_latent"], device=device))[1].exp().flatten()[0].item()
print(f"VAE: {count_parameters(vae):,} parameters, {cfg['vae_latent']} latent dimensions; learned scale s = "
      f"{vae_scale:.3f} (s² / pixel variance = {vae_scale**2 / pixel_variance:.3f})")

# %% [markdown]
# **A tighter bound.** The ELBO uses one code per image. Burda et al. (2016) average $k$
# importance weights $w_i = p_\theta(y, z_i)/q_\phi(z_i \mid y)$ inside the logarithm,
#
# $$
# \mathcal L_k(y) = \mathbb E\Big[\log \frac1k \sum_{i=1}^k w_i\Big], \qquad z_i \sim q_\phi(z \mid y),
# $$
#
# which is still a lower bound, never looser than the ELBO, and tends to $\log p_\theta(y)$ as
# $k$ grows. We evaluate both on the same dequantised test images, and next to them two exact
# baselines on the same images: **probabilistic PCA** (Tipping & Bishop 1999), a *linear*
# Gaussian latent-variable model with the same number of latent dimensions whose likelihood is
# known in closed form, and an **independent categorical per pixel**, fitted by counting.

# %%
n_lik = cfg["likelihood_images"]
y_test = dequantize(x_test[:n_lik], torch.Generator().manual_seed(3)).to(device)  # one fixed draw of u


@torch.no_grad()
def log_weights(model, y, k):
    """log w_i = log p(y | z_i) + log p(z_i) − log q(z_i | y) for k codes per image: (B, k)."""
    mu, logvar = model.encode(y)
    std = (0.5 * logvar).exp()
    z = mu[:, None] + std[:, None] * torch.randn(len(y), k, mu.shape[1], device=y.device)  # (B, k, latent)
    mean, log_scale = model.decode(z.flatten(0, 1))
    log_lik = gaussian_log_likelihood(y.repeat_interleave(k, 0), mean, log_scale).view(len(y), k)
    normal = torch.distributions.Normal
    log_prior = normal(0.0, 1.0).log_prob(z).sum(-1)
    log_q = normal(mu[:, None], std[:, None]).log_prob(z).sum(-1)
    return log_lik + log_prior - log_q


torch.manual_seed(4)
weights = torch.cat([log_weights(vae, y_test[i:i + 25], cfg["iwae_k"]) for i in range(0, n_lik, 25)])
elbo_bpd = bpd_from_nll(-weights.mean().item(), pixels)  # average of single-sample ELBOs
vae_bpd = bpd_from_nll(-iwae_bound(weights).mean().item(), pixels)
x_fit = x_train[:cfg["baseline_images"]]  # the baselines are fitted on as many training images as listed here
ppca = ppca_bpd(x_fit, x_test[:n_lik], cfg["vae_latent"])
independent = independent_pixels_bpd(x_fit, x_test[:n_lik])
rows = [("VAE, negative ELBO (k = 1)", elbo_bpd), (f"VAE, IWAE bound (k = {cfg['iwae_k']})", vae_bpd),
        (f"probabilistic PCA, {cfg['vae_latent']} latents (exact)", ppca),
        ("categorical per pixel (exact)", independent), ("uniform over 256 levels", 8.0)]
print(f"bits/dim on {n_lik} test images (continuous models: uniformly dequantised; baselines fitted on "
      f"{len(x_fit)} training images, the VAE saw {cfg['vae_steps'] * cfg['batch_size']} in training):")
for name, value in rows:
    print(f"  {name:<40} {value:6.3f}")
assert vae_bpd <= elbo_bpd + 1e-6, "the IWAE bound can never be looser than the ELBO"
assert vae_bpd <= ppca, (vae_bpd, ppca)
winner = "the VAE" if vae_bpd < independent else "the per-pixel categorical model"
print(f"Against the per-pixel categorical model: {winner} wins "
      f"({vae_bpd:.3f} vs {independent:.3f} bits/dim).")

# %% [markdown]
# Read the table from the bottom. A uniform guess costs 8 bits per pixel. Probabilistic PCA
# improves on it, but not by much. The VAE is the same kind of model (as many latent dimensions,
# a standard normal prior, one noise scale for every pixel) with a nonlinear decoder, so the
# gap between the two lines is what the network buys (the bar of this section: the VAE's bound
# must be at least as good as PPCA's exact likelihood). The per-pixel categorical model needs
# no latent variable at all, and the line under the table says which of the two won in this
# run. A categorical distribution with 256 free probabilities per pixel fits each pixel's
# grey-level histogram exactly: it knows that a border pixel is *exactly* black, which a Gaussian
# with one scale for all pixels cannot say. A scale per pixel, or one computed from $z$, would
# buy the VAE many bits/dim here, and exercise 3.5 asks what it costs the samples: the
# decoder's loss weighs the error of every pixel by $1/s^2$, so a decoder free to choose its
# scales may declare the hard pixels noisy instead of reconstructing them. Likelihood and sample
# quality are different goals (Theis et al. 2016 show how far they can part ways).
#
# **Samples: blurry or noisy?** Strictly, a sample of this model is a **draw**
# $y = m(z) + s\,\varepsilon$ with $z \sim \mathcal N(0, I)$ and independent pixel noise
# $\varepsilon \sim \mathcal N(0, I)$. What papers show as "VAE samples" is usually the decoder's
# **mean** $m(z)$ alone. We measure both, and a third row that separates the decoder from the
# prior: the means decoded from codes of *real* training images, $z \sim q_\phi(z \mid x)$. Two
# more measurements: how well the decoder's means reconstruct test images (against the plain
# autoencoder of §1), and how many of the latent dimensions the encoder actually uses (a
# dimension whose average KL is near zero carries no information: it is "inactive", Burda et
# al. 2016):

# %%
def sharpness(images):
    """Mean squared response to a discrete Laplacian: the energy of the finest details."""
    laplacian = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    return F.conv2d(images.float(), laplacian).square().mean().item()


def sample_vae(b, gen):
    """The decoder's mean m(z), z ~ N(0, I): what we show, and save, as the VAE's samples."""
    z = torch.randn(b, cfg["vae_latent"], generator=gen, device=gen.device).to(device)
    return vae.decode(z)[0].clamp(-1, 1)


def draw_vae(b, gen):
    """A draw of the model, y = m(z) + s ε, z ~ N(0, I), ε ~ N(0, I) per pixel."""
    z = torch.randn(b, cfg["vae_latent"], generator=gen, device=gen.device).to(device)
    mean, log_scale = vae.decode(z)
    return (mean + log_scale.exp() * torch.randn(mean.shape, generator=gen, device=gen.device).to(device)).clamp(-1, 1)


vae_samples, vae_cost = timed_sampling(sample_vae, n, batch_size=cfg["sample_batch"], nfe=1, device=device)
vae_draws, _ = timed_sampling(draw_vae, n, batch_size=cfg["sample_batch"], nfe=1, device=device)
g = torch.Generator().manual_seed(15)
with torch.no_grad():
    mu_train, logvar_train = vae.encode(x_train[-n:].to(device))  # codes of n real training images
    z_posterior = mu_train + (0.5 * logvar_train).exp() * torch.randn(mu_train.shape, generator=g).to(device)
    vae_posterior = vae.decode(z_posterior)[0].clamp(-1, 1).cpu()
    mu_test, logvar_test = vae.encode(y_test)
    vae_recon_nmse = normalised_mse(vae.decode(mu_test)[0].clamp(-1, 1).cpu(), x_test[:n_lik])
    kl_per_dimension = kl_to_standard_normal(mu_test, logvar_test).mean(0).cpu()  # nats, averaged over images
active = int((kl_per_dimension > 0.01).sum())
print(f"VAE: decoder means reconstruct test images with MSE / variance {vae_recon_nmse:.3f} "
      f"(autoencoder: {ae_nmse:.3f}); {active} of {cfg['vae_latent']} latent dimensions active "
      f"(KL per dimension: {', '.join(f'{v:.2f}' for v in kl_per_dimension.sort(descending=True).values)} nats)")
vae_rows = {"means m(z), z ~ p(z)": vae_samples, "draws m(z) + s ε, z ~ p(z)": vae_draws,
            "means m(z), z ~ q(z | x), real x": vae_posterior}
vae_evals = {name: evaluate_fashion(images, n=n, evaluator=evaluator) for name, images in vae_rows.items()}
vae_eval = vae_evals["means m(z), z ~ p(z)"]
fig, axes = plt.subplots(len(vae_rows), 1, figsize=(9, 2.8))
for ax, (name, images) in zip(axes, vae_rows.items()):
    genbook.show_images(images[:16], nrow=16, ax=ax, title=f"VAE, {name}: FD {vae_evals[name]['fd']:.0f}")
plt.show()
detail = {name: sharpness(images) / sharpness(x_test[:n]) for name, images in vae_rows.items()}
print(f"{'':<34} {'FD':>7} {'±':>5} {'precision':>9} {'recall':>7} {'fine detail':>12}")
for name, r in vae_evals.items():
    print(f"{name:<34} {r['fd']:7.1f} {r['fd_ci']:5.1f} {r['precision']:9.2f} {r['recall']:7.2f} "
          f"{100 * detail[name]:11.0f}%")
print(f"{'PCA-Gaussian':<34} {baselines['fd_pca_gaussian']:7.1f}    (blurred data {baselines['fd_blurred']:.1f}, "
      f"real vs real {baselines['fd_real_vs_real']:.1f}); fine detail: share of the test images'")
print(f"{vae_cost['ms_per_image']:.2f} ms per image; saved:", repo_relative(save_samples(
    "03_vqvae", "vae", vae_samples, cost=vae_cost, steps=cfg["vae_steps"], sampled="decoder mean m(z), z ~ N(0, I)",
    training=vae_info.get("training"))))
assert vae_eval["fd_high"] < baselines["fd_pca_gaussian"], (vae_eval, baselines)  # beyond the interval
draws, posterior = vae_evals["draws m(z) + s ε, z ~ p(z)"], vae_evals["means m(z), z ~ q(z | x), real x"]
assert draws["fd"] > vae_eval["fd"] and posterior["fd"] < vae_eval["fd"], vae_evals  # what the text below explains
assert detail["draws m(z) + s ε, z ~ p(z)"] > 1 > detail["means m(z), z ~ p(z)"], detail

# %% [markdown]
# The table has the VAE's samples, the decoder's means, below the PCA-Gaussian with their whole
# interval (the bar of this section), and three lessons.
#
# **Draws are noisy.** The draws add independent noise of scale $s$ to every pixel. That is
# what the likelihood asked for: $s^2$ is the decoder's average squared error, and the model
# honestly says it does not know where its errors are. But independent noise is speckle, not
# detail: the draws have more "fine detail" (the squared response to a Laplacian filter, as a
# share of the test images') than the test images themselves, and a worse FD. This is why VAE
# samples in papers are decoder means, and why a decoder that is sharp *and* honest about its
# uncertainty has to model pixels jointly (an autoregressive decoder, as in PixelVAE, Gulrajani
# et al. 2017, or a diffusion model, chapters 05 to 08).
#
# **Means are blurry.** For a given $z$ the decoder's best mean is the *average* of all images
# the encoder maps near $z$, and an average of shirts with different folds and prints is a
# smooth shirt; with a code of a few numbers per image, many images share a code. The means
# have less fine detail than the test images (the last column).
#
# **The prior has holes.** Decoding codes of real images (third row) is better than
# decoding codes of the prior (first row), with the same decoder. The prior
# $\mathcal N(0, I)$ and the codes the encoder actually uses, the *aggregate posterior*
# $\int q_\phi(z \mid x)\,p(x)\,dx$, are not the same distribution: the KL term pulls them
# together but does not make them equal (Hoffman & Johnson 2016, "ELBO surgery"), and codes of
# the prior that no image uses decode to something between garments. A sharper model needs
# codes rich enough that few images share one, modelled by a prior that fits them. The VQ-VAE
# takes that road.
#
# ## 3. The VQ-VAE: a discrete code
#
# van den Oord, Vinyals and Kavukcuoglu (2017) keep the autoencoder's 7×7 grid of vectors
# $z_e(x) \in \mathbb R^{7 \times 7 \times D}$ but replace every vector by the nearest entry of a
# learned **codebook** $e_1, \dots, e_K \in \mathbb R^D$:
#
# $$
# k^* = \arg\min_k \lVert z_e - e_k \rVert^2, \qquad z_q = e_{k^*}.
# $$
#
# An image becomes 49 integers in $\{1..K\}$: $49 \log_2 K$ bits. The distances need no
# $(N, K, D)$ tensor, since $\lVert z - e_k\rVert^2 = \lVert z\rVert^2 - 2 z\cdot e_k + \lVert e_k\rVert^2$
# is one matrix product.
#
# **The straight-through estimator.** $\arg\min$ has no useful gradient. The VQ-VAE copies the
# decoder's gradient with respect to $z_q$ onto $z_e$ unchanged (Bengio et al. 2013), written
# with the stop-gradient $\mathrm{sg}$ as $z_q = z_e + \mathrm{sg}[e_{k^*} - z_e]$: forward it is
# $e_{k^*}$, backward it is the identity. The codebook then gets no gradient from the
# reconstruction, so the loss (eq. 3 of the paper) adds two terms:
#
# $$
# \mathcal L = \lVert x - \hat x \rVert^2 + \lVert \mathrm{sg}[z_e] - e \rVert^2 + \beta \lVert z_e - \mathrm{sg}[e] \rVert^2 ,
# $$
#
# the **codebook loss** pulls codes towards the encoder outputs assigned to them, and the
# **commitment loss** ($\beta = 0.25$) keeps the encoder from drifting away from its codes.
# From scratch:

# %%
def quantize(z_e, codebook, beta=0.25):
    """z_e (B, D, H, W), codebook (K, D) -> z_q (straight-through), codes (B, H, W), loss."""
    b, d, h, w = z_e.shape
    flat = z_e.permute(0, 2, 3, 1).reshape(-1, d)  # (B·H·W, D)
    distances = flat.square().sum(1, keepdim=True) - 2 * flat @ codebook.T + codebook.square().sum(1)  # (B·H·W, K)
    codes = distances.argmin(1)
    e = codebook[codes]
    loss = F.mse_loss(e, flat.detach()) + beta * F.mse_loss(flat, e.detach())  # codebook + β commitment
    z_q = flat + (e - flat).detach()  # straight-through
    return z_q.view(b, h, w, d).permute(0, 3, 1, 2), codes.view(b, h, w), loss


# %% [markdown]
# **Checks.** (1) Against genbook's `VectorQuantizer` in its plain form (codebook trained by its
# loss, no moving averages), with the same codebook: same codes, same $z_q$, same loss, same
# gradients. (2) Against the naive definition, an explicit $\arg\min$ over all distances. (3) The
# straight-through property with autograd: the gradient that arrives at $z_e$ is exactly the
# gradient the decoder sent to $z_q$.

# %%
torch.manual_seed(5)
K, D = cfg["codebook_size"], cfg["code_dim"]
z_e = torch.randn(4, D, grid, grid, requires_grad=True)
genbook_vq = VectorQuantizer(K, D, ema=False)
codebook = genbook_vq.codebook.detach().clone().requires_grad_(True)
z_q, codes, loss = quantize(z_e, codebook)
theirs = genbook_vq(z_e)
naive_codes = torch.cdist(z_e.detach().permute(0, 2, 3, 1).reshape(-1, D), codebook.detach()).argmin(1)
assert torch.equal(codes, theirs.codes) and torch.equal(codes.flatten(), naive_codes)
assert torch.allclose(z_q, theirs.z_q) and torch.allclose(loss, theirs.loss)
probe = torch.randn_like(z_q)
grads = torch.autograd.grad((z_q * probe).sum() + loss, (z_e, codebook))
grads_genbook = torch.autograd.grad((theirs.z_q * probe).sum() + theirs.loss, (z_e, genbook_vq.codebook))
assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads, grads_genbook))

decoder_probe = ConvDecoder(1, D, cfg["widths"][::-1])
z_q, _, _ = quantize(z_e, codebook)
z_q.retain_grad()
F.mse_loss(decoder_probe(z_q), torch.zeros(4, 1, 28, 28)).backward()
assert torch.equal(z_e.grad, z_q.grad), "straight-through: the encoder must receive the decoder's gradient unchanged"
print("quantize == genbook.VectorQuantizer (codes, z_q, loss, gradients) == naive argmin; "
      f"decoder gradient reaches the encoder unchanged (max |grad| {z_e.grad.abs().max():.2e})")

# %% [markdown]
# **Codebook collapse and its cures.** A code that is nobody's nearest neighbour receives no
# gradient and never moves: it is *dead*. If the codebook starts far from the encoder's outputs,
# a handful of codes win everything early on, and the model is left with a small vocabulary. Three
# cures, each in genbook's `VectorQuantizer`:
#
# - **initialise the codebook from data**: the first batch's encoder outputs (instead of $\mathcal N(0, I)$);
# - **exponential moving averages** instead of the codebook loss (appendix of van den Oord et al.
#   2017; Razavi et al. 2019): with $n_k$ vectors assigned to code $k$ in a batch and their sum
#   $s_k$, update $N_k \leftarrow \gamma N_k + (1-\gamma) n_k$, $m_k \leftarrow \gamma m_k + (1-\gamma) s_k$
#   and set $e_k = m_k / N_k$ ($\gamma = 0.99$): each code moves to the running mean of its cluster,
#   as in online k-means;
# - **restart dead codes**: a code whose running count $N_k$ falls below one vector per batch is
#   moved onto a random encoder output of the batch (as in Jukebox, Dhariwal et al. 2020).
#
# The experiment: the *naive* quantizer (random $\mathcal N(0, I)$ codebook, codebook loss, no
# restarts) against the *cured* one (all three), with everything else identical: the same
# encoder and decoder, data order, steps and learning rate. We watch the codebook during
# training on 2,000 test images, and measure it at the end on the whole test set. Two
# numbers: **usage**, the share of the $K$ codes used at all, and **perplexity**
# $\exp(H)$ of the code frequencies, the number of equally used codes with the same entropy.

# %%
class VQVAE(nn.Module):
    def __init__(self, quantizer, code_dim):
        super().__init__()
        self.encoder = ConvEncoder(1, code_dim, cfg["widths"])
        self.quantizer = quantizer
        self.decoder = ConvDecoder(1, code_dim, cfg["widths"][::-1])

    def forward(self, x):
        q = self.quantizer(self.encoder(x))
        return self.decoder(q.z_q), q


x_probe = x_test[:2000]


def encode_codes(model, x):
    return in_batches(lambda b: model.quantizer(model.encoder(b)).codes, x)


def train_vqvae(model):
    g = torch.Generator().manual_seed(6)  # the same data order for every quantizer
    data = genbook.batches(x_train, batch_size=cfg["batch_size"], generator=g, device=device)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg["lr"])
    schedule = genbook.warmup_cosine(cfg["lr"], cfg["vq_steps"], cfg["warmup"])

    def step(x):
        x_hat, q = model(x)
        return F.mse_loss(x_hat, x) + q.loss  # reconstruction + the quantizer's own terms

    trace, num_codes = [], model.quantizer.num_codes
    for start in range(0, cfg["vq_steps"], cfg["usage_every"]):
        chunk = min(cfg["usage_every"], cfg["vq_steps"] - start)
        history = genbook.fit(step, data, chunk, model=model, optimizer=optimizer, log_every=chunk,
                              lr_schedule=lambda i, start=start: schedule(start + i), desc="VQ-VAE")
        usage = codebook_usage(encode_codes(model, x_probe), num_codes)
        trace.append([start + chunk, history.last("loss"), usage["usage"], usage["perplexity"]])
        print(f"  step {start + chunk:5d}: loss {history.last('loss'):.4f}, usage {100 * usage['usage']:5.1f}%, "
              f"perplexity {usage['perplexity']:5.1f} of {num_codes}")
    return {"trace": trace}


quantizers = {
    "naive": VectorQuantizer(K, D, ema=False, init="random", restart_below=0.0),
    "cured": VectorQuantizer(K, D, ema=True, init="data", restart_below=1.0),
}
print("what differs: " + "; ".join(f"{name}: EMA={q.ema}, init={q.init}, restart_below={q.restart_below}"
                                   for name, q in quantizers.items()))
print(f"what is equal: {cfg['vq_steps']} steps, batch {cfg['batch_size']}, lr {cfg['lr']}, K = {K}, D = {D}, "
      "encoder/decoder widths, data order")
vqvaes, traces, vq_training, vq_infos = {}, {}, {}, {}
for name, quantizer in quantizers.items():
    print(name)
    torch.manual_seed(7)  # the same initial encoder and decoder weights
    model, info = genbook.load_or_train(VQVAE(quantizer, D).to(device), train_vqvae,
                                        chapter="03_vqvae", name=f"vqvae_{name}", config=cfg)
    # eval mode matters here: in training mode the EMA quantizer moves its codebook (and restarts codes) on every
    # batch it encodes, and a model loaded from the cache comes back in training mode (fit leaves it in eval mode)
    vqvaes[name], traces[name], vq_training[name] = model.eval(), info["trace"], info.get("training")
    vq_infos[name] = info  # the prior of section 4 names the cured one as its parent

# %%
usage_test = {name: codebook_usage(encode_codes(model, x_test), K) for name, model in vqvaes.items()}
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for name, trace in traces.items():
    steps_done = [row[0] for row in trace]
    axes[0].plot(steps_done, [100 * row[2] for row in trace], marker="o", label=name)
    axes[1].plot(steps_done, [row[3] for row in trace], marker="o", label=name)
axes[0].set(xlabel="training step", ylabel="codes used (%)", title="codebook usage (2,000 test images)")
axes[1].axhline(K, color="0.5", ls=":", label=f"K = {K}")
axes[1].set(xlabel="training step", ylabel="perplexity exp(H)", title="effective codebook size")
for ax in axes:
    ax.legend()
plt.show()
for name, usage in usage_test.items():
    print(f"{name:>6} (whole test set): {usage['used']} of {K} codes used ({100 * usage['usage']:.0f}%), "
          f"perplexity {usage['perplexity']:.1f}")
vq = vqvaes["cured"]
assert usage_test["cured"]["usage"] >= 0.90 and usage_test["cured"]["perplexity"] >= K / 2, usage_test
assert usage_test["naive"]["perplexity"] <= 0.5 * usage_test["cured"]["perplexity"], usage_test

# %% [markdown]
# **How good is the compression?** The fair competitor of a learned discrete code is the best
# *linear* code with the same number of bits: PCA, keeping as many principal components as the
# budget of $49 \log_2 K$ bits pays for at 8 bits each, with each coefficient quantised to 256
# levels over its range on the training set.

# %%
bits = grid * grid * math.log2(K)
components = int(bits // 8)
flat_train = x_fit.flatten(1)  # the same training images as the likelihood baselines
pca_mean = flat_train.mean(0)
_, eigenvectors = torch.linalg.eigh(torch.cov((flat_train - pca_mean).T))
basis = eigenvectors.flip(1)[:, :components]  # the top principal directions (784, m)
train_coeffs = (flat_train - pca_mean) @ basis
low, high = train_coeffs.min(0).values, train_coeffs.max(0).values
levels = ((((x_test.flatten(1) - pca_mean) @ basis) - low) / (high - low) * 255).round().clamp(0, 255)  # 8 bits each
pca_recon = (pca_mean + (levels / 255 * (high - low) + low) @ basis.T).clamp(-1, 1).view_as(x_test)
pca_nmse = normalised_mse(pca_recon, x_test)
vq_recon = in_batches(lambda x: vq(x)[0].clamp(-1, 1), x_test)
vq_nmse = normalised_mse(vq_recon, x_test)
naive_nmse = normalised_mse(in_batches(lambda x: vqvaes["naive"](x)[0].clamp(-1, 1), x_test), x_test)
print(f"bit budget {bits:.0f} bits per image = {components} PCA coefficients at 8 bits")
print(f"test MSE / pixel variance: VQ-VAE (cured) {vq_nmse:.3f} | VQ-VAE (naive) {naive_nmse:.3f} | "
      f"PCA {pca_nmse:.3f} | autoencoder with {cfg['ae_channels'] * 49} real numbers {ae_nmse:.3f}")
fig, axes = plt.subplots(3, 1, figsize=(9, 2.6))
for ax, (title, images) in zip(axes, [("test images", x_test), (f"VQ-VAE, {bits:.0f} bits", vq_recon),
                                      (f"PCA, {components} coefficients x 8 bits", pca_recon)]):
    genbook.show_images(images[:16], nrow=16, ax=ax, title=title)
plt.show()
assert vq_nmse <= pca_nmse, (vq_nmse, pca_nmse)

# %% [markdown]
# ## 4. A prior over the codes
#
# The VQ-VAE is trained with a *uniform* prior over codes (its KL term is a constant, so it
# drops out), and decoding uniform random codes gives nonsense, as the ladder below shows.
# The second stage of van den Oord et al. fits a real prior $p(c)$ to the codes of the training
# images, an autoregressive one:
#
# $$
# p(c_1, \dots, c_{49}) = \prod_{i=1}^{49} p(c_i \mid c_1, \dots, c_{i-1}),
# $$
#
# with the 7×7 grid read in raster order. Where the paper used a PixelCNN, we use chapter 01's
# GPT from genbook, with one extra token, `BOS`, that starts every sequence. It is trained
# with the cross-entropy of the next code and measured in **bits per code** on the codes of the
# test images, against the **unigram** model, which knows only how often each code occurs.

# %%
BOS = K
code_grid_train = encode_codes(vq, x_train[:cfg["prior_images"]]).flatten(1)  # (N, 49)
code_grid_test = encode_codes(vq, x_test).flatten(1)
seq_train = torch.cat([torch.full((len(code_grid_train), 1), BOS), code_grid_train], 1)  # (N, 50)
seq_test = torch.cat([torch.full((len(code_grid_test), 1), BOS), code_grid_test], 1)
length = code_grid_train.shape[1]


def train_prior(model):
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["prior_lr"], weight_decay=0.01)

    def step(seq):
        return model.loss(seq[:, :-1], seq[:, 1:])  # −log p(c_i | BOS, c_<i), averaged over i and the batch

    data = genbook.batches(seq_train, batch_size=cfg["prior_batch"], generator=torch.Generator().manual_seed(13), device=device)
    history = genbook.fit(step, data, cfg["prior_steps"], model=model, optimizer=optimizer, desc="prior",
                          lr_schedule=genbook.warmup_cosine(cfg["prior_lr"], cfg["prior_steps"], cfg["warmup"]))
    return {"history": history}


torch.manual_seed(14)  # the same initial prior whether the VQ-VAEs were trained or loaded
prior, prior_info = genbook.load_or_train(
    GPT(K + 1, length, d_model=cfg["prior_d"], n_heads=cfg["prior_heads"], n_layers=cfg["prior_layers"]).to(device),
    train_prior, chapter="03_vqvae", name="prior", config=cfg,
    parent=vq_infos["cured"])  # trained on that VQ-VAE's codes: a changed VQ-VAE (settings or code) retrains it
prior.eval()
with torch.no_grad():
    prior_nats = torch.cat([F.cross_entropy(prior(s[:, :-1].to(device)).transpose(1, 2), s[:, 1:].to(device),
                                            reduction="none").cpu() for s in seq_test.split(1000)])
prior_bits_per_code = prior_nats.mean().item() / math.log(2)
counts = torch.bincount(code_grid_train.flatten(), minlength=K).double() + 1  # add-one: no code costs ∞
unigram = counts / counts.sum()
unigram_bits_per_code = -unigram[code_grid_test.flatten()].log2().mean().item()
print(f"prior: {count_parameters(prior):,} parameters; held-out {prior_bits_per_code:.3f} bits per code vs "
      f"unigram {unigram_bits_per_code:.3f} (uniform: {math.log2(K):.3f})")
fig, ax = plt.subplots(figsize=(6, 3))
per_position = prior_nats.mean(0) / math.log(2)
ax.bar(range(1, length + 1), per_position.numpy(), color="tab:blue", label="AR prior")
ax.axhline(unigram_bits_per_code, color="tab:red", ls="--", label="unigram")
ax.set(xlabel="position in raster order", ylabel="bits per code (test set)", title="what the prior knows, by position")
ax.legend()
plt.show()
print(f"first code {per_position[0]:.2f} bits, the rest {per_position[1:].mean():.2f} bits on average "
      f"(unigram {unigram_bits_per_code:.2f})")
assert prior_bits_per_code <= unigram_bits_per_code - 1, (prior_bits_per_code, unigram_bits_per_code)

# %% [markdown]
# The first code is the most expensive: the prior has seen nothing of the image yet (the
# printout below compares it with the unigram model). After it, each code is cheaper because
# its neighbours above and to the left have been read. The sampler is the chain rule run forwards: draw $c_1$ from
# $p(c_1 \mid \texttt{BOS})$, append it, draw $c_2$, and so on, 49 times, never allowing `BOS`
# itself; then look up the codes in the codebook and decode.

#
# Reading the whole prefix again for every new code would cost $1 + 2 + \dots + 49$ token
# passes per image. A **key/value cache** (chapter 09 builds it into genbook's GPT) keeps each
# layer's keys and values of the tokens already read, so each step reads one new token. The
# cache changes the cost, not the samples; the check below draws the same codes both ways.

# %%
@torch.no_grad()
def sample_codes(b, gen, temperature=1.0, use_cache=True):
    """b code grids (b, 7, 7) from the prior, one position at a time."""
    cache = prior.new_cache(b) if use_cache else None
    seq = torch.full((b, 1), BOS, device=device)
    for _ in range(length):
        logits = prior(seq[:, -1:] if use_cache else seq, cache=cache)[:, -1, :K]  # p(c_i | c_<i); BOS is no code
        next_code = torch.multinomial((logits / temperature).softmax(-1), 1, generator=gen)
        seq = torch.cat([seq, next_code.to(device)], dim=1)
    return seq[:, 1:].view(b, grid, grid)


with_cache = sample_codes(8, torch.Generator(device=device).manual_seed(9))
without_cache = sample_codes(8, torch.Generator(device=device).manual_seed(9), use_cache=False)
assert torch.equal(with_cache, without_cache), "the cache must not change the samples"


def decode_codes(codes):
    return vq.decoder(vq.quantizer.decode_codes(codes.to(device))).clamp(-1, 1)


stages = [vq_training["cured"], prior_info.get("training")]  # the cost of the tokenizer, then of the prior
prior_samples, prior_cost = timed_sampling(lambda b, gen: decode_codes(sample_codes(b, gen)), n,
                                           batch_size=cfg["sample_batch"], nfe=length, device=device)
print(f"prior samples: {prior_cost['ms_per_image']:.2f} ms per image ({length} cached transformer steps each)")
print("saved:", repo_relative(save_samples("03_vqvae", "vqvae_prior", prior_samples, cost=prior_cost,
                                           steps=cfg["prior_steps"],
                                           training=None if None in stages else stages)))

# %% [markdown]
# **The ladder.** Four ways to choose the 49 codes, decoded by the same decoder: uniformly at
# random; independently from their unigram frequencies; from the autoregressive prior; and the
# codes of real test images (reconstructions, the best this tokenizer can do). Each rung
# measured with the protocol:

# %%
g = torch.Generator().manual_seed(8)
ladder_codes = {
    "random codes": torch.randint(K, (n, grid, grid), generator=g),
    "unigram codes": torch.multinomial(unigram.float(), n * grid * grid, replacement=True, generator=g).view(n, grid, grid),
}
ladder = {name: in_batches(decode_codes, codes) for name, codes in ladder_codes.items()}
ladder["AR prior"] = prior_samples
ladder["reconstructions"] = vq_recon[:n]
ladder_eval = {name: evaluate_fashion(images, n=n, evaluator=evaluator) for name, images in ladder.items()}
fig, axes = plt.subplots(len(ladder), 1, figsize=(9, 0.9 * len(ladder) + 0.4))
for ax, (name, images) in zip(axes, ladder.items()):
    genbook.show_images(images[:16], nrow=16, ax=ax, title=f"{name}: FD {ladder_eval[name]['fd']:.0f}")
plt.show()

table = [(name, r["fd"], r["fd_ci"], r["precision"], r["recall"]) for name, r in ladder_eval.items()]
table += [("VAE samples", vae_eval["fd"], vae_eval["fd_ci"], vae_eval["precision"], vae_eval["recall"])]
print(f"{'':<22} {'FD':>7} {'±':>5} {'precision':>9} {'recall':>7}")
for name, fd, ci, p, r in table:
    print(f"{name:<22} {fd:7.1f} {ci:5.1f} {p:9.2f} {r:7.2f}")
for key in ("fd_real_vs_real", "fd_blurred", "fd_pca_gaussian"):
    print(f"{key[3:]:<22} {baselines[key]:7.1f}")

fig, ax = plt.subplots(figsize=(7, 3))
names = list(ladder_eval) + ["VAE samples"]
values = [ladder_eval[k]["fd"] for k in ladder_eval] + [vae_eval["fd"]]
errors = [ladder_eval[k]["fd_ci"] for k in ladder_eval] + [vae_eval["fd_ci"]]
ax.barh(names, values, xerr=errors, color="tab:blue")
for key, colour in (("fd_real_vs_real", "0.4"), ("fd_blurred", "tab:green"), ("fd_pca_gaussian", "tab:red")):
    ax.axvline(baselines[key], color=colour, ls="--", label=key[3:].replace("_", " "))
ax.set(xscale="log", xlabel=f"FD (n = {n}, log scale)", title="the ladder of samples")
ax.legend(fontsize=8)
plt.show()

fd_prior = ladder_eval["AR prior"]["fd"]
assert fd_prior <= 0.5 * baselines["fd_pca_gaussian"], (fd_prior, baselines)
assert fd_prior < ladder_eval["unigram codes"]["fd"] < ladder_eval["random codes"]["fd"], ladder_eval

# %% [markdown]
# What the ladder says, in the protocol's own terms:

# %%
rung = {name: ladder_eval[name] for name in ("random codes", "unigram codes", "AR prior", "reconstructions")}
print(f"random and unigram codes: recall {rung['random codes']['recall']:.2f} and {rung['unigram codes']['recall']:.2f}, "
      f"precision {rung['random codes']['precision']:.2f} and {rung['unigram codes']['precision']:.2f}: the right codes "
      "in the wrong arrangement decode to images that cover almost none of the real ones")
print(f"AR prior: FD {fd_prior:.1f} = {fd_prior / baselines['fd_pca_gaussian']:.2f} x the PCA-Gaussian's, "
      f"{fd_prior / baselines['fd_blurred']:.2f} x the blurred data's; precision {rung['AR prior']['precision']:.2f}, "
      f"recall {rung['AR prior']['recall']:.2f}")
print(f"still to win by a better prior: FD {fd_prior:.1f} -> {rung['reconstructions']['fd']:.1f} (reconstructions); "
      f"by a better tokenizer: {rung['reconstructions']['fd']:.1f} -> {baselines['fd_real_vs_real']:.1f} (real vs real)")

# %% [markdown]
# The arrangement is what the prior adds: the same codebook and decoder, fed the prior's codes
# instead of independent ones, jump from covering almost nothing to precision and recall of
# real generative models. The last two lines split what is left into what a better prior could
# win (down to the reconstructions) and what only a better tokenizer could win (down to the
# floor).
#
# ## 5. FSQ: a codebook without a codebook
#
# Codebook losses, moving averages, restarts: much of the VQ-VAE's machinery exists to keep a
# learned codebook alive. **Finite scalar quantization** (Mentzer et al. 2024) removes the
# codebook. The encoder outputs a few channels; each channel $j$ is squashed into a bounded
# range, $\tfrac{L_j - 1}{2}\tanh(z_j)$, and rounded to the nearest integer (with the
# straight-through gradient), giving $L_j$ levels. The code of a position is the tuple of its
# rounded values, one point of a fixed grid with $\prod_j L_j$ points: an implicit codebook
# that cannot collapse, since nothing in it is learned. There is no codebook loss and no
# commitment loss. We train the same encoder and decoder with a grid of the same size as the
# VQ codebook:

# %%
fsq = FSQ(cfg["fsq_levels"])
print(f"FSQ levels {cfg['fsq_levels']}: {fsq.num_codes} implicit codes (VQ: K = {K})")
assert fsq.num_codes == K, "compare at the same number of codes"
torch.manual_seed(7)
fsq_vae, fsq_info = genbook.load_or_train(VQVAE(fsq, fsq.code_dim).to(device), train_vqvae,
                                          chapter="03_vqvae", name="fsq", config=cfg)
fsq_vae.eval()
fsq_usage = codebook_usage(encode_codes(fsq_vae, x_test), fsq.num_codes)
fsq_nmse = normalised_mse(in_batches(lambda x: fsq_vae(x)[0].clamp(-1, 1), x_test), x_test)
print(f"{'quantizer':<12} {'usage':>6} {'perplexity':>10} {'test MSE / var':>14}")
for name, usage, nmse in (("VQ naive", usage_test["naive"], naive_nmse), ("VQ cured", usage_test["cured"], vq_nmse),
                          ("FSQ", fsq_usage, fsq_nmse)):
    print(f"{name:<12} {100 * usage['usage']:5.0f}% {usage['perplexity']:10.1f} {nmse:14.3f}")

# %% [markdown]
# The table says how FSQ compares, in this run, with both VQ variants at the same number of
# codes, training steps and network. FSQ gets its usage for free, with none of the cures.
# Mentzer et al. find the same at scale, and FSQ's grid has a second advantage this chapter
# does not exploit: neighbouring codes are neighbouring points, so codes carry a geometry.
#
# ## 6. Where this goes next
#
# - **VQ-VAE-2** (Razavi et al. 2019): a hierarchy of code grids (coarse 32×32 and fine 64×64 on
#   256×256 images) with PixelCNN priors, the first VQ model with high-fidelity samples.
# - **VQGAN** (Esser et al. 2021): a VQ-VAE trained with a perceptual loss and a patch
#   discriminator (chapter 04), which keeps textures sharp at much higher compression, and a
#   transformer prior over its codes.
# - **DALL·E's dVAE** (Ramesh et al. 2021): a 32×32 grid of 8,192 codes per image, relaxed with the
#   Gumbel-softmax instead of the straight-through estimator; chapter 09 builds its two-stage
#   recipe on captioned shapes.
# - **Latent diffusion** (Rombach et al. 2022): keep the latents continuous, regularised by a
#   small KL (or a VQ layer), and model them with diffusion instead of a transformer;
#   chapter 08. The autoencoder of §1 is that chapter's first stage.
#
# ## Results

# %%
metrics = {
    "vae_bpd": vae_bpd, "vae_elbo_bpd": elbo_bpd,
    "vq_recon_nmse": vq_nmse, "vq_usage": usage_test["cured"]["usage"],
    "vq_perplexity": usage_test["cured"]["perplexity"], "codebook_size": K,
    "prior_bits_per_code": prior_bits_per_code,
    "fd_prior": fd_prior, "fd_ci_prior": ladder_eval["AR prior"]["fd_ci"],
    "precision_prior": ladder_eval["AR prior"]["precision"], "recall_prior": ladder_eval["AR prior"]["recall"],
    "fd_reconstructions": ladder_eval["reconstructions"]["fd"], "fd_vae": vae_eval["fd"],
    "fsq_usage": fsq_usage["usage"], "fsq_perplexity": fsq_usage["perplexity"], "fsq_recon_nmse": fsq_nmse,
}
report_baselines = {
    "ppca_bpd": ppca, "independent_pixels_bpd": independent, "pca_recon_nmse": pca_nmse,
    "naive_perplexity": usage_test["naive"]["perplexity"], "naive_usage": usage_test["naive"]["usage"],
    "unigram_bits_per_code": unigram_bits_per_code,
    "fd_unigram_codes": ladder_eval["unigram codes"]["fd"], "fd_random_codes": ladder_eval["random codes"]["fd"],
    **baselines,
}
record = genbook.report("03_vqvae", metrics=metrics, baselines=report_baselines, n_samples=n,
                        timings={"ms_per_image_prior": prior_cost["ms_per_image"],
                                 "ms_per_image_vae": vae_cost["ms_per_image"]},
                        parameters_prior=count_parameters(prior), parameters_vqvae=count_parameters(vq))
print(f"recorded {len(metrics)} metrics and {len(report_baselines)} baselines for 03_vqvae")

# %% [markdown]
# ## Exercises
#
# **Exercise 3.1: the KL of two diagonal Gaussians.** The VAE's KL was to a standard normal.
# Write `gaussian_kl(mu_q, logvar_q, mu_p, logvar_p)`, the elementwise
# $\mathrm{KL}(\mathcal N(\mu_q, \sigma_q^2)\,\Vert\,\mathcal N(\mu_p, \sigma_p^2))$ for log-variances,
# as used when the prior is learned (VQ-VAE-2's hierarchy, or a conditional prior).

# %% tags=["exercise"]
def gaussian_kl(mu_q, logvar_q, mu_p, logvar_p):
    """Elementwise KL(N(mu_q, exp(logvar_q)) || N(mu_p, exp(logvar_p))), same shape as the inputs."""
    # BEGIN SOLUTION
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p) ** 2) / logvar_p.exp() - 1)
    # END SOLUTION


# %%
from genbook.exercises.vqvae import check_gaussian_kl

check_gaussian_kl(gaussian_kl)

# %% [markdown]
# **Exercise 3.2: nearest code with a straight-through gradient.** Write
# `vector_quantize(z, codebook)` for flat vectors `z` (N, D) and a codebook (K, D): return the
# quantized vectors (N, D), whose gradient with respect to `z` is the identity, and the codes (N,).

# %% tags=["exercise"]
def vector_quantize(z, codebook):
    """(N, D), (K, D) -> (z_q (N, D) with straight-through gradient, codes (N,) int64)."""
    # BEGIN SOLUTION
    codes = torch.cdist(z, codebook).argmin(1)
    e = codebook[codes]
    return z + (e - z).detach(), codes
    # END SOLUTION


# %%
from genbook.exercises.vqvae import check_vector_quantize

check_vector_quantize(vector_quantize)

# %% [markdown]
# **Exercise 3.3: FSQ rounding.** Write `fsq_round(z, levels)` for `z` (N, d) and a list of
# $d$ level counts: bound channel $j$ with $\tfrac{L_j-1}{2}\tanh$, shifted by a half for even
# $L_j$ so that the $L_j$ levels are symmetric, round with a straight-through gradient, and
# divide by $\lfloor L_j/2 \rfloor$. The result must equal genbook's `FSQ` on the same inputs.
# Hint: for even $L$ the bound is $\tfrac{L-1}{2}\tanh(z + s) - \tfrac12$ with $s = \operatorname{artanh}(\tfrac{1}{L-1})$.

# %% tags=["exercise"]
def fsq_round(z, levels):
    """(N, d) -> (N, d) quantized to the FSQ grid in [-1, 1], straight-through gradient."""
    # BEGIN SOLUTION
    L = torch.tensor(levels, dtype=z.dtype)
    half = (L - 1) / 2
    offset = torch.where(L % 2 == 0, 0.5, 0.0)
    bounded = half * torch.tanh(z + torch.atanh(offset / half)) - offset
    rounded = bounded + (bounded.round() - bounded).detach()
    return rounded / torch.div(L, 2, rounding_mode="floor")
    # END SOLUTION


# %%
from genbook.exercises.vqvae import check_fsq_round

check_fsq_round(fsq_round)

# %% [markdown]
# **Exercise 3.4 (no check): the temperature of the prior.** Sample the prior with temperatures
# 0.7, 0.85, 1.0 and 1.2 (`sample_codes(b, gen, temperature=...)`) and plot FD, precision and
# recall against the temperature. Which number moves with precision, which with recall, and
# why is the comparison with other chapters fair only at temperature 1?
#
# **Exercise 3.5 (no check): the decoder's scale, and β.** Give the VAE's decoder a scale per
# pixel (a learned (1, 1, 28, 28) tensor), then a scale computed from $z$ (a second output channel
# of the decoder). For each, measure the IWAE bound, the reconstruction error of the means and the
# FD of means and draws. Which gains bits/dim, which loses sample quality, and why (look at the
# weight $1/s^2$ on each pixel's error)? Then train the one-scale VAE with the KL term multiplied
# by $\beta \in \{0.5, 2\}$ (Higgins et al. 2017) and evaluate the bound with $\beta = 1$ (only that
# is a bound): how do the bits/dim, the blur and the gap between the first and third rows of the
# samples table move?
#
# **Exercise 3.6 (no check): the size of the codebook.** Repeat §3 with $K \in \{16, 256\}$, and
# the PCA baseline at each bit budget. Does the learned code keep its lead as the budget grows?
# What happens to the perplexity of the naive quantizer?
