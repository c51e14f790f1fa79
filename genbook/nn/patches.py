"""Images as sequences of patches: ViT's input (Dosovitskiy et al. 2021, sec. 3.1, eq. 1) and its inverse.

Written from scratch in chapter 02; used by the Vision Transformer there and by
transformers over image latents later (a diffusion transformer outputs one vector
per patch and needs :func:`unpatchify`).

Convention: an image batch is (B, C, H, W). The (H/P) x (W/P) grid of P x P
patches is numbered row by row, and each patch is flattened in (channel, row,
column) order, the order of a ``Conv2d`` weight (D, C, P, P), so that
``patchify(x, P) @ conv.weight.reshape(D, -1).T + conv.bias`` equals a
convolution with kernel size and stride P.
"""

from __future__ import annotations

import torch

from genbook.validation import check_tensor


def _check_patch_size(patch_size) -> int:
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"patch_size must be a positive int, got {patch_size!r}.")
    return patch_size


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, C * P * P) with N = (H / P) (W / P): x_p of ViT's eq. 1."""
    check_tensor(images, "images", shape=("B", "C", "H", "W"))
    p = _check_patch_size(patch_size)
    b, c, h, w = images.shape
    if h % p or w % p:
        raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {p}.")
    grid = images.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)  # (B, H/P, W/P, C, P, P)
    return grid.reshape(b, (h // p) * (w // p), c * p * p)


def unpatchify(patches: torch.Tensor, patch_size: int, channels: int, height: int | None = None) -> torch.Tensor:
    """(B, N, C * P * P) -> (B, C, H, W), the inverse of :func:`patchify`.

    height: H in pixels; None means a square image (N must then be a square).
    """
    check_tensor(patches, "patches", shape=("B", "N", "C*P*P"))
    p = _check_patch_size(patch_size)
    b, n, d = patches.shape
    if d != channels * p * p:
        raise ValueError(f"patches have {d} numbers each; {channels} channels of {p}x{p} need {channels * p * p}.")
    if height is None:
        rows = round(n ** 0.5)
        if rows * rows != n:
            raise ValueError(f"{n} patches do not form a square grid; pass height= for a rectangular image.")
    else:
        if not isinstance(height, int) or height < p or height % p or n % (height // p):
            raise ValueError(f"height {height} does not fit {n} patches of size {p}.")
        rows = height // p
    cols = n // rows
    grid = patches.reshape(b, rows, cols, channels, p, p).permute(0, 3, 1, 4, 2, 5)  # (B, C, H/P, P, W/P, P)
    return grid.reshape(b, channels, rows * p, cols * p)
