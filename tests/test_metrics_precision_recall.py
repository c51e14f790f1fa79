"""Improved precision and recall (Kynkäänniemi et al. 2019): known answers, a naive reference, clear errors."""

import math

import pytest
import torch

from genbook.metrics import precision_recall
from genbook.metrics.precision_recall import knn_radii


def naive_precision_recall(real, fake, k):
    """The definition written out with Python loops over lists (no torch.cdist, no topk)."""
    real, fake = real.tolist(), fake.tolist()

    def radii(points):
        out = []
        for i, p in enumerate(points):
            others = sorted(math.dist(p, q) for j, q in enumerate(points) if j != i)
            out.append(others[k - 1])
        return out

    def share_inside(points, centres, centre_radii):
        hits = [any(math.dist(p, c) <= r for c, r in zip(centres, centre_radii)) for p in points]
        return sum(hits) / len(points)

    return share_inside(fake, real, radii(real)), share_inside(real, fake, radii(fake))


def column(values):
    return torch.tensor(values, dtype=torch.float64).view(-1, 1)


def test_hand_computed_one_dimensional_case():
    # real 0, 1, 3, 7 with k = 1: radii 1, 1, 2, 4, balls [-1, 1], [0, 2], [1, 5], [3, 11].
    # fake 0.4, 2.6, 20, 21: radii 2.2, 2.2, 1, 1, balls [-1.8, 2.6], [0.4, 4.8], [19, 21], [20, 22].
    # precision: 0.4 and 2.6 lie in real balls, 20 and 21 do not -> 2/4.
    # recall: 0, 1, 3 lie in fake balls, 7 does not -> 3/4.
    real, fake = column([0, 1, 3, 7]), column([0.4, 2.6, 20, 21])
    assert precision_recall(real, fake, k=1) == pytest.approx({"precision": 0.5, "recall": 0.75})
    # k = 2: real radii 3, 2, 3, 6 (balls reach 13, not 20); fake radii 19.6, 17.4, 17.4, 18.4 cover every real point.
    assert precision_recall(real, fake, k=2) == pytest.approx({"precision": 0.5, "recall": 1.0})
    assert naive_precision_recall(real, fake, 1) == pytest.approx((0.5, 0.75))
    # A point exactly on a ball's boundary is inside (the paper's <=): 5 ends [1, 5], 11 ends [3, 11], 12 is out.
    assert precision_recall(real, column([5, 11, 12]), k=1)["precision"] == pytest.approx(2 / 3)


def test_knn_radii_of_a_line():
    x = column([0, 1, 3, 7])
    torch.testing.assert_close(knn_radii(x, 1), torch.tensor([1, 1, 2, 4], dtype=torch.float64))
    torch.testing.assert_close(knn_radii(x, 3), torch.tensor([7, 6, 4, 7], dtype=torch.float64))


@pytest.mark.parametrize("k", [1, 3, 5])
def test_matches_the_naive_double_loop(k):
    g = torch.Generator().manual_seed(k)
    real = torch.randn(60, 4, generator=g)
    fake = 1.3 * torch.randn(45, 4, generator=g) + 1.0  # overlapping, not identical: answers strictly inside (0, 1)
    expected = naive_precision_recall(real.double(), fake.double(), k)
    assert 0 < expected[0] < 1 and 0 < expected[1] < 1
    got = precision_recall(real, fake, k=k, chunk_size=7)  # chunks that do not divide either set size
    assert (got["precision"], got["recall"]) == pytest.approx(expected, abs=1e-12)


def test_identical_sets_score_one_and_one():
    x = torch.randn(300, 16, generator=torch.Generator().manual_seed(0))
    assert precision_recall(x, x.clone()) == {"precision": 1.0, "recall": 1.0}


def test_collapsed_fake_set_has_high_precision_and_low_recall():
    g = torch.Generator().manual_seed(1)
    real = torch.randn(500, 8, generator=g)
    fake = real[0] + 1e-3 * torch.randn(500, 8, generator=g)  # every fake point next to one real point
    result = precision_recall(real, fake)
    assert result["precision"] == 1.0  # all inside real[0]'s ball (its 3-NN radius is ~1, the spread 1e-3)
    assert result["recall"] <= 2 / 500  # the fake balls are ~1e-3 wide: they hold real[0] and nothing else


def test_far_away_set_scores_zero():
    g = torch.Generator().manual_seed(2)
    real = torch.randn(200, 8, generator=g)
    assert precision_recall(real, torch.randn(200, 8, generator=g) + 100.0) == {"precision": 0.0, "recall": 0.0}


def test_swapping_the_sets_swaps_precision_and_recall():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(150, 5, generator=g), 1.5 * torch.randn(120, 5, generator=g)
    ab, ba = precision_recall(a, b), precision_recall(b, a)
    assert ab["precision"] == ba["recall"] and ab["recall"] == ba["precision"]
    assert ab["recall"] > ab["precision"]  # the wider fake set covers the real one better than it stays inside it


def test_chunk_size_does_not_change_the_answer():
    g = torch.Generator().manual_seed(4)
    real, fake = torch.randn(230, 6, generator=g), torch.randn(170, 6, generator=g) + 0.3
    assert precision_recall(real, fake, chunk_size=1000) == precision_recall(real, fake, chunk_size=33)


def test_bad_inputs_raise_clear_errors():
    x = torch.randn(20, 3)
    with pytest.raises(ValueError, match="k must be a positive int"):
        precision_recall(x, x, k=0)
    with pytest.raises(ValueError, match="k must be a positive int"):
        precision_recall(x, x, k=True)
    with pytest.raises(ValueError, match="real_features has 20 points; k=20"):
        precision_recall(x, torch.randn(30, 3), k=20)
    with pytest.raises(ValueError, match="fake_features has 3 points"):
        precision_recall(x, torch.randn(3, 3))
    with pytest.raises(ValueError, match=r"fake_features must have shape \(N, 3\)"):
        precision_recall(x, torch.randn(20, 4))
    with pytest.raises(ValueError, match=r"real_features must have shape \(N, D\)"):
        precision_recall(torch.randn(20), x)
    with pytest.raises(TypeError, match="real_features must be a floating point tensor"):
        precision_recall(torch.ones(20, 3, dtype=torch.int64), x)
    with pytest.raises(TypeError, match="fake_features must be a torch.Tensor"):
        precision_recall(x, x.tolist())
    bad = x.clone()
    bad[4, 1] = float("nan")
    with pytest.raises(ValueError, match="fake_features contains NaN"):
        precision_recall(x, bad)
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        precision_recall(x, x, chunk_size=0)
