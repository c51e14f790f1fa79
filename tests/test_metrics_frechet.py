"""Fréchet distance and KID: closed forms, naive references, stability, clear errors."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from genbook.metrics.frechet import frechet_distance, frechet_distance_gaussians, gaussian_stats, min_samples_for
from genbook.metrics.kid import kernel_inception_distance, mmd2_unbiased, polynomial_kernel


def random_gaussian(dim, generator):
    a = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
    mean = torch.randn(dim, generator=generator, dtype=torch.float64)
    return mean, a @ a.T + 0.1 * torch.eye(dim, dtype=torch.float64)


def test_gaussian_stats_match_numpy():
    x = torch.randn(300, 5, generator=torch.Generator().manual_seed(0))
    mean, cov = gaussian_stats(x)
    assert mean.dtype == cov.dtype == torch.float64
    np.testing.assert_allclose(mean.numpy(), x.double().numpy().mean(0), atol=1e-12)
    np.testing.assert_allclose(cov.numpy(), np.cov(x.double().numpy(), rowvar=False), atol=1e-12)


def test_one_dimensional_closed_form():
    # W2²(N(m1, s1²), N(m2, s2²)) = (m1 − m2)² + (s1 − s2)²
    m1, s1, m2, s2 = 0.3, 1.5, -1.2, 0.4
    one = lambda v: torch.tensor([v], dtype=torch.float64)
    value = frechet_distance_gaussians(one(m1), one(s1**2).view(1, 1), one(m2), one(s2**2).view(1, 1))
    assert value == pytest.approx((m1 - m2) ** 2 + (s1 - s2) ** 2, rel=1e-12)


def test_diagonal_closed_form():
    # Commuting (diagonal) covariances: d² = ||μ1 − μ2||² + Σᵢ (√aᵢ − √bᵢ)²
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(6, generator=g, dtype=torch.float64) + 0.1, torch.rand(6, generator=g, dtype=torch.float64) + 0.1
    m1, m2 = torch.randn(6, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    expected = ((m1 - m2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum()
    assert frechet_distance_gaussians(m1, torch.diag(a), m2, torch.diag(b)) == pytest.approx(expected.item(), rel=1e-10)


def test_general_covariances_match_scipy_sqrtm():
    g = torch.Generator().manual_seed(2)
    (m1, s1), (m2, s2) = random_gaussian(10, g), random_gaussian(10, g)
    root = scipy.linalg.sqrtm(s1.numpy() @ s2.numpy()).real  # the textbook formula, independent code path
    expected = ((m1 - m2) ** 2).sum().item() + np.trace(s1.numpy() + s2.numpy() - 2 * root)
    assert frechet_distance_gaussians(m1, s1, m2, s2) == pytest.approx(expected, rel=1e-9)


def test_samples_converge_to_the_closed_form():
    g = torch.Generator().manual_seed(3)
    (m1, s1), (m2, s2) = random_gaussian(3, g), random_gaussian(3, g)
    x = m1 + torch.randn(200_000, 3, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(s1).T
    y = m2 + torch.randn(200_000, 3, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(s2).T
    assert frechet_distance(x, y) == pytest.approx(frechet_distance_gaussians(m1, s1, m2, s2), rel=0.02)


def test_identical_sets_give_zero_even_when_rank_deficient():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1000, 64, generator=g)
    x[:, 32:] = 0  # dead units, as after a ReLU: singular covariance
    x[:, 10] = x[:, 11]  # and a duplicated feature
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    y = x + 0.5
    assert frechet_distance(x, y) == pytest.approx(32 * 0.25 + 32 * 0.25, rel=1e-6)  # a pure shift: ||Δμ||²


def test_symmetric_and_nonnegative():
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(500, 8, generator=g), 1.3 * torch.randn(500, 8, generator=g)
    assert frechet_distance(x, y) == pytest.approx(frechet_distance(y, x), rel=1e-9)
    assert frechet_distance(x, y) > 0


def test_too_few_samples_is_an_error_that_says_why():
    x = torch.randn(100, 64)
    assert min_samples_for(64) == 128
    with pytest.raises(ValueError, match=r"at least 128.*(singular|biased)"):
        frechet_distance(x, torch.randn(500, 64))
    with pytest.raises(ValueError, match="at least 1000"):
        frechet_distance(torch.randn(500, 4), torch.randn(500, 4), min_samples=1000)


@pytest.mark.parametrize(
    "a, b, error",
    [
        (torch.randn(100), torch.randn(100), ValueError),  # (N,) instead of (N, D)
        (torch.randn(100, 4), torch.randn(100, 5), ValueError),  # dimensions differ
        (torch.randint(0, 9, (100, 4)), torch.randn(100, 4), TypeError),  # integers
        (np.zeros((100, 4)), torch.randn(100, 4), TypeError),  # not a tensor
    ],
)
def test_bad_inputs(a, b, error):
    with pytest.raises(error):
        frechet_distance(a, b)


def test_nan_features_are_rejected():
    x = torch.randn(200, 4)
    x[3, 1] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(x, torch.randn(200, 4))


# ------------------------------------------------------------------ KID


def naive_mmd2(x, y):
    """Gretton et al. (2012) Lemma 6 written as loops over pairs."""
    k = lambda a, b: (float(a @ b) / len(a) + 1) ** 3
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_polynomial_kernel_and_unbiased_mmd_match_loops():
    g = torch.Generator().manual_seed(6)
    x, y = torch.randn(12, 3, generator=g, dtype=torch.float64), torch.randn(9, 3, generator=g, dtype=torch.float64)
    assert polynomial_kernel(x, y)[2, 5].item() == pytest.approx((float(x[2] @ y[5]) / 3 + 1) ** 3)
    ours = mmd2_unbiased(polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)).item()
    assert ours == pytest.approx(naive_mmd2(x, y), rel=1e-10)
    # one subset of everything is exactly the unbiased estimate
    full = kernel_inception_distance(x.repeat(5, 1), y.repeat(6, 1), n_subsets=1, subset_size=54)
    assert full.std == 0.0


def test_kid_is_centred_for_equal_distributions_and_grows_with_a_shift():
    g = torch.Generator().manual_seed(7)
    x, y = torch.randn(1000, 16, generator=g), torch.randn(1000, 16, generator=g)
    same = kernel_inception_distance(x, y)
    shifted = kernel_inception_distance(x, y + 0.3)
    assert abs(same.mean) < 3 * same.std + 1e-3
    assert shifted.mean > 10 * abs(same.mean) and shifted.mean > 3 * shifted.std
    once, again = (kernel_inception_distance(x, y, n_subsets=3, seed=1) for _ in range(2))
    assert once == again, "deterministic for a fixed seed"


def test_kid_errors():
    with pytest.raises(ValueError, match="subset_size"):
        kernel_inception_distance(torch.randn(100, 4), torch.randn(100, 4), subset_size=500)
    with pytest.raises(ValueError, match="at least 50"):
        kernel_inception_distance(torch.randn(10, 4), torch.randn(100, 4))
