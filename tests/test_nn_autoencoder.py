"""genbook.nn.autoencoder: shapes on 28x28 grey and 32x32 RGB, gradients, bad input."""

import pytest
import torch

from genbook.nn.autoencoder import ConvDecoder, ConvEncoder


@pytest.mark.parametrize("channels, size", [(1, 28), (3, 32)])
def test_round_trip_shapes_and_gradients(channels, size):
    encoder = ConvEncoder(channels, latent_channels=5, widths=(8, 16))
    decoder = ConvDecoder(channels, latent_channels=5, widths=(16, 8))
    x = torch.randn(2, channels, size, size)
    z = encoder(x)
    assert z.shape == (2, 5, size // 4, size // 4)
    out = decoder(z)
    assert out.shape == x.shape
    out.square().mean().backward()
    for module in (encoder, decoder):
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in module.parameters())


def test_three_halvings():
    assert ConvEncoder(1, 4, widths=(8, 8, 8))(torch.randn(1, 1, 32, 32)).shape == (1, 4, 4, 4)
    assert ConvDecoder(1, 4, widths=(8, 8, 8))(torch.randn(1, 4, 4, 4)).shape == (1, 1, 32, 32)


@pytest.mark.parametrize("call, match", [
    (lambda: ConvEncoder(1, 4, widths=()), "widths"),
    (lambda: ConvDecoder(1, 4, widths=(8, 0)), "widths"),
    (lambda: ConvEncoder(1, 4, widths=(8, 8))(torch.randn(1, 1, 30, 30)), "divisible"),
    (lambda: ConvEncoder(3, 4)(torch.randn(1, 1, 28, 28)), "x must have shape"),
    (lambda: ConvDecoder(1, 4)(torch.randn(1, 5, 7, 7)), "z must have shape"),
])
def test_bad_input_is_named(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
