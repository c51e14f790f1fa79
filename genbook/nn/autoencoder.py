"""A small convolutional encoder/decoder pair: images to a latent grid 4x smaller, and back.

28x28 grey Fashion-MNIST goes to a 7x7 grid, 32x32 RGB shapes to 8x8. The same pair is the
autoencoder, the VAE's body and the VQ-VAE's of chapter 03, and the first stage of latent
diffusion (chapter 08) and of DALL·E (chapter 09). Each halving of the resolution is a 4x4
stride-2 convolution (its transpose on the way up), as in the VQ-VAE paper (van den Oord et al.
2017, sec. 4.1); one residual block sits at the bottom of each side.
"""

from __future__ import annotations

import torch
from torch import nn

from genbook.validation import check_tensor


def _check_widths(widths) -> tuple[int, ...]:
    widths = tuple(widths)
    if not widths or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths):
        raise ValueError(f"widths must be a non-empty sequence of positive ints, got {widths!r}.")
    return widths


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class ResidualBlock(nn.Module):
    """x + conv3x3(SiLU(norm(conv3x3(SiLU(norm(x)))))): (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            _norm(channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
            _norm(channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ConvEncoder(nn.Module):
    """(B, in_channels, H, W) -> (B, latent_channels, H / 2^L, W / 2^L), L = len(widths).

    widths=(32, 64): 28x28 -> 14x14 (32 channels) -> 7x7 (64 channels) -> residual block -> 1x1 conv.
    """

    def __init__(self, in_channels: int = 1, latent_channels: int = 16, widths=(32, 64)):
        super().__init__()
        widths = _check_widths(widths)
        layers, previous = [], in_channels
        for width in widths:
            layers += [nn.Conv2d(previous, width, 4, stride=2, padding=1), _norm(width), nn.SiLU()]
            previous = width
        layers += [ResidualBlock(previous), _norm(previous), nn.SiLU(), nn.Conv2d(previous, latent_channels, 1)]
        self.net = nn.Sequential(*layers)
        self.in_channels, self.latent_channels, self.factor = in_channels, latent_channels, 2 ** len(widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor(x, "x", shape=("B", self.in_channels, "H", "W"), dtype="floating")
        if x.shape[-1] % self.factor or x.shape[-2] % self.factor:
            raise ValueError(f"image size {tuple(x.shape[-2:])} must be divisible by {self.factor} "
                             f"(the encoder halves it {self.factor.bit_length() - 1} times).")
        return self.net(x)


class ConvDecoder(nn.Module):
    """(B, latent_channels, h, w) -> (B, out_channels, h · 2^L, w · 2^L), L = len(widths).

    widths=(64, 32) mirrors the encoder's (32, 64): 1x1 conv -> residual block -> 7x7 -> 14x14 -> 28x28.
    The output is unbounded (the caller chooses tanh, a Gaussian mean, logits, ...).
    """

    def __init__(self, out_channels: int = 1, latent_channels: int = 16, widths=(64, 32)):
        super().__init__()
        widths = _check_widths(widths)
        layers = [nn.Conv2d(latent_channels, widths[0], 1), ResidualBlock(widths[0])]
        previous = widths[0]
        for width in widths:
            layers += [_norm(previous), nn.SiLU(), nn.ConvTranspose2d(previous, width, 4, stride=2, padding=1)]
            previous = width
        layers += [_norm(previous), nn.SiLU(), nn.Conv2d(previous, out_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)
        self.latent_channels = latent_channels

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        check_tensor(z, "z", shape=("B", self.latent_channels, "h", "w"), dtype="floating")
        return self.net(z)
