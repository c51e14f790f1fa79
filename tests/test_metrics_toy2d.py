"""2D sample distances: sliced and exact Wasserstein, MMD, NLL under the true density."""

import numpy as np
import pytest
import scipy.stats
import torch

import genbook.metrics.toy2d as toy2d_metrics
from genbook.data.toy2d import eight_gaussians
from genbook.metrics.toy2d import HAS_POT, mmd, sliced_wasserstein, true_density_nll, wasserstein


def clouds(seed=0, n=800, m=800, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g), torch.randn(m, 2, generator=g) + shift


def test_sliced_wasserstein_in_1d_matches_scipy_even_for_unequal_sizes():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(300, 1, generator=g), 2 * torch.rand(170, 1, generator=g)
    expected = scipy.stats.wasserstein_distance(x.double().flatten().numpy(), y.double().flatten().numpy())  # W1 in 1D
    assert sliced_wasserstein(x, y, p=1) == pytest.approx(expected, rel=1e-9)
    # p = 2, equal sizes: sort and match
    y2 = torch.randn(300, 1, generator=g) * 0.5 + 1
    expected2 = ((x.double().flatten().sort()[0] - y2.double().flatten().sort()[0]) ** 2).mean().sqrt().item()
    assert sliced_wasserstein(x, y2) == pytest.approx(expected2, rel=1e-9)


def test_sliced_wasserstein_ranks_same_below_shifted():
    x, y = clouds(2)
    _, z = clouds(3, shift=torch.tensor([1.0, 0.0]))
    assert sliced_wasserstein(x, y) < 0.15 < 0.5 < sliced_wasserstein(x, z)
    assert sliced_wasserstein(x, z) == sliced_wasserstein(x, z), "deterministic for a fixed seed"
    # a translation by v moves every projection by θᵀv: SW₂² = E(θᵀv)² = |v|²/2 in 2D
    assert sliced_wasserstein(x, x + torch.tensor([1.0, 0.0]), n_projections=4000) == pytest.approx(0.5**0.5, rel=0.03)


@pytest.mark.skipif(not HAS_POT, reason="POT is not installed (pip install POT); exact W falls back to sliced")
def test_exact_wasserstein_of_a_translation_is_its_length():
    x, _ = clouds(4, n=300)
    v = torch.tensor([0.6, -0.8])
    result = wasserstein(x, x + v)
    assert result.method == "exact"
    assert float(result) == pytest.approx(1.0, rel=1e-6)  # W2 of a translate is |v|
    assert float(wasserstein(x, x)) == pytest.approx(0.0, abs=1e-9)
    a, b = clouds(5, n=300, m=250)
    _, c = clouds(6, n=300, m=250, shift=1.0)
    assert float(wasserstein(a, b)) < float(wasserstein(a, c))


def test_wasserstein_falls_back_to_sliced_without_pot(monkeypatch):
    monkeypatch.setattr(toy2d_metrics, "HAS_POT", False)
    x, y = clouds(7)
    result = wasserstein(x, y)
    assert result.method == "sliced" and "sliced" in str(result)
    assert float(result) == pytest.approx(sliced_wasserstein(x, y))
    with pytest.raises(ImportError, match="pip install POT"):
        wasserstein(x, y, method="exact")


def naive_gaussian_mmd2(x, y, bandwidths):
    k = lambda a, b: sum(np.exp(-np.sum((a - b) ** 2) / (2 * h * h)) for h in bandwidths)
    x, y = x.double().numpy(), y.double().numpy()
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    return xx + yy - 2 * sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)


def test_mmd_matches_the_naive_estimator_and_ranks():
    x, y = clouds(8, n=15, m=11)
    assert mmd(x, y, bandwidths=(0.5, 1.0)) == pytest.approx(naive_gaussian_mmd2(x, y, (0.5, 1.0)), rel=1e-9)
    a, b = clouds(9)
    _, c = clouds(10, shift=0.5)
    same, shifted = mmd(a, b), mmd(a, c)
    assert abs(same) < 0.01 < 0.05 < shifted


def test_true_density_nll_of_real_samples_is_the_entropy():
    dist = eight_gaussians()
    samples = dist.sample(20_000, torch.Generator().manual_seed(11))
    assert true_density_nll(dist, samples) == pytest.approx(dist.entropy(), abs=0.05)


def test_bad_inputs():
    x = torch.randn(100, 2)
    with pytest.raises(ValueError, match="shape"):
        sliced_wasserstein(x, torch.randn(100, 3))
    with pytest.raises(TypeError):
        mmd(x, torch.randint(0, 5, (100, 2)))
    with pytest.raises(ValueError, match="bandwidths"):
        mmd(x, x, bandwidths=(0.0,))
    with pytest.raises(ValueError, match="method"):
        wasserstein(x, x, method="fast")
