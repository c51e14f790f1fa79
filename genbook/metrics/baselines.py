"""Baselines for image FD, computed in the same run at the same sample count.

An FD means little alone (it depends on the feature space and on n), so every
image chapter reports its model's FD next to

* the real-vs-real floor: FD between n training images and the n reference
  test images, what a perfect model would score at this n;
* a PCA-Gaussian model: a Gaussian on the top principal components of the
  training images (probabilistic PCA without the isotropic noise; Tipping &
  Bishop 1999), the simplest generative model with a density. A deep model
  that does not beat it has learned little;
* blurred training images: n training images blurred by a Gaussian of σ = 1 px,
  real content without fine detail. Image models of the fast profile land near
  it, so it shows what "beats PCA-Gaussian" is worth.

The reference set of a chapter is ``reference_images(n)``: the first n test
images (the files are shuffled, so they are a fair sample).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from genbook.metrics.fashion_evaluator import MIN_IMAGES_FD, FashionEvaluator, fashion_evaluator, fashion_fd
from genbook.validation import check_tensor

N_TEST = 10_000


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= N_TEST:
        raise ValueError(f"n must be an int in 1..{N_TEST} (the size of the test set), got {n!r}.")
    return n


def reference_images(n: int) -> torch.Tensor:
    """The first ``n`` Fashion-MNIST test images (n, 1, 28, 28) in [-1, 1]: the FD reference set."""
    from genbook.data.fashion_mnist import fashion_mnist

    return fashion_mnist("test", n=_check_n(n))[0]


def train_sample(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` training images (n, 1, 28, 28) and labels (n,), drawn without replacement from ``seed``."""
    from genbook.data.fashion_mnist import fashion_mnist

    x, y = fashion_mnist("train")
    index = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    return x[index], y[index]


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur images (N, C, H, W) with a Gaussian of std ``sigma`` pixels (separable, reflect padding)."""
    check_tensor(images, "images", shape=("N", "C", "H", "W"), dtype="floating")
    if sigma <= 0:
        return images.clone()
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()  # (K,)
    c = images.shape[1]
    out = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)  # along W
    out = F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)  # along H
    return out


class PCAGaussian:
    """x = μ + V_k diag(√λ) z, z ~ N(0, I_k): a Gaussian on the top-k principal subspace.

    ``fit(images)`` takes (N, C, H, W); ``sample(n)`` returns (n, C, H, W)
    clipped to [-1, 1]. V_k (D, k) holds the top-k eigenvectors of the pixel
    covariance and λ their eigenvalues, so samples have the data's mean and its
    covariance restricted to those k directions.
    """

    def __init__(self, n_components: int = 32):
        if not isinstance(n_components, int) or n_components < 1:
            raise ValueError(f"n_components must be a positive int, got {n_components!r}.")
        self.n_components = n_components
        self.mean: torch.Tensor | None = None

    def fit(self, images: torch.Tensor) -> PCAGaussian:
        check_tensor(images, "images", shape=("N", "C", "H", "W"), dtype="floating", min_batch=self.n_components + 1)
        self.image_shape = tuple(images.shape[1:])
        x = images.detach().reshape(len(images), -1).cpu().float()  # (N, D)
        self.mean = x.mean(0)
        centred = x - self.mean
        cov = (centred.T @ centred).double() / (len(x) - 1)  # (D, D)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)  # ascending
        self.variances = eigenvalues.flip(0)[: self.n_components].clamp(min=0).float()  # λ (k,)
        self.components = eigenvectors.flip(1)[:, : self.n_components].float()  # V_k (D, k)
        self.explained_variance = (self.variances.sum() / eigenvalues.clamp(min=0).sum()).item()
        return self

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.mean is None:
            raise RuntimeError("Call fit(images) before sample(n).")
        z = torch.randn(n, self.n_components, generator=generator)  # (n, k)
        x = self.mean + (z * self.variances.sqrt()) @ self.components.T  # (n, D)
        return x.clamp(-1, 1).reshape(n, *self.image_shape)


@functools.lru_cache(maxsize=4)
def fit_pca_gaussian(n_components: int = 32) -> PCAGaussian:
    """A PCAGaussian fitted on all 60,000 Fashion-MNIST training images.

    The fit is deterministic, so it is kept per process (a second call is free);
    treat the returned model as read-only.
    """
    from genbook.data.fashion_mnist import fashion_mnist

    return PCAGaussian(n_components).fit(fashion_mnist("train")[0])


def real_vs_real_fd(
    n: int, *, seed: int = 0, evaluator: FashionEvaluator | None = None, min_samples: int = MIN_IMAGES_FD
) -> float:
    """FD floor: ``n`` training images (drawn with ``seed``) vs ``reference_images(n)``."""
    samples = train_sample(_check_n(n), seed)[0]
    return fashion_fd(samples, reference_images(n), evaluator=evaluator, min_samples=min_samples)


def pca_gaussian_fd(
    n: int,
    *,
    n_components: int = 32,
    seed: int = 0,
    evaluator: FashionEvaluator | None = None,
    min_samples: int = MIN_IMAGES_FD,
) -> float:
    """FD of ``n`` PCA-Gaussian samples (drawn with ``seed``) vs ``reference_images(n)``."""
    samples = fit_pca_gaussian(n_components).sample(_check_n(n), torch.Generator().manual_seed(seed))
    return fashion_fd(samples, reference_images(n), evaluator=evaluator, min_samples=min_samples)


def blurred_fd(
    n: int,
    *,
    sigma: float = 1.0,
    seed: int = 0,
    evaluator: FashionEvaluator | None = None,
    min_samples: int = MIN_IMAGES_FD,
) -> float:
    """FD of ``n`` training images (drawn with ``seed``) blurred by ``gaussian_blur(sigma)`` vs the reference set.

    Real content without its fine detail: σ = 1 px scores about 72 at n = 1000, near the models of the fast profile.
    """
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0 < sigma <= 10:
        raise ValueError(f"sigma must be a number in (0, 10] pixels, got {sigma!r}.")
    blurred = gaussian_blur(train_sample(_check_n(n), seed)[0], sigma).clamp(-1, 1)  # clamp: round-off only
    return fashion_fd(blurred, reference_images(n), evaluator=evaluator, min_samples=min_samples)


def image_baselines(
    n: int, *, seed: int = 0, evaluator: FashionEvaluator | None = None, min_samples: int = MIN_IMAGES_FD
) -> dict[str, float]:
    """The FD baselines at ``n`` samples, ready for ``genbook.report(..., baselines=...)``.

    Keys: ``fd_real_vs_real``, ``fd_pca_gaussian`` and ``fd_blurred`` (σ = 1 px).

    Pass the n your model's FD used: ``fashion_fd(samples, reference_images(n))``.
    """
    ev = evaluator if evaluator is not None else fashion_evaluator()
    return {
        "fd_real_vs_real": real_vs_real_fd(n, seed=seed, evaluator=ev, min_samples=min_samples),
        "fd_pca_gaussian": pca_gaussian_fd(n, seed=seed, evaluator=ev, min_samples=min_samples),
        "fd_blurred": blurred_fd(n, seed=seed, evaluator=ev, min_samples=min_samples),
    }
