"""genbook.gan: the GAN losses against PyTorch's BCE, the DCGAN pair's shapes, gradients and errors, mode coverage."""

import math

import pytest
import torch
import torch.nn.functional as F

from genbook.gan import (
    DCGANDiscriminator,
    DCGANGenerator,
    ModeCoverage,
    dcgan_init,
    discriminator_loss,
    generator_loss,
    mode_coverage,
    optimal_discriminator,
)


def logits(n, seed, scale=4.0):
    g = torch.Generator().manual_seed(seed)
    return torch.cat([scale * torch.randn(n, generator=g, dtype=torch.float64), torch.tensor([80.0, -80.0])])


def test_losses_equal_binary_cross_entropy_even_for_extreme_logits():
    real, fake = logits(50, 0), logits(40, 1)
    bce = F.binary_cross_entropy_with_logits
    want_d = bce(real, torch.ones_like(real)) + bce(fake, torch.zeros_like(fake))
    assert torch.allclose(discriminator_loss(real, fake), want_d, atol=1e-12)
    assert torch.allclose(generator_loss(fake), bce(fake, torch.ones_like(fake)), atol=1e-12)
    assert torch.allclose(generator_loss(fake, "minimax"), -bce(fake, torch.zeros_like(fake)), atol=1e-12)
    assert torch.isfinite(discriminator_loss(real, fake)) and torch.isfinite(generator_loss(fake, "minimax"))


def test_losses_accept_column_logits_and_the_minimax_loss_saturates():
    real, fake = logits(8, 2).float(), logits(8, 3).float()
    assert torch.allclose(discriminator_loss(real[:, None], fake[:, None]), discriminator_loss(real, fake))
    # D(G(z)) = σ(ℓ) near 0: d/dℓ log(1 − σ(ℓ)) = −σ(ℓ) ≈ 0, while d/dℓ [−log σ(ℓ)] = σ(ℓ) − 1 ≈ −1.
    ell = torch.tensor([-8.0], requires_grad=True)
    (minimax,) = torch.autograd.grad(generator_loss(ell, "minimax"), ell)
    (non_saturating,) = torch.autograd.grad(generator_loss(ell), ell)
    assert abs(minimax.item()) < 1e-3 and non_saturating.item() < -0.99


@pytest.mark.parametrize("bad, error, match", [
    (torch.zeros(4, 2), ValueError, r"shape \(B,\) or \(B, 1\)"),
    (torch.zeros(4, dtype=torch.long), TypeError, "floating point"),
    (torch.zeros(0), ValueError, "at least 1"),
    ([0.0, 1.0], TypeError, "torch.Tensor"),
])
def test_losses_reject_bad_logits(bad, error, match):
    with pytest.raises(error, match=match):
        discriminator_loss(bad, torch.zeros(4))
    with pytest.raises(error, match=match):
        generator_loss(bad)


def test_generator_loss_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="non_saturating"):
        generator_loss(torch.zeros(3), "non-saturating")


def test_optimal_discriminator_is_stable_and_correct():
    log_p, log_q = torch.tensor([0.0, -1000.0, -2000.0, math.log(3.0)]), torch.tensor([0.0, -1001.0, -1000.0, 0.0])
    d = optimal_discriminator(log_p, log_q)
    assert torch.allclose(d, torch.tensor([0.5, 1 / (1 + math.exp(-1)), 0.0, 0.75]))
    with pytest.raises(ValueError, match="shape"):
        optimal_discriminator(torch.zeros(3), torch.zeros(4))


@pytest.mark.parametrize("num_classes", [None, 10])
def test_dcgan_shapes_range_and_gradients(num_classes):
    torch.manual_seed(0)
    G = DCGANGenerator(z_dim=16, width=8, num_classes=num_classes)
    D = DCGANDiscriminator(width=8, num_classes=num_classes)
    y = torch.arange(5) % 10 if num_classes else None
    x = G(torch.randn(5, 16), y)
    assert x.shape == (5, 1, 28, 28) and x.abs().max() <= 1
    out = D(x, y)
    assert out.shape == (5,)
    generator_loss(out).backward()
    for net in (G, D):
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    assert any(p.grad.abs().sum() > 0 for p in G.parameters())


def test_conditional_models_use_the_label():
    torch.manual_seed(0)
    G, D = DCGANGenerator(16, 8, num_classes=3).eval(), DCGANDiscriminator(8, num_classes=3).eval()
    z, x = torch.randn(2, 16).repeat(2, 1), torch.rand(2, 1, 28, 28).repeat(2, 1, 1, 1) * 2 - 1
    y = torch.tensor([0, 0, 1, 2])
    with torch.no_grad():
        torch.nn.init.normal_(D.project.weight)  # V_y starts at 0 (an unconditional D): give it values
        images, scores = G(z, y), D(x, y)
    assert not torch.allclose(images[0], images[2]) and not torch.allclose(scores[0], scores[2])


def test_dcgan_init_follows_radford_et_al():
    torch.manual_seed(0)
    G, D = DCGANGenerator(16, 32, num_classes=10), DCGANDiscriminator(32, num_classes=10)
    for net in (G, D):
        net.apply(dcgan_init)
    weights = torch.cat([m.weight.flatten() for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)])
    assert abs(weights.std().item() - 0.02) < 0.002 and abs(weights.mean().item()) < 0.002
    assert torch.all(D.out.bias == 0) and abs(G.project[2].weight.mean().item() - 1) < 0.01
    assert torch.all(D.project.weight == 0) and G.embed.weight.std() > 0.5  # embeddings keep their own init


def test_dcgan_rejects_bad_inputs():
    G, D = DCGANGenerator(16, 8), DCGANDiscriminator(8)
    with pytest.raises(ValueError, match=r"z must have shape \(B, 16\)"):
        G(torch.randn(4, 15))
    with pytest.raises(ValueError, match=r"x must have shape \(B, 1, 28, 28\)"):
        D(torch.randn(4, 28, 28))
    with pytest.raises(ValueError, match="unconditional"):
        G(torch.randn(4, 16), torch.zeros(4, dtype=torch.long))
    Gc = DCGANGenerator(16, 8, num_classes=10)
    with pytest.raises(ValueError, match="pass labels y"):
        Gc(torch.randn(4, 16))
    with pytest.raises(ValueError, match=r"y must lie in \[0, 9\]"):
        Gc(torch.randn(4, 16), torch.full((4,), 10))
    with pytest.raises(ValueError, match="positive"):
        DCGANGenerator(0, 8)


def test_mode_coverage_counts_modes_and_high_quality_samples():
    angles = torch.arange(8) * (2 * math.pi / 8)
    centres = 2 * torch.stack([angles.cos(), angles.sin()], 1)
    g = torch.Generator().manual_seed(0)
    real = centres[torch.arange(4000) % 8] + 0.2 * torch.randn(4000, 2, generator=g)
    full = mode_coverage(real, centres, 0.2)
    assert isinstance(full, ModeCoverage) and full.covered == 8 and full.high_quality > 0.97
    assert sum(full.counts) == round(full.high_quality * 4000) and full.min_count == 125
    collapsed = centres[torch.arange(4000) % 3] + 0.2 * torch.randn(4000, 2, generator=g)
    assert mode_coverage(collapsed, centres, 0.2).covered == 3
    # A few stray samples at a mode do not cover it: 1/4 of the fair share N/K is needed.
    few = torch.cat([collapsed, centres[7:8].repeat(100, 1)])
    assert mode_coverage(few, centres, 0.2).covered == 3
    assert mode_coverage(torch.zeros(100, 2), centres, 0.2).covered == 0
    assert "8/8 modes" in str(full)


def test_mode_coverage_rejects_bad_inputs():
    with pytest.raises(ValueError, match=r"centres must have shape \(K, 2\)"):
        mode_coverage(torch.zeros(5, 2), torch.zeros(3, 3), 0.1)
    with pytest.raises(ValueError, match="std and radius must be positive"):
        mode_coverage(torch.zeros(5, 2), torch.zeros(3, 2), 0.0)
    with pytest.raises(ValueError, match="min_share"):
        mode_coverage(torch.zeros(5, 2), torch.zeros(3, 2), 0.1, min_share=0.0)
