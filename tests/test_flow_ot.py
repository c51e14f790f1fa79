"""Exact minibatch OT coupling of genbook.flow (OT-CFM, Tong et al. 2024) against independent references."""

import itertools

import pytest
import torch

import genbook.flow.coupling as coupling
from genbook.flow import ot_cost_matrix, ot_couple, ot_pairing, transport_cost


@pytest.fixture(params=["pot", "scipy"])
def solver(request, monkeypatch):
    """Run a test with POT's network simplex (when installed) and with scipy's assignment solver."""
    if request.param == "pot" and coupling._pot is None:
        pytest.skip("POT is not installed")
    if request.param == "scipy":
        monkeypatch.setattr(coupling, "_pot", None)
    return request.param


def pair_cost(x0, x1, perm):
    return (x0[perm] - x1).reshape(len(x1), -1).double().square().sum(1).sum().item()


@pytest.mark.parametrize("shape", [(6, 2), (7, 1, 2, 2)])
def test_assignment_is_optimal_against_brute_force(shape, solver):
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        x0, x1 = torch.randn(shape, generator=g), 2 * torch.randn(shape, generator=g) + 1
        perm = ot_pairing(x0, x1)
        assert sorted(perm.tolist()) == list(range(shape[0]))  # a permutation: every sample used once
        brute = min(pair_cost(x0, x1, torch.tensor(p)) for p in itertools.permutations(range(shape[0])))
        assert pair_cost(x0, x1, perm) == pytest.approx(brute, rel=1e-9, abs=1e-9)


def test_one_dimensional_closed_form_sorted_to_sorted(solver):
    # in 1D the quadratic-cost OT map is monotone: the k-th smallest noise goes to the k-th smallest data point
    g = torch.Generator().manual_seed(1)
    x0, x1 = torch.randn(50, 1, generator=g, dtype=torch.float64), torch.rand(50, 1, generator=g, dtype=torch.float64)
    paired, _ = ot_couple(x0, x1)
    assert torch.equal(paired[x1[:, 0].argsort(), 0], x0[:, 0].sort().values)


def test_recovers_a_hidden_permutation(solver):
    g = torch.Generator().manual_seed(2)
    x1 = torch.randn(64, 3, generator=g)
    hidden = torch.randperm(64, generator=g)
    x0 = torch.empty_like(x1)
    x0[hidden] = x1  # x1[j] sits at row hidden[j] of x0
    perm = ot_pairing(x0, x1)
    assert torch.equal(perm, hidden)
    assert transport_cost(*ot_couple(x0, x1)) == 0.0


def test_cost_matrix_against_cdist_and_never_increases_the_cost():
    g = torch.Generator().manual_seed(3)
    x0, x1 = torch.randn(40, 5, generator=g), torch.randn(40, 5, generator=g) + 3
    want = torch.cdist(x1.double(), x0.double()).square()
    assert torch.allclose(ot_cost_matrix(x0, x1), want, atol=1e-9)
    # the independent pairing (identity) is one of the permutations, so OT costs at most as much
    assert transport_cost(*ot_couple(x0, x1)) <= transport_cost(x0, x1)
    assert transport_cost(*ot_couple(x0, x1)) < 0.9 * transport_cost(x0, x1)


def test_matches_pot_exact_emd(solver):
    ot = pytest.importorskip("ot")
    g = torch.Generator().manual_seed(4)
    x0, x1 = torch.randn(32, 2, generator=g, dtype=torch.float64), torch.randn(32, 2, generator=g, dtype=torch.float64)
    weights = torch.full((32,), 1 / 32, dtype=torch.float64).numpy()
    plan_cost = float(ot.emd2(weights, weights, ot_cost_matrix(x0, x1).numpy()))  # mean cost of the exact plan
    assert transport_cost(*ot_couple(x0, x1)) == pytest.approx(plan_cost, rel=1e-10)


def test_keeps_device_and_dtype_of_x0():
    x0, x1 = torch.randn(5, 2, dtype=torch.float32), torch.randn(5, 2, dtype=torch.float32)
    paired, same = ot_couple(x0, x1)
    assert paired.dtype == torch.float32 and paired.device == x0.device and same is x1
    assert ot_pairing(x0[:1], x1[:1]).tolist() == [0]


@pytest.mark.parametrize("x0, x1, error", [
    (torch.randn(4, 2), torch.randn(5, 2), ValueError),  # unequal batches: not an assignment
    (torch.randn(4, 2), torch.randn(4, 3), ValueError),
    (torch.tensor([[0.0, float("nan")]]), torch.zeros(1, 2), ValueError),
    (torch.zeros(4, 2, dtype=torch.int64), torch.zeros(4, 2, dtype=torch.int64), (TypeError, ValueError)),
    ([[0.0, 1.0]], torch.zeros(1, 2), TypeError),
])
def test_bad_input_is_refused(x0, x1, error):
    with pytest.raises(error):
        ot_pairing(x0, x1)


def test_ties_fall_back_to_an_exact_assignment():
    # all costs equal: any permutation is optimal, and the result must still be one
    x = torch.zeros(6, 2)
    assert sorted(ot_pairing(x, x).tolist()) == list(range(6))
