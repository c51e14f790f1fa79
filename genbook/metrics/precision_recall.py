"""Precision and recall of a generative model in a feature space, from k-NN manifolds.

Kynkäänniemi, Karras, Laine, Lehtinen & Aila (2019), "Improved Precision and
Recall Metric for Assessing Generative Models", §2: estimate the support of
each set as a union of balls, one per point, whose radius is the distance to
that point's k-th nearest neighbour in the same set (the point itself excluded),

    manifold(Φ) = ∪_{φ ∈ Φ} B(φ, ‖φ − NN_k(φ, Φ)‖),

then

* precision = share of fake points that lie in the real manifold (samples look real);
* recall    = share of real points that lie in the fake manifold (the data is covered).

FD folds both failures into one number; these two tell them apart: a collapsed
model has high precision and low recall. Read precision next to FD, never alone:
the balls of outlying real points are large, so samples that land in one count
as real (uniform noise scored precision 0.5, recall 0.0 with genbook's Fashion
evaluator at n = 1000; Naeem et al. 2020 discuss this weakness).
Distances are computed in float64 with ``torch.cdist``, ``chunk_size`` rows at a
time, so n = 5000 needs no n × n matrix in memory.
"""

from __future__ import annotations

import torch

from genbook.validation import check_tensor

CHUNK_SIZE = 1000  # rows of the distance matrix held at once: 1000 x 5000 float64 = 40 MB


def _check_features(x, name: str, dim: int | None, k: int) -> torch.Tensor:
    check_tensor(x, name, shape=("N", "D" if dim is None else dim), dtype="floating")
    if x.shape[0] < k + 1:
        raise ValueError(f"{name} has {x.shape[0]} points; k={k} neighbours besides a point itself need >= {k + 1}.")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return x.detach().to(torch.float64)


def knn_radii(features: torch.Tensor, k: int, *, chunk_size: int = CHUNK_SIZE) -> torch.Tensor:
    """Distance (N,) from each row of ``features`` (N, D) to its k-th nearest other row."""
    radii = []
    for i in range(0, features.shape[0], chunk_size):
        d = torch.cdist(features[i : i + chunk_size], features)  # (c, N), includes the point itself at distance 0
        radii.append(d.topk(k + 1, dim=1, largest=False).values[:, -1])  # (k+1)-th smallest = k-th besides itself
    return torch.cat(radii)


def _share_inside(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk_size: int) -> float:
    """Share of ``points`` (M, D) within distance ``radii[j]`` of some ``centres[j]`` (N, D)."""
    inside = []
    for i in range(0, points.shape[0], chunk_size):
        d = torch.cdist(points[i : i + chunk_size], centres)  # (c, N)
        inside.append((d <= radii).any(dim=1))
    return torch.cat(inside).double().mean().item()


def precision_recall(
    real_features: torch.Tensor, fake_features: torch.Tensor, *, k: int = 3, chunk_size: int = CHUNK_SIZE
) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of ``fake_features`` (M, D) against
    ``real_features`` (N, D), with k-NN radii (k = 3 as in the paper).

    Returns ``{"precision": float, "recall": float}``, both in [0, 1].
    Use the same number of points in both sets: the radii shrink as a set grows.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}.")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}.")
    real = _check_features(real_features, "real_features", None, k)
    fake = _check_features(fake_features, "fake_features", real.shape[1], k)
    real_radii = knn_radii(real, k, chunk_size=chunk_size)  # (N,)
    fake_radii = knn_radii(fake, k, chunk_size=chunk_size)  # (M,)
    return {
        "precision": _share_inside(fake, real, real_radii, chunk_size),
        "recall": _share_inside(real, fake, fake_radii, chunk_size),
    }
