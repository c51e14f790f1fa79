"""The Pareto front of a set of points where every coordinate is a cost (lower is better).

Quality against cost has no single best model: a sampler that is twice as fast
and a little worse is neither better nor worse than a slow, good one. A point
*dominates* another when it is no worse in every coordinate and strictly better
in at least one; the Pareto front is the set of points that no other point
dominates (Deb 2001, "Multi-Objective Optimization using Evolutionary
Algorithms", §2.4). The capstone computes it for (ms per image, FD) and (NFE, FD).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def _as_points(points) -> list[tuple[float, ...]]:
    if isinstance(points, torch.Tensor):
        if points.dim() != 2:
            raise ValueError(f"points must be a tensor (N, D), got shape {tuple(points.shape)}.")
        points = points.tolist()
    if not isinstance(points, Sequence) or isinstance(points, (str, bytes)):
        raise TypeError(f"points must be a sequence of coordinate tuples or a tensor (N, D), "
                        f"got {type(points).__name__}.")
    rows = []
    for i, p in enumerate(points):
        if isinstance(p, (str, bytes)) or not isinstance(p, Sequence) or len(p) == 0:
            raise ValueError(f"points[{i}] must be a non-empty tuple of numbers, got {p!r}.")
        row = []
        for v in p:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
                raise ValueError(f"points[{i}] must hold numbers (no NaN), got {p!r}.")
            row.append(float(v))
        if rows and len(row) != len(rows[0]):
            raise ValueError(f"points[{i}] has {len(row)} coordinates, points[0] has {len(rows[0])}.")
        rows.append(tuple(row))
    return rows


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """True when ``a`` is no worse than ``b`` in every coordinate and better in one (lower is better)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def pareto_front(points) -> list[int]:
    """Indices of the non-dominated rows of ``points`` (N, D), every coordinate to be minimised.

    ``points``: a sequence of N tuples of D numbers, or a tensor (N, D). Returns the
    indices of the front sorted by the first coordinate (then by index); identical
    points are all kept. Negate a coordinate to maximise it (e.g. ``-recall``).
    An empty input gives an empty front. O(N² D), fine for the tens of points a book compares.
    """
    rows = _as_points(points)
    front = [i for i, p in enumerate(rows) if not any(dominates(q, p) for j, q in enumerate(rows) if j != i)]
    return sorted(front, key=lambda i: (rows[i], i))
