"""The image protocol for the captioned shapes: FD, precision/recall and adherence, with baselines.

It mirrors the Fashion-MNIST protocol (``genbook.metrics.protocol`` and
``genbook.metrics.baselines``) so that chapters 08 and 09 measure their images the
way chapters 04 to 07 measure theirs:

* ``shapes_features``: the feature space of the shapes evaluator. The evaluator reads
  each of the 9 grid cells with one small CNN and outputs, per cell, the logits of
  "occupied" (2), colour (6), shape (4) and size (2); the 14 logits of the 9 cells,
  concatenated in cell order, give 126 numbers per image: everything the evaluator
  reads, in place. (This is not Inception FID, and its values are not comparable
  with the Fashion-MNIST FD.)
* ``shapes_reference(n)``: the first n images of a fixed held-out draw (seed
  ``REFERENCE_SEED``), never used for training anything;
* ``shapes_fd``: Fréchet distance in that space;
* ``shapes_baselines(n)``: real vs real (n fresh images of another seed against the
  reference), blurred real images (σ = 1 px), a PCA-Gaussian fitted to real images,
  and the adherence of real images to their own and to shuffled captions;
* ``evaluate_shapes``: FD with a bootstrap interval, precision and recall (k = 3)
  and, given captions, caption adherence, for n samples.
"""

from __future__ import annotations

import functools

import torch

from genbook.metrics.baselines import PCAGaussian, gaussian_blur
from genbook.metrics.fashion_evaluator import MIN_IMAGES_FD
from genbook.metrics.frechet import frechet_distance, frechet_distance_bootstrap
from genbook.metrics.precision_recall import precision_recall
from genbook.metrics.protocol import n_eval
from genbook.metrics.shapes_evaluator import (
    CONFIG,
    GRID,
    HEADS,
    ShapesEvaluator,
    caption_agreement,
    check_shapes_images,
    shapes_evaluator,
)

REFERENCE_SEED = 1001  # the FD reference set (the evaluator trains on seed 1, checks on seed 2)
REAL_SEED = 1002  # "real" images for the real-vs-real floor and the blurred baseline
PCA_SEED = 1003  # images the PCA-Gaussian baseline is fitted to
PCA_FIT_IMAGES = 2000
MAX_N = 20_000
FEATURE_DIM = GRID * GRID * sum(HEADS.values())  # 9 cells x 14 logits = 126


def _check_n(n, name: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
        raise ValueError(f"{name} must be an int in 1..{MAX_N}, got {n!r}.")
    return n


@torch.no_grad()
def shapes_features(images: torch.Tensor, *, evaluator: ShapesEvaluator | None = None,
                    batch_size: int = 500) -> torch.Tensor:
    """Features (N, 126) of images (N, 3, 32, 32) in [-1, 1]: the evaluator's 14 logits per cell, 9 cells."""
    check_shapes_images(images, "images")
    ev = evaluator if evaluator is not None else shapes_evaluator()
    dev = next(ev.parameters()).device
    was_training = ev.training
    ev.eval()
    try:
        parts = []
        for i in range(0, len(images), batch_size):
            logits = ev(images[i:i + batch_size].to(dev, torch.float32))  # name -> (b, 9, k)
            parts.append(torch.cat([logits[name] for name in HEADS], -1).flatten(1).cpu())  # (b, 9 * 14)
    finally:
        ev.train(was_training)
    return torch.cat(parts)


@functools.lru_cache(maxsize=2)
def _draw(n: int, seed: int):
    from genbook.data.shapes import make_shapes

    return make_shapes(n, seed=seed, size=CONFIG["image_size"])


def shapes_reference(n: int):
    """The FD reference set: ``make_shapes(n, seed=REFERENCE_SEED)`` (a ``ShapesBatch``; images, captions, labels)."""
    return _draw(_check_n(n), REFERENCE_SEED)


def real_shapes(n: int, seed: int = REAL_SEED):
    """n real captioned images of another draw than the reference (a ``ShapesBatch``)."""
    return _draw(_check_n(n), seed)


def shapes_fd(samples: torch.Tensor, reference: torch.Tensor, *, evaluator: ShapesEvaluator | None = None,
              min_samples: int = MIN_IMAGES_FD) -> float:
    """FD between samples (N, 3, 32, 32) and reference images (M, 3, 32, 32) in the shapes feature space.

    Both sets need at least ``min_samples`` images (1,000 by default: FD is biased at small n).
    """
    ev = evaluator if evaluator is not None else shapes_evaluator()
    for name, x in (("samples", samples), ("reference", reference)):
        check_shapes_images(x, name)
        if len(x) < min_samples:
            raise ValueError(f"{name} has {len(x)} images; shapes FD needs at least {min_samples} "
                             f"(FD is biased at small n; the book uses n >= {MIN_IMAGES_FD}).")
    return frechet_distance(shapes_features(samples, evaluator=ev), shapes_features(reference, evaluator=ev))


@functools.lru_cache(maxsize=2)
def fit_shapes_pca_gaussian(n_components: int = 32) -> PCAGaussian:
    """A PCAGaussian on ``PCA_FIT_IMAGES`` real shapes images (seed ``PCA_SEED``); kept per process, read-only.

    The 3,072 x 3,072 pixel covariance that ``PCAGaussian.fit`` decomposes costs seconds on a
    CPU; the top components come instead from a randomised SVD of the centred data
    (``torch.svd_lowrank``, Halko, Martinsson & Tropp 2011), the same model up to round-off.
    """
    images = _draw(PCA_FIT_IMAGES, PCA_SEED).images
    x = images.reshape(len(images), -1).double()  # (N, D)
    model = PCAGaussian(n_components)
    model.image_shape = tuple(images.shape[1:])
    model.mean = x.mean(0)
    centred = x - model.mean
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # svd_lowrank draws a random projection
        _, singular, vectors = torch.svd_lowrank(centred, q=n_components + 16, niter=4)
    variances = singular[:n_components].square() / (len(x) - 1)  # λ_k
    model.variances = variances.float()
    model.components = vectors[:, :n_components].float()  # V_k (D, k)
    model.explained_variance = (variances.sum() / (centred.square().sum() / (len(x) - 1))).item()
    model.mean = model.mean.float()
    return model


def shapes_baselines(n: int, *, evaluator: ShapesEvaluator | None = None, seed: int = 0,
                     min_samples: int = MIN_IMAGES_FD) -> dict[str, float]:
    """The shapes baselines at n images, ready for ``genbook.report(..., baselines=...)``.

    ``fd_real_vs_real``: n real images against ``shapes_reference(n)``, the floor;
    ``fd_blurred``: the same real images blurred by a Gaussian of σ = 1 px;
    ``fd_pca_gaussian``: n samples (from ``seed``) of ``fit_shapes_pca_gaussian()``;
    ``adherence_real``: the real images with their own captions (the evaluator's ceiling);
    ``adherence_shuffled``: the real images with the captions of other images (a random
    permutation from ``seed``): what adherence a model that ignores its caption scores.
    """
    _check_n(n)
    ev = evaluator if evaluator is not None else shapes_evaluator()
    reference, real = shapes_reference(n).images, real_shapes(n)
    g = torch.Generator().manual_seed(seed)
    pca_samples = fit_shapes_pca_gaussian().sample(n, g)
    blurred = gaussian_blur(real.images, 1.0).clamp(-1, 1)
    shuffled = [real.captions[i] for i in torch.randperm(n, generator=g).tolist()]
    return {
        "fd_real_vs_real": shapes_fd(real.images, reference, evaluator=ev, min_samples=min_samples),
        "fd_blurred": shapes_fd(blurred, reference, evaluator=ev, min_samples=min_samples),
        "fd_pca_gaussian": shapes_fd(pca_samples, reference, evaluator=ev, min_samples=min_samples),
        "adherence_real": caption_agreement(real.images, real.captions, evaluator=ev)["adherence"],
        "adherence_shuffled": caption_agreement(real.images, shuffled, evaluator=ev)["adherence"],
    }


def evaluate_shapes(samples: torch.Tensor, captions=None, *, n: int | None = None,
                    evaluator: ShapesEvaluator | None = None, n_boot: int = 100) -> dict[str, float]:
    """The protocol's numbers for samples (N, 3, 32, 32) in [-1, 1]; the first ``n`` are used.

    ``n`` defaults to ``n_eval()`` (1,000 fast, 5,000 full); the reference is
    ``shapes_reference(n).images``. Returns ``fd``, ``fd_low``, ``fd_high``, ``fd_ci``
    (bootstrap interval, see ``frechet_distance_bootstrap``), ``precision``, ``recall`` (k = 3),
    and, when ``captions`` (N caption strings, or a ``ShapesBatch.labels`` dict) are given,
    ``adherence`` and ``exact`` (see ``caption_agreement``).
    """
    check_shapes_images(samples, "samples")
    n = n_eval() if n is None else n
    if isinstance(n, bool) or not isinstance(n, int) or not MIN_IMAGES_FD <= n <= MAX_N:
        raise ValueError(f"n must be an int in {MIN_IMAGES_FD}..{MAX_N} (FD is biased below {MIN_IMAGES_FD}), "
                         f"got {n!r}.")
    if len(samples) < n:
        raise ValueError(f"samples has {len(samples)} images; the protocol evaluates n={n}. Draw at least n.")
    ev = evaluator if evaluator is not None else shapes_evaluator()
    fake = shapes_features(samples[:n], evaluator=ev)
    real = shapes_features(shapes_reference(n).images, evaluator=ev)
    fd = frechet_distance_bootstrap(fake, real, n_boot=n_boot)
    out = {"fd": fd["fd"], "fd_low": fd["low"], "fd_high": fd["high"], "fd_ci": (fd["high"] - fd["low"]) / 2}
    out.update(precision_recall(real, fake))
    if captions is not None:
        if isinstance(captions, dict):
            captions = {k: v[:n] for k, v in captions.items()}
        elif isinstance(captions, (list, tuple)):
            if len(captions) < n:
                raise ValueError(f"captions has {len(captions)} entries for n={n} samples.")
            captions = list(captions[:n])
        out.update(caption_agreement(samples[:n], captions, evaluator=ev))
    return out


__all__ = [
    "FEATURE_DIM", "REFERENCE_SEED", "evaluate_shapes", "fit_shapes_pca_gaussian", "real_shapes", "shapes_baselines",
    "shapes_fd", "shapes_features", "shapes_reference",
]
