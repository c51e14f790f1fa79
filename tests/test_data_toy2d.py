"""2D toy distributions: samples, exact densities and scores checked against independent references."""

import math

import pytest
import torch

from genbook.data import (
    TOY_DISTRIBUTIONS,
    Checkerboard,
    GaussianMixture,
    Spirals,
    TwoMoons,
    eight_gaussians,
    toy_distribution,
    twenty_five_gaussians,
)


def _full_covariance_mixture():
    means = torch.tensor([[0.0, 0.0], [2.0, 1.0], [-1.5, 2.0]])
    a = torch.tensor([[[0.5, 0.2], [0.0, 0.3]], [[0.2, 0.0], [0.1, 0.4]], [[0.3, -0.1], [0.0, 0.2]]])
    return GaussianMixture(means, a @ a.transpose(1, 2) + 0.01 * torch.eye(2), weights=torch.tensor([1.0, 2.0, 3.0]))


MIXTURES = [eight_gaussians, twenty_five_gaussians, _full_covariance_mixture]


@pytest.mark.parametrize("name", sorted(TOY_DISTRIBUTIONS))
def test_registry_samples_are_float32_and_seeded(name):
    distribution = toy_distribution(name)
    x = distribution.sample(500, generator=torch.Generator().manual_seed(0))
    assert x.shape == (500, 2) and x.dtype == torch.float32 and torch.isfinite(x).all()
    again = distribution.sample(500, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, again)
    assert not torch.equal(x, distribution.sample(500, generator=torch.Generator().manual_seed(1)))
    assert x.abs().max() < 10


def test_unknown_name_lists_the_names():
    with pytest.raises(ValueError, match="checkerboard.*two_moons"):
        toy_distribution("moons")


@pytest.mark.parametrize("make", MIXTURES)
def test_mixture_score_equals_autograd_of_log_prob(make):
    mixture = make()
    x = (3 * torch.randn(300, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))).requires_grad_()
    (autograd,) = torch.autograd.grad(mixture.log_prob(x).sum(), x)
    torch.testing.assert_close(mixture.score(x.detach()), autograd, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("make", MIXTURES)
def test_mixture_log_prob_matches_torch_distributions(make):
    mixture = make()
    reference = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(probs=mixture.weights),
        torch.distributions.MultivariateNormal(mixture.means, covariance_matrix=mixture.covariances),
    )
    x = mixture.sample(1000, generator=torch.Generator().manual_seed(3)).double()
    torch.testing.assert_close(mixture.log_prob(x), reference.log_prob(x))
    assert mixture.log_prob(x.float()).dtype == torch.float32


@pytest.mark.parametrize("distribution", [eight_gaussians(), twenty_five_gaussians(), Checkerboard()])
def test_density_integrates_to_one(distribution):
    ticks = torch.linspace(-4, 4, 401, dtype=torch.float64)
    step = (ticks[1] - ticks[0]).item()
    grid = torch.cartesian_prod(ticks, ticks)
    mass = distribution.log_prob(grid).exp().sum().item() * step**2
    assert mass == pytest.approx(1.0, abs=0.02)


def test_mixture_samples_have_the_right_moments():
    mixture = _full_covariance_mixture()
    x = mixture.sample(200_000, generator=torch.Generator().manual_seed(0)).double()
    mean = (mixture.weights.unsqueeze(1) * mixture.means).sum(0)
    torch.testing.assert_close(x.mean(0), mean, atol=0.02, rtol=0)
    outer = mixture.means.unsqueeze(2) * mixture.means.unsqueeze(1)  # mu_k mu_k^T, (K, 2, 2)
    second = (mixture.weights.view(-1, 1, 1) * (mixture.covariances + outer)).sum(0)  # E[x x^T]
    torch.testing.assert_close(x.T @ x / len(x), second, atol=0.03, rtol=0)


def test_entropy_closed_form_and_monte_carlo():
    single = GaussianMixture.isotropic(torch.zeros(1, 2), 0.7)
    reference = torch.distributions.MultivariateNormal(torch.zeros(2), 0.49 * torch.eye(2)).entropy().item()
    assert single.entropy() == pytest.approx(reference, abs=1e-6)
    # Well separated equal components: H = log K + entropy of one component.
    for mixture, k, std in ((eight_gaussians(), 8, 0.2), (twenty_five_gaussians(), 25, 0.08)):
        separated = math.log(k) + 1 + math.log(2 * math.pi * std**2)
        assert mixture.entropy() == pytest.approx(separated, abs=0.01)
        assert mixture.entropy() == mixture.entropy()  # fixed seed: the same number every time


def test_checkerboard_density_score_and_entropy():
    board = Checkerboard(cells=4, half_width=2.0)
    x = board.sample(5000, generator=torch.Generator().manual_seed(0)).double()
    log_p = board.log_prob(x)
    assert torch.allclose(log_p, torch.full_like(log_p, -math.log(8.0)))
    assert torch.equal(board.score(x), torch.zeros_like(x))
    outside = torch.tensor([[0.5, -0.5], [-1.5, -0.5], [3.0, 0.0], [0.0, -2.5]], dtype=torch.float64)
    assert torch.isneginf(board.log_prob(outside)).all() and torch.isnan(board.score(outside)).all()
    assert board.entropy() == pytest.approx(math.log(8.0))
    counts = torch.histogramdd(x.float(), bins=[4, 4], range=[-2.0, 2.0, -2.0, 2.0]).hist
    filled = counts > 0
    assert filled.sum() == 8 and (filled == filled.flip(0).T.flip(0).T).all()
    assert counts[filled].min() > 5000 / 8 * 0.85  # the filled squares are equally likely


@pytest.mark.parametrize("distribution", [TwoMoons(), Spirals()])
def test_sample_only_distributions_say_so(distribution):
    x = torch.zeros(3, 2)
    for method in (distribution.log_prob, distribution.score):
        with pytest.raises(NotImplementedError, match="closed-form"):
            method(x)
    with pytest.raises(NotImplementedError):
        distribution.entropy()


def test_two_moons_lie_on_two_half_circles():
    x = TwoMoons(noise=0.0).sample(2000, generator=torch.Generator().manual_seed(0)).double()
    upper = ((x - torch.tensor([-0.5, -0.25])).norm(dim=1) - 1).abs() < 1e-5  # centre of the upper moon
    lower = ((x - torch.tensor([0.5, 0.25])).norm(dim=1) - 1).abs() < 1e-5
    assert (upper | lower).all() and 0.45 < upper.double().mean() < 0.55
    assert (x[upper, 1] >= -0.25 - 1e-6).all() and (x[lower & ~upper, 1] <= 0.25 + 1e-6).all()
    noisy = TwoMoons(noise=0.1).sample(2000, generator=torch.Generator().manual_seed(0)).double()
    assert 0.05 < (noisy - x).std() < 0.15  # same seed, same points, plus the noise


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="positive definite"):
        GaussianMixture(torch.zeros(1, 2), -torch.eye(2).unsqueeze(0))
    with pytest.raises(ValueError, match="shape"):
        GaussianMixture(torch.zeros(2, 3), torch.eye(3).expand(2, 3, 3))
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture.isotropic(torch.zeros(2, 2), 1.0, weights=torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="shape"):
        eight_gaussians().log_prob(torch.zeros(5, 3))
    with pytest.raises(TypeError, match="floating"):
        eight_gaussians().log_prob(torch.zeros(5, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="n must"):
        eight_gaussians().sample(0)
