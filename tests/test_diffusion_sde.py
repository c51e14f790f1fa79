"""genbook.diffusion.sde: marginals, drifts, samplers, exact mixture scores, Hutchinson and ODE likelihoods.

Every check compares with an independent reference: quadrature of g², genbook.flow's VP path,
autograd of a closed-form log-density, a closed-form Gaussian, or the exact divergence.
"""


import pytest
import torch

from genbook.data.toy2d import GaussianMixture
from genbook.diffusion import (
    VESDE,
    VPSDE,
    euler_maruyama,
    hutchinson_divergence,
    mixture_score,
    noised_mixture,
    ode_log_likelihood,
    ode_sample,
    predictor_corrector,
    probes,
    time_grid,
)
from genbook.flow import VPPath, divergence, odeint

T = torch.tensor([0.0, 1e-4, 0.01, 0.3, 0.7, 1.0], dtype=torch.float64)


def test_vp_marginal_matches_flow_vp_path_with_time_reversed():
    sde, path = VPSDE(0.1, 20.0), VPPath(0.1, 20.0)
    assert torch.allclose(sde.alpha(T), path.alpha(1 - T), atol=1e-12)
    assert torch.allclose(sde.sigma(T), path.sigma(1 - T), atol=1e-7)


@pytest.mark.parametrize("sde", [VPSDE(), VESDE(0.01, 50.0)])
def test_marginal_variance_solves_the_variance_ode(sde):
    # d/dt Var = −β Var + g² for VP (2 × the linear drift coefficient), and d/dt Var = g² for VE.
    t = torch.linspace(0.05, 0.95, 7, dtype=torch.float64)
    h = 1e-6
    dvar = (sde.sigma(t + h) ** 2 - sde.sigma(t - h) ** 2) / (2 * h)
    drift_coef = sde.drift(torch.ones(len(t), 1, dtype=torch.float64), t)[:, 0]  # f(x, t) = c(t) x
    assert torch.allclose(dvar, 2 * drift_coef * sde.sigma(t) ** 2 + sde.diffusion(t) ** 2, rtol=1e-5)
    dalpha = (sde.alpha(t + h) - sde.alpha(t - h)) / (2 * h)
    assert torch.allclose(dalpha, drift_coef * sde.alpha(t), rtol=1e-5, atol=1e-9)
    assert float(sde.sigma(torch.zeros(1, dtype=torch.float64))) == 0.0


@pytest.mark.parametrize("sde", [VPSDE(), VESDE(0.01, 50.0)])
def test_log_snr_inverse(sde):
    t = torch.linspace(1e-4, 1, 50, dtype=torch.float64)
    assert torch.allclose(sde.t_from_log_snr(sde.log_snr(t)), t, rtol=1e-8, atol=1e-10)
    grid = time_grid(sde, 10, eps=1e-3, spacing="log_snr")
    assert grid[0] == 1.0 and grid[-1] == 1e-3 and (grid.diff() < 0).all()
    lam = sde.log_snr(grid)
    assert torch.allclose(lam.diff(), lam.diff().mean().expand(10), rtol=1e-6)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="beta_min"):
        VPSDE(1.0, 0.5)
    with pytest.raises(ValueError, match="spacing"):
        time_grid(VPSDE(), 5, spacing="cosine")
    with pytest.raises(ValueError, match="decreasing"):
        ode_sample(lambda x, t: x, VPSDE(), torch.zeros(2, 2), torch.tensor([0.1, 0.5]))
    with pytest.raises(ValueError, match="probe"):
        ode_log_likelihood(lambda x, t: x, VPSDE(), torch.zeros(2, 2), torch.tensor([0.1, 0.5]), probe="uniform")


def _mixture():
    means = torch.tensor([[-1.5, 0.0], [1.0, 1.0]], dtype=torch.float64)
    covs = torch.tensor([[[0.3, 0.1], [0.1, 0.2]], [[0.1, 0.0], [0.0, 0.4]]], dtype=torch.float64)
    return GaussianMixture(means, covs, torch.tensor([0.7, 0.3]))


@pytest.mark.parametrize("sde", [VPSDE(), VESDE(0.01, 10.0)])
def test_mixture_score_is_the_gradient_of_the_noised_log_density(sde):
    mix = _mixture()
    score = mixture_score(mix, sde)
    x = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2
    for t in (0.0, 0.05, 0.5, 1.0):
        xg = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(noised_mixture(mix, sde, t).log_prob(xg).sum(), xg)
        assert torch.allclose(score(x, torch.full((64,), t, dtype=torch.float64)), grad, atol=1e-9)


def test_drifts():
    sde = VPSDE()
    x, s, t = torch.randn(5, 3), torch.randn(5, 3), torch.rand(5)
    beta = sde.beta(t)[:, None]
    assert torch.allclose(sde.reverse_drift(x, t, s), -0.5 * beta * x - beta * s)
    assert torch.allclose(sde.ode_drift(x, t, s), -0.5 * beta * x - 0.5 * beta * s)


def _gaussian_case(sde, mean=1.0, std=0.5):
    """Data N(mean, std² I) in 2D: p_t = N(α mean, (α² std² + σ²) I), with its exact score."""
    mix = GaussianMixture.isotropic(torch.tensor([[mean, -mean]]), std)
    return mix, mixture_score(mix, sde)


@pytest.mark.parametrize("sde", [VPSDE(), VESDE(0.01, 10.0)])
def test_samplers_with_the_exact_score_recover_the_data(sde):
    mix, score = _gaussian_case(sde)
    g = torch.Generator().manual_seed(0)
    x1 = sde.prior_sample((4000, 2), g).double()
    runs = {
        "ode": ode_sample(score, sde, x1, time_grid(sde, 40, spacing="log_snr"), method="heun"),
        "em": euler_maruyama(score, sde, x1, time_grid(sde, 300), generator=g),
        "pc": predictor_corrector(score, sde, x1, time_grid(sde, 100), snr=0.16, generator=g),
    }
    for name, x in runs.items():
        assert torch.allclose(x.mean(0), mix.means[0], atol=0.06), (name, x.mean(0))
        assert torch.allclose(x.std(0), torch.full((2,), 0.5, dtype=torch.float64), atol=0.04), (name, x.std(0))


def test_ode_sample_uses_genbook_flow_solvers():
    sde = VPSDE()
    _, score = _gaussian_case(sde)
    x1 = torch.randn(8, 2, dtype=torch.float64)
    ours = ode_sample(score, sde, x1, time_grid(sde, 7, eps=1e-3), method="rk4")
    theirs = odeint(lambda x, t: sde.ode_drift(x, t, score(x, t)), x1, steps=7, method="rk4", t0=1.0, t1=1e-3)
    assert torch.allclose(ours, theirs, atol=1e-12)


def test_hutchinson_is_unbiased_and_rademacher_is_exact_on_a_diagonal():
    a = torch.tensor([[1.0, 2.0, 0.0], [0.5, -1.0, 0.3], [0.0, 1.0, 3.0]], dtype=torch.float64)

    def v(x, t):
        return x @ a.T

    x = torch.randn(20_000, 3, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    for kind in ("rademacher", "gaussian"):
        _, est = hutchinson_divergence(v, x, torch.zeros(len(x)), probes(x.shape, kind, g, dtype=torch.float64))
        assert abs(est.mean().item() - 3.0) < 0.05, kind
    diag = torch.diag(torch.tensor([1.0, -2.0, 4.0], dtype=torch.float64))
    _, est = hutchinson_divergence(lambda x, t: x @ diag, x[:10], torch.zeros(10),
                                   probes((10, 3), "rademacher", g, dtype=torch.float64))
    assert torch.allclose(est, torch.full((10,), 3.0, dtype=torch.float64))
    _, exact = divergence(v, x[:10], torch.zeros(10))
    assert torch.allclose(exact, torch.full((10,), 3.0, dtype=torch.float64))


def test_ode_log_likelihood_of_a_gaussian_matches_the_closed_form():
    sde = VPSDE()
    mix, score = _gaussian_case(sde, mean=0.0)  # centred, so p_1 is N(0, I) to within 1e-5 (no prior mismatch)
    x = mix.sample(200, torch.Generator().manual_seed(1)).double()
    times = time_grid(sde, 40, eps=1e-5, spacing="log_snr").flip(0)
    exact = ode_log_likelihood(score, sde, x, times, method="rk4")
    # the data at eps have variance std² α² + σ² ≈ std²: compare with log p_eps
    assert torch.allclose(exact, noised_mixture(mix, sde, 1e-5).log_prob(x), atol=2e-3)
    hutch = ode_log_likelihood(score, sde, x, times, method="rk4", probe="rademacher",
                               generator=torch.Generator().manual_seed(2))
    # the exact score of an isotropic Gaussian has a diagonal Jacobian: Rademacher probes are then exact
    assert torch.allclose(hutch, exact, atol=1e-9)
    gauss = ode_log_likelihood(score, sde, x, times, method="rk4", probe="gaussian",
                               generator=torch.Generator().manual_seed(3))
    assert abs((gauss - exact).mean().item()) < 0.1 and (gauss - exact).abs().max() > 1e-3
