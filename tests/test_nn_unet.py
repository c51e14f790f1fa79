"""The diffusion UNet: shapes, gradients, the time embedding, class conditioning, bad inputs."""

import math

import pytest
import torch

from genbook.nn.unet import UNet, count_parameters, timestep_embedding


def randomise_zero_inits(model: UNet) -> UNet:
    """The last layers start at zero (an identity-like initialisation); perturb them so every path matters."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model


@pytest.mark.parametrize("kwargs, shape", [
    (dict(channels=(8, 16, 16)), (2, 1, 28, 28)),
    (dict(channels=(8, 16), patch_size=2), (3, 1, 28, 28)),
    (dict(in_channels=3, channels=(8, 8), blocks=2, attention=False), (2, 3, 8, 12)),
    (dict(in_channels=4, channels=(8, 16), out_channels=2), (1, 4, 8, 8)),
])
def test_output_shape(kwargs, shape):
    model = UNet(**kwargs)
    out = model(torch.randn(shape), torch.tensor([3] * shape[0]))
    assert out.shape == (shape[0], kwargs.get("out_channels", shape[1]), *shape[2:])


@pytest.mark.parametrize("scale_shift", [True, False])
def test_untrained_model_predicts_zero_and_every_parameter_gets_a_gradient(scale_shift):
    model = UNet(channels=(8, 16), num_classes=3, scale_shift=scale_shift)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([1, 500])
    assert model(x, t).abs().max() == 0  # zero-initialised output layer
    randomise_zero_inits(model)
    model(x, t, torch.tensor([0, 2])).square().mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reaches {missing}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())


def test_samples_of_a_batch_do_not_interact():
    """GroupNorm, not BatchNorm: sample 0's output must not depend on the rest of the batch."""
    model = randomise_zero_inits(UNet(channels=(8, 16))).eval()
    x, t = torch.randn(4, 1, 8, 8), torch.tensor([10, 20, 30, 40])
    assert torch.allclose(model(x, t)[:1], model(x[:1], t[:1]), atol=1e-5)


@pytest.mark.parametrize("scale_shift", [True, False])  # AdaGN, or the embedding added as a bias
def test_time_and_class_change_the_output_and_no_label_means_unconditional(scale_shift):
    model = randomise_zero_inits(UNet(channels=(8, 16), num_classes=10, scale_shift=scale_shift)).eval()
    x = torch.randn(2, 1, 8, 8)
    t = torch.tensor([5, 5])
    assert not torch.allclose(model(x, t), model(x, t + 400))
    assert not torch.allclose(model(x, t, torch.tensor([1, 1])), model(x, t, torch.tensor([7, 7])))
    assert torch.allclose(model(x, t), model(x, t, torch.tensor([10, 10])))
    assert torch.allclose(model(x, 5), model(x, t))  # a scalar t is broadcast


def test_timestep_embedding_is_sinusoidal():
    t = torch.tensor([0.0, 1.0, 250.0])
    emb = timestep_embedding(t, 8)
    assert emb.shape == (3, 8)
    i = 2  # frequency ω_2 = 10000^(-2/4)
    assert emb[2, i].item() == pytest.approx(math.sin(250 * 10000 ** (-i / 4)), abs=1e-5)
    assert emb[2, 4 + i].item() == pytest.approx(math.cos(250 * 10000 ** (-i / 4)), abs=1e-5)
    assert torch.equal(emb[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    with pytest.raises(ValueError, match="even"):
        timestep_embedding(t, 7)


def test_bad_inputs_raise_clear_errors():
    model = UNet(channels=(8, 16, 16))
    with pytest.raises(ValueError, match=r"divisible by patch_size \* 2\^\(levels - 1\) = 4"):
        model(torch.randn(1, 1, 30, 30), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"x must have shape \(B, 1, H, W\)"):
        model(torch.randn(1, 3, 28, 28), torch.tensor([0]))
    with pytest.raises(TypeError, match="floating point"):
        model(torch.zeros(1, 1, 28, 28, dtype=torch.uint8), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"t must have shape \(2\)"):
        model(torch.randn(2, 1, 28, 28), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="unconditional"):
        model(torch.randn(1, 1, 28, 28), torch.tensor([0]), torch.tensor([3]))
    with pytest.raises(ValueError, match="channels"):
        UNet(channels=())
    with pytest.raises(ValueError, match="divisible by heads"):
        UNet(channels=(8, 6))
