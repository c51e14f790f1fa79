"""genbook.nn.patches: ViT's patchify equals a strided convolution; unpatchify inverts it; bad input is refused."""

import pytest
import torch

from genbook.nn import patchify, unpatchify


def test_patchify_is_a_strided_convolution():
    g = torch.Generator().manual_seed(0)
    images, conv = torch.randn(2, 3, 12, 8, generator=g), torch.nn.Conv2d(3, 5, kernel_size=4, stride=4)
    by_conv = conv(images).flatten(2).transpose(1, 2)  # (B, N, D), patches row by row
    by_patches = patchify(images, 4) @ conv.weight.reshape(5, -1).T + conv.bias
    assert by_patches.shape == (2, 6, 5)
    assert torch.allclose(by_conv, by_patches, atol=1e-5)


def test_patch_order_is_row_by_row_then_channel_row_column():
    images = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)
    patches = patchify(images, 2)  # (1, 4, 8)
    assert patches.shape == (1, 4, 8)
    assert patches[0, 1].tolist() == [2, 3, 6, 7, 18, 19, 22, 23]  # top-right patch: channel 0 rows, then channel 1


@pytest.mark.parametrize("shape,p", [((3, 1, 28, 28), 7), ((2, 3, 8, 12), 4), ((1, 2, 6, 6), 1)])
def test_unpatchify_inverts_patchify(shape, p):
    images = torch.randn(shape)
    height = shape[2] if shape[2] != shape[3] else None
    assert torch.equal(unpatchify(patchify(images, p), p, shape[1], height=height), images)


def test_gradients_flow_through_both():
    images = torch.randn(2, 1, 8, 8, requires_grad=True)
    unpatchify(patchify(images, 4) * 2.0, 4, 1).sum().backward()
    assert torch.equal(images.grad, torch.full_like(images, 2.0))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"images must have shape \(B, C, H, W\), got \(28, 28\)"):
        patchify(torch.randn(28, 28), 7)
    with pytest.raises(ValueError, match="image size 28x28 is not a multiple of the patch size 5"):
        patchify(torch.randn(1, 1, 28, 28), 5)
    with pytest.raises(ValueError, match="patch_size must be a positive int"):
        patchify(torch.randn(1, 1, 28, 28), 0)
    with pytest.raises(ValueError, match="1 channels of 7x7 need 49"):
        unpatchify(torch.randn(1, 16, 48), 7, 1)
    with pytest.raises(ValueError, match="do not form a square grid"):
        unpatchify(torch.randn(1, 6, 16), 4, 1)
    with pytest.raises(ValueError, match="height 10 does not fit"):
        unpatchify(torch.randn(1, 6, 16), 4, 1, height=10)
    with pytest.raises(ValueError, match="height 0 does not fit"):  # not a division by zero
        unpatchify(torch.randn(1, 6, 16), 4, 1, height=0)
