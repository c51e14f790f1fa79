"""pareto_front keeps exactly the non-dominated points."""

import itertools
import random

import pytest
import torch

from genbook.metrics import pareto_front
from genbook.metrics.pareto import dominates


def brute_force(points):
    """A point is on the front when no other point is <= in all coordinates and < in one."""
    return sorted(
        (i for i, p in enumerate(points)
         if not any(all(q[d] <= p[d] for d in range(len(p))) and q != p for q in points)),
        key=lambda i: (points[i], i),
    )


def test_small_example():
    # (ms per image, FD): fast-and-bad, slow-and-good, and one dominated by both the first two's mix
    points = [(1.0, 150.0), (100.0, 60.0), (50.0, 160.0), (20.0, 80.0), (20.0, 90.0)]
    assert pareto_front(points) == [0, 3, 1]


def test_ties_and_duplicates():
    assert pareto_front([(1, 2), (1, 2), (2, 1)]) == [0, 1, 2]
    assert pareto_front([(1, 2), (1, 3)]) == [0]  # equal cost, worse quality: dominated
    assert pareto_front([(5.0,)]) == [0]
    assert pareto_front([]) == []


def test_matches_brute_force_and_accepts_tensors():
    rng = random.Random(0)
    for n, d in itertools.product((1, 5, 30), (1, 2, 3)):
        points = [tuple(float(rng.randint(0, 6)) for _ in range(d)) for _ in range(n)]
        assert pareto_front(points) == brute_force(points)
        assert pareto_front(torch.tensor(points)) == brute_force(points)


def test_front_is_never_empty_and_nothing_on_it_is_dominated():
    rng = random.Random(1)
    points = [(rng.random(), rng.random()) for _ in range(50)]
    front = pareto_front(points)
    assert front
    assert not any(dominates(points[j], points[i]) for i in front for j in range(len(points)))
    assert all(any(dominates(points[f], points[i]) for f in front) for i in set(range(50)) - set(front))


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"points\[1\] has 1 coordinates"):
        pareto_front([(1, 2), (3,)])
    with pytest.raises(ValueError, match="no NaN"):
        pareto_front([(1.0, float("nan"))])
    with pytest.raises(ValueError, match=r"tensor \(N, D\)"):
        pareto_front(torch.zeros(3))
    with pytest.raises(TypeError):
        pareto_front(5)
