"""Likelihoods of images in bits per dimension, and the closed forms behind them.

Images in the book live in [-1, 1] but come from 8-bit pixels: 256 levels. A
continuous density p(y) on such data can cheat (pile infinite density on the
grid), so continuous models are scored on *uniformly dequantised* data
(Theis et al. 2016, "A note on the evaluation of generative models"):

    y = (k + u) / 256 · 2 − 1,   k ∈ {0..255} the pixel level,  u ~ U[0, 1),

and then −E_u[log p(y)] + D log(256/2) ≥ −log P(k) is an upper bound on the
negative log-likelihood of the *discrete* image, in nats; divided by D ln 2 it
is bits/dim, comparable with discrete models such as a categorical per pixel.

* ``dequantize``, ``bpd_from_nll``: the two steps above;
* ``diagonal_gaussian_kl``: KL(N(μ₁, σ₁²) ‖ N(μ₂, σ₂²)) per dimension, the VAE's closed form;
* ``iwae_bound``: log (1/k) Σ w_i from log-weights (Burda et al. 2016);
* ``PPCA`` / ``ppca_bpd``: probabilistic PCA (Tipping & Bishop 1999), exact likelihood;
* ``independent_pixels_bpd``: a categorical per pixel, the simplest discrete baseline.
"""

from __future__ import annotations

import math

import torch

from genbook.validation import check_tensor

LEVELS = 256


def _check_images(x, name: str) -> torch.Tensor:
    check_tensor(x, name, shape=("N", "C", "H", "W"), dtype="floating", min_batch=1)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    check_tensor(x, name, value_range=(-1.0, 1.0))
    return x


def pixel_levels(images: torch.Tensor) -> torch.Tensor:
    """The 8-bit level k ∈ {0..255} (int64, same shape) of images in [-1, 1]."""
    _check_images(images, "images")
    return torch.round((images + 1) * (LEVELS - 1) / 2).long().clamp(0, LEVELS - 1)


def dequantize(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """y = (k + u) / 256 · 2 − 1 with u ~ U[0, 1): continuous images in [-1, 1), same shape as ``images``."""
    k = pixel_levels(images).to(images.dtype)
    u = torch.rand(images.shape, generator=generator, dtype=images.dtype).to(images.device)
    return (k + u) / LEVELS * 2 - 1


def bpd_from_nll(nll_nats, num_dims: int, data_range: float = 2.0):
    """Bits/dim of the discrete data from the NLL (nats per image) of dequantised data.

    The data were scaled from bins of width 1/256 to bins of width data_range/256, which
    changed the density by (256/data_range)^D: bpd = nll / (D ln 2) + log2(256 / data_range).
    Works on floats and tensors alike.
    """
    if isinstance(num_dims, bool) or not isinstance(num_dims, int) or num_dims < 1:
        raise ValueError(f"num_dims must be a positive int, got {num_dims!r}.")
    if not data_range > 0:
        raise ValueError(f"data_range must be > 0 (2 for images in [-1, 1]), got {data_range!r}.")
    return nll_nats / (num_dims * math.log(2)) + math.log2(LEVELS / data_range)


def diagonal_gaussian_kl(mu_q: torch.Tensor, logvar_q: torch.Tensor,
                         mu_p: torch.Tensor | float = 0.0, logvar_p: torch.Tensor | float = 0.0) -> torch.Tensor:
    """KL(N(μ_q, e^{logvar_q}) ‖ N(μ_p, e^{logvar_p})) elementwise (sum over dimensions yourself).

    KL = ½ [ logvar_p − logvar_q + (e^{logvar_q} + (μ_q − μ_p)²) / e^{logvar_p} − 1 ]
    (Kingma & Welling 2014, appendix B, for the prior N(0, I)).
    """
    mu_p = torch.as_tensor(mu_p, dtype=mu_q.dtype, device=mu_q.device)
    logvar_p = torch.as_tensor(logvar_p, dtype=mu_q.dtype, device=mu_q.device)
    if mu_q.shape != logvar_q.shape:
        raise ValueError(f"mu_q {tuple(mu_q.shape)} and logvar_q {tuple(logvar_q.shape)} must have the same shape.")
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p) ** 2) / logvar_p.exp() - 1)


def iwae_bound(log_weights: torch.Tensor) -> torch.Tensor:
    """log (1/k) Σ_i exp(log w_i) over the last dimension (Burda et al. 2016, eq. 8), shape (...,).

    log w_i = log p(x, z_i) − log q(z_i | x) with z_i ~ q(z | x); k = 1 is the ELBO, and the bound
    tightens towards log p(x) as k grows.
    """
    check_tensor(log_weights, "log_weights", dtype="floating")
    if log_weights.dim() < 1 or log_weights.shape[-1] < 1:
        raise ValueError("log_weights needs a last dimension of k >= 1 importance samples.")
    return torch.logsumexp(log_weights, dim=-1) - math.log(log_weights.shape[-1])


class PPCA:
    """Probabilistic PCA (Tipping & Bishop 1999): x = μ + W z + ε, z ~ N(0, I_q), ε ~ N(0, σ² I_D).

    The maximum-likelihood fit is closed form (their eqs. 7–8): with the eigenvalues λ₁ ≥ … ≥ λ_D
    and eigenvectors U of the data covariance, σ² = mean(λ_{q+1..D}) and W = U_q (Λ_q − σ² I)^{1/2}.
    The marginal is N(μ, C) with C = W Wᵀ + σ² I, whose eigenvalues are λ₁..λ_q and σ² (D − q
    times), so log p(x) is exact. ``fit`` and ``log_prob`` take flat data (N, D).
    """

    def __init__(self, latent_dim: int):
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
            raise ValueError(f"latent_dim must be a positive int, got {latent_dim!r}.")
        self.latent_dim = latent_dim
        self.mean = None

    def fit(self, x: torch.Tensor) -> PPCA:
        check_tensor(x, "x", shape=("N", "D"), dtype="floating", min_batch=2)
        if self.latent_dim >= x.shape[1]:
            raise ValueError(f"latent_dim ({self.latent_dim}) must be below the data dimension {x.shape[1]}.")
        x = x.detach().double().cpu()
        self.mean = x.mean(0)
        centred = (x - self.mean).float()  # the (D, D) product in float32 (4x faster), eigh in float64
        eigenvalues, eigenvectors = torch.linalg.eigh((centred.T @ centred).double() / len(x))  # ML cov, ascending
        eigenvalues, eigenvectors = eigenvalues.flip(0).clamp(min=0), eigenvectors.flip(1)
        q = self.latent_dim
        self.sigma2 = eigenvalues[q:].mean().clamp(min=1e-12)  # σ², eq. 8
        self.top_values, self.top_vectors = eigenvalues[:q], eigenvectors[:, :q]  # Λ_q (q,), U_q (D, q)
        self.W = self.top_vectors * (self.top_values - self.sigma2).clamp(min=0).sqrt()  # eq. 7, R = I
        return self

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log N(x; μ, W Wᵀ + σ² I) for x (N, D), shape (N,), float64."""
        if self.mean is None:
            raise RuntimeError("Call fit(x) before log_prob(x).")
        check_tensor(x, "x", shape=("N", self.mean.shape[0]), dtype="floating")
        centred = x.detach().double().cpu() - self.mean
        coords = centred @ self.top_vectors  # (N, q): the part in the principal subspace
        variances = torch.maximum(self.top_values, self.sigma2)  # eigenvalues of C in that subspace
        inside = (coords**2 / variances).sum(1)
        outside = (centred.square().sum(1) - coords.square().sum(1)) / self.sigma2
        dim = self.mean.shape[0]
        log_det = variances.log().sum() + (dim - self.latent_dim) * self.sigma2.log()
        return -0.5 * (inside + outside + log_det + dim * math.log(2 * math.pi))


def ppca_bpd(train_images: torch.Tensor, test_images: torch.Tensor, latent_dim: int, seed: int = 0) -> float:
    """Exact bits/dim of a PPCA with ``latent_dim`` latents fitted on dequantised training images.

    Images (N, C, H, W) in [-1, 1]; both sets dequantised with one seeded generator.
    """
    _check_images(train_images, "train_images")
    _check_images(test_images, "test_images")
    g = torch.Generator().manual_seed(seed)
    train = dequantize(train_images.cpu().double(), g).flatten(1)
    test = dequantize(test_images.cpu().double(), g).flatten(1)
    nll = -PPCA(latent_dim).fit(train).log_prob(test).mean().item()
    return bpd_from_nll(nll, train.shape[1])


def independent_pixels_bpd(train_images: torch.Tensor, test_images: torch.Tensor, alpha: float = 1.0) -> float:
    """Bits/dim of a categorical distribution per pixel over its 256 levels, fitted by counting.

    P(k at pixel j) = (count_j(k) + α) / (N + 256 α) (add-α smoothing, so an unseen level costs
    finitely many bits). A discrete model: no dequantisation needed.
    """
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0 (add-alpha smoothing), got {alpha!r}.")
    train = pixel_levels(_check_images(train_images, "train_images").cpu()).flatten(1)  # (N, D)
    test = pixel_levels(_check_images(test_images, "test_images").cpu()).flatten(1)
    if train.shape[1] != test.shape[1]:
        raise ValueError(f"train and test images differ in size: {train.shape[1]} vs {test.shape[1]} values.")
    dim = train.shape[1]
    counts = torch.zeros(dim, LEVELS, dtype=torch.float64)
    counts.scatter_add_(1, train.T.contiguous(), torch.ones(dim, len(train), dtype=torch.float64))
    log_p = ((counts + alpha) / (len(train) + LEVELS * alpha)).log2()  # (D, 256)
    return -log_p.gather(1, test.T.contiguous()).mean().item()
