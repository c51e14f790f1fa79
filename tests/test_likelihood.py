"""genbook.likelihood: closed forms checked against torch.distributions and known answers."""

import math

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from genbook.likelihood import (
    PPCA,
    bpd_from_nll,
    dequantize,
    diagonal_gaussian_kl,
    independent_pixels_bpd,
    iwae_bound,
    pixel_levels,
    ppca_bpd,
)


def test_diagonal_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu_q, logvar_q, mu_p, logvar_p = (torch.randn(5, 7, generator=g, dtype=torch.float64) for _ in range(4))
    ours = diagonal_gaussian_kl(mu_q, logvar_q, mu_p, logvar_p)
    theirs = kl_divergence(Normal(mu_q, (0.5 * logvar_q).exp()), Normal(mu_p, (0.5 * logvar_p).exp()))
    assert torch.allclose(ours, theirs, atol=1e-12)
    to_prior = kl_divergence(Normal(mu_q, (0.5 * logvar_q).exp()), Normal(0.0, 1.0))
    assert torch.allclose(diagonal_gaussian_kl(mu_q, logvar_q), to_prior, atol=1e-12)


def test_iwae_bound_known_answers():
    lw = torch.tensor([[math.log(1.0), math.log(3.0)]])
    assert torch.allclose(iwae_bound(lw), torch.tensor([math.log(2.0)]))  # log of the mean weight
    assert torch.allclose(iwae_bound(lw[:, :1]), lw[:, 0])  # k = 1: the ELBO sample itself
    lw = torch.randn(3, 10)
    assert (iwae_bound(lw) >= lw.mean(-1)).all()  # Jensen: never below the average log-weight


def test_bpd_of_a_uniform_density_is_eight_bits():
    dims = 784
    nll_uniform = dims * math.log(2.0)  # density 1/2 per dimension on [-1, 1]
    assert math.isclose(bpd_from_nll(nll_uniform, dims), 8.0)
    assert math.isclose(bpd_from_nll(0.0, dims, data_range=256.0), 0.0)


def test_dequantize_stays_in_the_bin_of_each_pixel():
    x = torch.linspace(-1, 1, 256).view(1, 1, 16, 16)
    y = dequantize(x, torch.Generator().manual_seed(0))
    assert torch.equal(((y + 1) / 2 * 256).floor().long(), pixel_levels(x))
    assert torch.equal(pixel_levels(x).flatten(), torch.arange(256))


def test_ppca_log_prob_matches_the_gaussian_it_describes():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 6, generator=g, dtype=torch.float64) @ torch.randn(6, 6, generator=g, dtype=torch.float64)
    model = PPCA(2).fit(x)
    cov = model.W @ model.W.T + model.sigma2 * torch.eye(6, dtype=torch.float64)
    reference = MultivariateNormal(model.mean, covariance_matrix=cov).log_prob(x)
    assert torch.allclose(model.log_prob(x), reference, atol=1e-8)
    # with q = D - 1 latents it is the full maximum-likelihood Gaussian up to the last direction
    full = PPCA(5).fit(x)
    ml_cov = torch.cov(x.T, correction=0)
    assert torch.allclose(full.log_prob(x).mean(), MultivariateNormal(x.mean(0), ml_cov).log_prob(x).mean(), atol=1e-6)


def test_ppca_bpd_is_below_a_uniform_density():
    g = torch.Generator().manual_seed(0)
    base = torch.rand(1, 1, 6, 6, generator=g) * 2 - 1
    images = (base + 0.05 * torch.randn(400, 1, 6, 6, generator=g)).clamp(-1, 1)
    assert ppca_bpd(images[:300], images[300:], 2) < 8.0


def test_independent_pixels_bpd_hand_computed():
    train = torch.full((3, 1, 1, 2), -1.0)  # every training pixel at level 0
    test = torch.tensor([[[[-1.0, 1.0]]]])  # level 0 (seen 3 times) and level 255 (never seen)
    seen, unseen = (3 + 1) / (3 + 256), 1 / (3 + 256)
    expected = -(math.log2(seen) + math.log2(unseen)) / 2
    assert math.isclose(independent_pixels_bpd(train, test), expected, rel_tol=1e-12)


@pytest.mark.parametrize("call, match", [
    (lambda: bpd_from_nll(1.0, 0), "num_dims"),
    (lambda: bpd_from_nll(1.0, 4, data_range=0), "data_range"),
    (lambda: PPCA(0), "latent_dim"),
    (lambda: PPCA(4).fit(torch.randn(10, 4)), "below the data dimension"),
    (lambda: PPCA(1).log_prob(torch.randn(2, 3)), "fit"),
    (lambda: diagonal_gaussian_kl(torch.zeros(3), torch.zeros(4)), "same shape"),
    (lambda: independent_pixels_bpd(torch.zeros(2, 1, 2, 2), torch.full((1, 1, 2, 2), 3.0)), "test_images"),
    (lambda: independent_pixels_bpd(torch.zeros(2, 1, 2, 2), torch.zeros(1, 1, 2, 3)), "differ in size"),
    (lambda: dequantize(torch.full((1, 1, 2, 2), float("nan"))), "NaN"),
])
def test_bad_input_is_named(call, match):
    with pytest.raises((ValueError, TypeError, RuntimeError), match=match):
        call()
