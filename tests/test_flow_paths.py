"""Gaussian probability paths and the CFM loss of genbook.flow (Lipman et al. 2023, eqs. 20–23)."""

import pytest
import torch

from genbook.flow import OTPath, VPPath, cfm_loss, log_normal


def data(b=16, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g, dtype=torch.float64), torch.randn(b, d, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("sigma_min", [0.0, 0.01, 0.2])
def test_ot_path_matches_eqs_22_23(sigma_min):
    x0, x1 = data()
    t = torch.linspace(0, 1, 16, dtype=torch.float64)
    path = OTPath(sigma_min)
    want = (1 - (1 - sigma_min) * t[:, None]) * x0 + t[:, None] * x1
    assert torch.allclose(path.sample(x0, x1, t), want)
    assert torch.allclose(path.target(x0, x1, t), (x1 - (1 - sigma_min) * x0).expand_as(x0))
    # endpoints: noise at t = 0, (almost) the data point at t = 1
    assert torch.allclose(path.sample(x0, x1, torch.zeros(16, dtype=torch.float64)), x0)
    assert torch.allclose(path.sample(x0, x1, torch.ones(16, dtype=torch.float64)), x1 + sigma_min * x0)


@pytest.mark.parametrize("path", [OTPath(0.05), VPPath()], ids=repr)
def test_velocity_is_time_derivative_of_the_path(path):
    x0, x1 = data()
    t = torch.linspace(0.05, 0.95, 16, dtype=torch.float64)
    h = 1e-6
    finite_difference = (path.sample(x0, x1, t + h) - path.sample(x0, x1, t - h)) / (2 * h)
    assert torch.allclose(path.target(x0, x1, t), finite_difference, atol=1e-5)


def test_vp_path_is_variance_preserving_and_ends_at_data():
    vp = VPPath()
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    assert torch.allclose(vp.alpha(t) ** 2 + vp.sigma(t) ** 2, torch.ones_like(t))
    assert vp.alpha(torch.ones(1)).item() == pytest.approx(1.0)
    assert vp.alpha(torch.zeros(1)).item() < 0.01  # almost pure noise at t = 0


def test_image_shapes_broadcast():
    x0, x1 = torch.randn(4, 1, 28, 28), torch.randn(4, 1, 28, 28)
    t = torch.rand(4)
    for path in (OTPath(), VPPath()):
        assert path.sample(x0, x1, t).shape == (4, 1, 28, 28)
        assert path.target(x0, x1, t).shape == (4, 1, 28, 28)


def test_cfm_loss_value_and_gradient():
    x0, x1 = data(32, 2)
    x0, x1 = x0.float(), x1.float()
    t = torch.rand(32)
    net = torch.nn.Linear(3, 2)

    def v(x, t):
        return net(torch.cat([x, t[:, None]], 1))

    loss = cfm_loss(v, OTPath(0.0), x1, x0=x0, t=t)
    want = (v((1 - t[:, None]) * x0 + t[:, None] * x1, t) - (x1 - x0)).square().mean()
    assert torch.allclose(loss, want)
    loss.backward()
    assert net.weight.grad is not None and torch.isfinite(net.weight.grad).all()
    # the drawn noise and times follow the generator
    a = cfm_loss(v, OTPath(), x1, generator=torch.Generator().manual_seed(1))
    b = cfm_loss(v, OTPath(), x1, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_log_normal():
    x = torch.randn(5, 2, 3)
    want = torch.distributions.Normal(0.0, 1.0).log_prob(x).sum((1, 2))
    assert torch.allclose(log_normal(x), want, atol=1e-5)


def test_bad_inputs_raise():
    x0, x1 = torch.randn(4, 2), torch.randn(4, 2)
    with pytest.raises(ValueError, match="sigma_min"):
        OTPath(1.5)
    with pytest.raises(ValueError, match="beta_min"):
        VPPath(beta_min=5.0, beta_max=1.0)
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        OTPath().sample(x0, x1, torch.full((4,), 2.0))
    with pytest.raises(ValueError, match="t must have shape"):
        OTPath().sample(x0, x1, torch.rand(3))
    with pytest.raises(ValueError, match="x1 must have shape"):
        OTPath().target(x0, torch.randn(4, 3), torch.rand(4))
    with pytest.raises(TypeError, match="floating"):
        OTPath().sample(x0, x1.long(), torch.rand(4))
