"""Classifier-free guidance: the guided prediction, condition dropout, the guided model wrapper."""

import pytest
import torch

from genbook.diffusion.guidance import drop_condition, guidance_nfe, guided_model, guided_prediction


def test_guided_prediction_interpolates_and_extrapolates():
    cond, uncond = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    assert torch.allclose(guided_prediction(cond, uncond, 1.0), cond, atol=1e-6)  # u + (c − u): round-off only
    assert torch.equal(guided_prediction(cond, uncond, 0.0), uncond)
    assert torch.allclose(guided_prediction(cond, uncond, 3.0), 3 * cond - 2 * uncond, atol=1e-6)  # (1 + w) c − w u


def test_guided_prediction_gradients_flow_to_both():
    cond, uncond = torch.randn(2, 3, requires_grad=True), torch.randn(2, 3, requires_grad=True)
    guided_prediction(cond, uncond, 2.5).sum().backward()
    assert torch.allclose(cond.grad, torch.full((2, 3), 2.5)) and torch.allclose(uncond.grad, torch.full((2, 3), -1.5))


def test_drop_condition_replaces_about_p_of_the_rows():
    ids = torch.arange(1, 1 + 4000 * 5).reshape(4000, 5)
    null = torch.zeros(5, dtype=ids.dtype)
    out, dropped = drop_condition(ids, null, 0.1, generator=torch.Generator().manual_seed(0))
    assert out.shape == ids.shape and dropped.shape == (4000,)
    assert (out[dropped] == 0).all() and torch.equal(out[~dropped], ids[~dropped])
    assert abs(dropped.float().mean().item() - 0.1) < 0.02
    assert not drop_condition(ids, null, 0.0)[1].any() and drop_condition(ids, null, 1.0)[1].all()
    labels = torch.tensor([0, 1, 2, 3])
    out, dropped = drop_condition(labels, torch.tensor(10), 1.0)  # class labels, null class 10
    assert (out == 10).all()


def test_drop_condition_bad_inputs():
    ids = torch.zeros(4, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="p must be a probability"):
        drop_condition(ids, ids[0], 1.5)
    with pytest.raises(ValueError, match="null must have the shape"):
        drop_condition(ids, torch.zeros(3, dtype=torch.long), 0.1)
    with pytest.raises(TypeError, match="null has dtype"):
        drop_condition(ids, torch.zeros(5), 0.1)
    with pytest.raises(TypeError, match="null must be a torch.Tensor"):
        drop_condition(ids, 0, 0.1)


def test_guided_model_batches_both_halves_in_one_call():
    calls = []

    def model(x, t, c):
        calls.append(len(x))
        return x * c[:, :1, None, None].float() + t[:, None, None, None]

    x, t = torch.randn(3, 2, 4, 4), torch.rand(3)
    cond, null = torch.tensor([[2], [3], [4]]), torch.tensor([1])
    f = guided_model(model, cond, null, 2.0)
    out = f(x, t)
    assert calls == [6]  # one call on the doubled batch
    want = guided_prediction(model(x, t, cond), model(x, t, null.expand_as(cond)), 2.0)
    assert torch.allclose(out, want, atol=1e-6)
    calls.clear()
    assert torch.allclose(guided_model(model, cond, null, 1.0)(x, t), model(x, t, cond))
    assert calls[0] == 3  # no guidance: one evaluation, no doubling
    assert guidance_nfe(1.0) == 1 and guidance_nfe(0.0) == 1 and guidance_nfe(4.0) == 2


def test_guided_model_bad_inputs():
    cond = torch.zeros(3, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="scale must be a finite number"):
        guided_model(lambda *a: a[0], cond, cond[0], float("nan"))
    with pytest.raises(ValueError, match="null must be a tensor of shape"):
        guided_model(lambda *a: a[0], cond, torch.zeros(3), 2.0)
    f = guided_model(lambda x, t, c: x, cond, cond[0], 2.0)
    with pytest.raises(ValueError, match="x has 2 samples but 3 conditions"):
        f(torch.randn(2, 1), torch.rand(2))
    with pytest.raises(ValueError, match="scale must be"):
        guided_prediction(torch.zeros(1), torch.zeros(1), True)
    with pytest.raises(ValueError, match="uncond must have shape"):
        guided_prediction(torch.zeros(2, 3), torch.zeros(2, 4), 2.0)
