"""The training helpers chapters share: the warm-up-then-constant schedule and Adam fused where it can be."""

import pytest
import torch
from torch import nn

import genbook


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    monkeypatch.setenv("GENBOOK_PROGRESS", "off")


def test_warmup_constant_follows_its_closed_form():
    peak, warmup = 3e-3, 50
    lr = genbook.warmup_constant(peak, warmup)
    for s in (0, 1, 24, 48):  # linear warm-up: peak (s + 1) / warmup
        assert lr(s) == pytest.approx(peak * (s + 1) / warmup)
    assert lr(49) == pytest.approx(peak)  # the last warm-up step reaches the peak
    assert all(lr(s) == peak for s in (50, 51, 1000, 10**6))  # then constant
    assert all(lr(s) < lr(s + 1) for s in range(warmup - 1))
    assert genbook.warmup_constant(1e-3, 0)(0) == 1e-3  # no warm-up: constant from the first step


@pytest.mark.parametrize("peak, warmup, argument", [
    (0.0, 10, "peak"), (-1e-3, 10, "peak"), (float("nan"), 10, "peak"), (float("inf"), 10, "peak"),
    ("1e-3", 10, "peak"), (True, 10, "peak"),
    (1e-3, -1, "warmup"), (1e-3, 2.5, "warmup"), (1e-3, True, "warmup"), (1e-3, None, "warmup"),
])
def test_warmup_constant_refuses_bad_arguments(peak, warmup, argument):
    with pytest.raises(ValueError, match=f"warmup_constant: {argument} must be"):
        genbook.warmup_constant(peak, warmup)


def _train(make_optimizer, steps=5):
    """The parameters of a small MLP after ``steps`` Adam steps on fixed data (same seed every call)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 2))
    x, y = torch.randn(32, 3), torch.randn(32, 2)
    optimizer = make_optimizer(model.parameters())
    for _ in range(steps):
        optimizer.zero_grad()
        (model(x) - y).square().mean().backward()
        optimizer.step()
    return optimizer, [p.detach().clone() for p in model.parameters()]


def test_adam_is_fused_on_cpu_and_matches_plain_adam():
    fused, ours = _train(lambda params: genbook.adam(params, 1e-2, betas=(0.9, 0.99), weight_decay=1e-4))
    plain, reference = _train(lambda params: torch.optim.Adam(params, lr=1e-2, betas=(0.9, 0.99), weight_decay=1e-4,
                                                              fused=False, foreach=False))
    assert isinstance(fused, torch.optim.Adam) and fused.defaults["fused"] is True
    assert fused.defaults["betas"] == (0.9, 0.99) and fused.defaults["weight_decay"] == 1e-4
    assert not plain.defaults["fused"]
    initial = _train(lambda params: torch.optim.Adam(params, lr=1e-2), steps=0)[1]
    assert not all(torch.allclose(a, b) for a, b in zip(ours, initial))  # the steps moved the parameters
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_adam_with_decoupled_weight_decay_matches_plain_adamw():
    fused, ours = _train(lambda params: genbook.adam(params, 1e-2, weight_decay=0.1, decoupled_weight_decay=True))
    _, reference = _train(lambda params: torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1, fused=False,
                                                           foreach=False))
    _, coupled = _train(lambda params: torch.optim.Adam(params, lr=1e-2, weight_decay=0.1))
    assert fused.defaults["fused"] is True
    assert not all(torch.allclose(a, b) for a, b in zip(ours, coupled))  # AdamW's decay is not Adam's L2 term
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_adam_takes_parameter_groups_and_an_explicit_choice():
    model = nn.Linear(2, 2)
    groups = [{"params": [model.weight], "lr": 1e-3}, {"params": [model.bias]}]
    optimizer = genbook.adam(groups, 1e-2)
    assert optimizer.defaults["fused"] is True and [g["lr"] for g in optimizer.param_groups] == [1e-3, 1e-2]
    assert not genbook.adam(model.parameters(), 1e-2, fused=False).defaults["fused"]  # the caller's choice wins
    assert genbook.adam(model.parameters(), 1e-2, foreach=True).defaults["fused"] is None


def test_adam_not_fused_off_a_fused_device():
    meta = nn.Linear(2, 2, device="meta")  # no fused kernel on the meta device: torch's default is kept
    assert genbook.adam(meta.parameters(), 1e-2).defaults["fused"] is None


@pytest.mark.parametrize("lr", [0, -1e-3, float("nan"), float("inf"), "1e-3", None, True])
def test_adam_refuses_a_bad_lr(lr):
    with pytest.raises(ValueError, match="adam: lr must be a finite number > 0"):
        genbook.adam(nn.Linear(2, 2).parameters(), lr)


def test_adam_refuses_empty_parameters():
    with pytest.raises(ValueError, match="adam: parameters is empty"):
        genbook.adam(nn.ReLU().parameters(), 1e-3)
    with pytest.raises(ValueError, match="adam: parameters is empty"):
        genbook.adam([{"params": []}], 1e-3)
    with pytest.raises(TypeError, match="adam: parameters must be an iterable"):
        genbook.adam(torch.zeros(2, requires_grad=True), 1e-3)
