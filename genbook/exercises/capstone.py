"""Checks for the exercises of chapter 10 (the capstone: the families side by side).

* Exercise 10.1: improved precision and recall (Kynkäänniemi et al. 2019, §2) on 2D points,
  checked against ``genbook.metrics.precision_recall`` on three problems with known character:
  a model that covers the data, one collapsed onto a few of its modes (high precision, low
  recall) and one spread too wide (low precision, high recall), at several k.
"""

from __future__ import annotations

import math

import torch

from genbook.metrics.precision_recall import precision_recall

from .core import ExerciseFailed, call_student

EXERCISE_PR = "Exercise 10.1 (precision_recall_2d)"
N_POINTS = 400


def _ring_of_modes(n: int, modes: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """``n`` points (n, 2) around the 2D ``modes`` (K, 2), each with Gaussian noise of ``std``."""
    k = torch.randint(len(modes), (n,), generator=generator)
    return modes[k] + std * torch.randn(n, 2, generator=generator, dtype=torch.float64)


def problems() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, real (N, 2), fake (N, 2)) float64: a good model, a collapsed one, a too-wide one."""
    g = torch.Generator().manual_seed(10)
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    modes = 2.0 * torch.stack([angles.cos(), angles.sin()], dim=1)  # (8, 2): eight Gaussians on a circle
    real = _ring_of_modes(N_POINTS, modes, 0.15, g)
    return [
        ("a good model", real, _ring_of_modes(N_POINTS, modes, 0.17, g)),
        ("a model collapsed onto 2 of the 8 modes", real, _ring_of_modes(N_POINTS, modes[:2], 0.15, g)),
        ("a model spread too wide", real, _ring_of_modes(N_POINTS, modes, 0.6, g)),
    ]


def _number(value, what: str) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ExerciseFailed(f"{what} should be a finite number, got {value!r}.")
    return float(value)


def _radii_including_self(x: torch.Tensor, k: int) -> torch.Tensor:
    return torch.cdist(x, x).topk(k, dim=1, largest=False).values[:, -1]  # k-th smallest counts the point itself


def _share_inside(points, centres, radii) -> float:
    return (torch.cdist(points, centres) <= radii).any(dim=1).double().mean().item()


def typical_mistakes(real: torch.Tensor, fake: torch.Tensor, k: int) -> dict[str, tuple[float, float]]:
    """(precision, recall) of three wrong implementations, to recognise them and say what went wrong.

    ``real`` and ``fake`` have the same number of points (the problems here do), so radii of one set
    can be (wrongly) paired with the centres of the other.
    """
    from genbook.metrics.precision_recall import knn_radii

    right = precision_recall(real, fake, k=k)
    real_r, fake_r = knn_radii(real, k), knn_radii(fake, k)
    return {
        "swapped": (right["recall"], right["precision"]),
        "self": (_share_inside(fake, real, _radii_including_self(real, k)),
                 _share_inside(real, fake, _radii_including_self(fake, k))),
        "other_radii": (_share_inside(fake, real, fake_r), _share_inside(real, fake, real_r)),
    }


HINTS = {
    "swapped": "precision and recall are swapped: precision is the share of FAKE points inside the REAL manifold "
               "(do samples look real?), recall the share of REAL points inside the FAKE manifold "
               "(is the data covered?).",
    "self": "the k-NN radius must skip the point itself: its distance to itself is 0, so the radius is the "
            "(k + 1)-th smallest distance in its own set (topk(k + 1, largest=False).values[:, -1]).",
    "other_radii": "each ball's radius comes from the set its centre belongs to: the real manifold is the union of "
                   "balls around REAL points with radii from the REAL set's k-NN distances, and likewise for fake.",
}


def check_precision_recall_2d(fn) -> None:
    """Check ``fn(real (N, 2), fake (M, 2), k) -> (precision, recall)``, two numbers in [0, 1].

    Compared with genbook's implementation at k = 1, 3 and 5 on three 2D problems (a good model,
    a collapsed one, a too-wide one), within one point's share (1.5 / N) so that float32 distances
    pass. Common mistakes are recognised and explained.
    """
    tolerance = 1.5 / N_POINTS
    for name, real, fake in problems():
        for k in (1, 3, 5):
            out = call_student(fn, real.clone(), fake.clone(), k, exercise=EXERCISE_PR)
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                raise ExerciseFailed(f"precision_recall_2d(real, fake, k) should return a pair (precision, recall), "
                                     f"got {type(out).__name__}.")
            precision = _number(out[0], "precision")
            recall = _number(out[1], "recall")
            want = precision_recall(real, fake, k=k)
            if abs(precision - want["precision"]) <= tolerance and abs(recall - want["recall"]) <= tolerance:
                continue
            for mistake, (p, r) in typical_mistakes(real, fake, k).items():
                if abs(precision - p) <= tolerance and abs(recall - r) <= tolerance:
                    raise ExerciseFailed(f"on {name} with k = {k}: {HINTS[mistake]}")
            raise ExerciseFailed(
                f"on {name} with k = {k}: got precision {precision:.4f}, recall {recall:.4f}; expected precision "
                f"{want['precision']:.4f}, recall {want['recall']:.4f}. Radius of a point = distance to its k-th "
                f"nearest OTHER point of its own set; a point is inside a manifold when it lies within the radius "
                f"(<=) of at least one of that manifold's points.")
