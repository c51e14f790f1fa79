"""Fixed-step ODE solvers and exact 2D likelihoods of genbook.flow."""

import math

import pytest
import torch

from genbook.flow import NFE_PER_STEP, ORDER, divergence, log_likelihood, nfe, odeint


def linear_ode(x, t):
    return (1 + t)[:, None] * x  # x(1) = x(0) exp(3 / 2)


@pytest.mark.parametrize("method", sorted(ORDER))
def test_convergence_order_on_closed_form_ode(method):
    x0 = torch.ones(2, 1, dtype=torch.float64)
    exact = x0 * math.exp(1.5)
    errors = [(odeint(linear_ode, x0, steps=s, method=method) - exact).abs().max().item() for s in (16, 32)]
    measured = math.log2(errors[0] / errors[1])
    assert abs(measured - ORDER[method]) < 0.15, (method, errors)


@pytest.mark.parametrize("method", sorted(ORDER))
def test_nfe_is_counted(method):
    calls = []

    def v(x, t):
        assert t.shape == (x.shape[0],)
        calls.append(t[0].item())
        return -x

    odeint(v, torch.randn(3, 2), steps=5, method=method)
    assert len(calls) == nfe(method, 5) == 5 * NFE_PER_STEP[method]
    assert min(calls) >= 0.0 and max(calls) <= 1.0


def test_backwards_integration_inverts_and_path_shape():
    x0 = torch.randn(4, 1, 5, 5, dtype=torch.float64)

    def v(x, t):
        return torch.sin(x) + t.reshape(-1, 1, 1, 1)

    path = odeint(v, x0, steps=50, method="rk4", return_path=True)
    assert path.shape == (51, 4, 1, 5, 5)
    assert torch.equal(path[0], x0)
    back = odeint(v, path[-1], steps=50, method="rk4", t0=1.0, t1=0.0)
    assert torch.allclose(back, x0, atol=1e-6)


def test_divergence_is_exact_and_differentiable():
    w = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    x = torch.randn(6, 3, dtype=torch.float64)
    t = torch.zeros(6, dtype=torch.float64)
    out, div = divergence(lambda x, t: x @ w.T, x, t, create_graph=True)
    assert out.shape == (6, 3) and div.shape == (6,)
    assert torch.allclose(div, torch.diagonal(w).sum().expand(6))  # div(Wx) = tr W
    div.sum().backward()
    assert torch.allclose(w.grad, 6 * torch.eye(3, dtype=torch.float64))


def test_log_likelihood_of_linear_flow_matches_closed_form():
    a = -0.4  # v = a x: x_1 = e^a x_0, p_1 = N(0, e^{2a} I)
    x1 = torch.randn(50, 2, dtype=torch.float64)
    got = log_likelihood(lambda x, t: a * x, x1, steps=10)
    want = torch.distributions.Normal(0.0, math.exp(a)).log_prob(x1).sum(1)
    assert torch.allclose(got, want, atol=1e-8)


def test_log_likelihood_works_under_no_grad():
    with torch.no_grad():
        got = log_likelihood(lambda x, t: 0.5 * x, torch.randn(4, 2), steps=4)
    assert got.shape == (4,) and torch.isfinite(got).all()


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="method must be one of"):
        odeint(linear_ode, torch.ones(1, 1), steps=2, method="rk45")
    with pytest.raises(ValueError, match="steps must be a positive int"):
        odeint(linear_ode, torch.ones(1, 1), steps=0)
    with pytest.raises(TypeError, match="floating"):
        odeint(linear_ode, torch.ones(1, 1, dtype=torch.long), steps=2)
    with pytest.raises(ValueError, match="x1 must have shape"):
        log_likelihood(lambda x, t: x, torch.randn(2, 1, 4, 4))
