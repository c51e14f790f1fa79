"""Checks for the exercises of chapter 02 (BERT and the Vision Transformer).

- Exercise 2.1 :func:`check_unpatchify`: turn a sequence of flattened patches back into
  images, the inverse of ViT's patchify (Dosovitskiy et al. 2021, sec. 3.1).
- Exercise 2.2 :func:`check_resize_position_embeddings`: resize ViT's learned position
  embeddings to a new grid by 2D interpolation, keeping the class token's
  (Dosovitskiy et al. 2021, sec. 3.2, "fine-tuning and higher resolution").

Conventions (those of the chapter and of :mod:`genbook.nn.patches`): an image batch is
(B, C, H, W); ``patchify`` cuts it into an (H/P) x (W/P) grid of P x P patches, numbered
row by row, each flattened in (channel, row, column) order, the order of a strided
``Conv2d``'s weight, giving (B, N, C * P * P) with N = HW / P². Position embeddings are (1, 1 + N, D), the class
token's first, then the patches' in the same row-by-row order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genbook.nn.patches import patchify

from .core import ExerciseFailed, call_student, expect_close

UNPATCHIFY = "Exercise 2.1 (unpatchify)"
RESIZE = "Exercise 2.2 (resize_position_embeddings)"


def check_unpatchify(fn) -> None:
    """``fn(patches (B, N, C*P*P), patch_size, channels) -> images (B, C, H, W)``, inverting patchify."""
    g = torch.Generator().manual_seed(0)
    for b, c, side, p in [(2, 1, 28, 7), (3, 3, 8, 4), (1, 2, 12, 3)]:
        images = torch.randn(b, c, side, side, generator=g)
        patches = patchify(images, p)
        got = call_student(fn, patches.clone(), p, c, exercise=UNPATCHIFY)
        what = f"unpatchify of {b} images {c}x{side}x{side} in {p}x{p} patches"
        if not isinstance(got, torch.Tensor) or got.shape != images.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise ExerciseFailed(f"{what} should have shape {tuple(images.shape)} (B, C, H, W), got {shape}.")
        if torch.allclose(got, images):
            continue
        if torch.allclose(got, images.transpose(-2, -1)):
            raise ExerciseFailed(f"{what}: the images come out transposed. Patches are numbered row by row "
                                 "(patch n sits in grid row n // side, column n % side), and inside a patch "
                                 "the pixel rows come before the columns.")
        side_p = side // p
        if c > 1 and torch.allclose(got, patches.reshape(b, side_p, side_p, p, p, c)
                                    .permute(0, 5, 1, 3, 2, 4).reshape(images.shape)):
            raise ExerciseFailed(f"{what}: the channels are mixed up. A patch vector is flattened as "
                                 "(channel, row, column), the order of a Conv2d weight (D, C, P, P).")
        if torch.allclose(got, patches.reshape(images.shape)):
            raise ExerciseFailed(f"{what}: a plain reshape does not undo patchify; the patch grid and the pixels "
                                 "inside a patch are interleaved in the image. Reshape to "
                                 "(B, H/P, W/P, C, P, P), then permute.")
        expect_close(got, images, what=what,
                     hint="reshape to (B, H/P, W/P, C, P, P), permute to (B, C, H/P, P, W/P, P), reshape.")


def resize_position_embeddings_reference(pos: torch.Tensor, new_side: int) -> torch.Tensor:
    """(1, 1 + S*S, D) -> (1, 1 + new_side², D): class token kept, the S x S grid resized bilinearly."""
    cls, grid = pos[:, :1], pos[:, 1:]
    side = int(round(grid.shape[1] ** 0.5))
    d = pos.shape[-1]
    grid = grid.reshape(1, side, side, d).permute(0, 3, 1, 2)  # (1, D, S, S): channels first for interpolate
    grid = F.interpolate(grid, size=(new_side, new_side), mode="bilinear", align_corners=False)
    return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(1, new_side * new_side, d)], dim=1)


def check_resize_position_embeddings(fn) -> None:
    """``fn(pos (1, 1 + S*S, D), new_side) -> (1, 1 + new_side², D)``, bilinear, class token unchanged."""
    g = torch.Generator().manual_seed(1)
    for side, new_side, d in [(4, 8, 6), (3, 5, 4), (6, 4, 8), (4, 4, 2)]:
        # A smooth but direction-dependent table, so that transposing the grid is visible.
        rows, cols = torch.meshgrid(torch.arange(side, dtype=torch.float32), torch.arange(side, dtype=torch.float32),
                                    indexing="ij")
        table = torch.stack([rows * (k + 1) - 0.5 * cols * k for k in range(d)], dim=-1).reshape(1, side * side, d)
        pos = torch.cat([torch.randn(1, 1, d, generator=g) + 10.0, table + 0.1 * torch.randn(table.shape, generator=g)],
                        dim=1)
        original = pos.clone()
        got = call_student(fn, pos, new_side, exercise=RESIZE)
        want = resize_position_embeddings_reference(original, new_side)
        what = f"resize_position_embeddings from a {side}x{side} grid to {new_side}x{new_side}"
        if not torch.equal(pos, original):
            raise ExerciseFailed(f"{what} changed its input in place; return a new tensor.")
        if not isinstance(got, torch.Tensor):
            raise ExerciseFailed(f"{what} should return a torch.Tensor, got {type(got).__name__}.")
        if got.shape == (1, new_side * new_side, d):
            raise ExerciseFailed(f"{what} returned {new_side * new_side} positions: the class token's embedding "
                                 f"is missing. Keep it first, unchanged: shape (1, 1 + {new_side * new_side}, {d}).")
        if got.shape != want.shape:
            raise ExerciseFailed(f"{what} should have shape {tuple(want.shape)}, got {tuple(got.shape)}.")
        if not torch.allclose(got[:, :1], original[:, :1], atol=1e-5):
            raise ExerciseFailed(f"{what}: the class token's embedding changed. It is not part of the image grid: "
                                 "split it off before interpolating and put it back in front.")
        if torch.allclose(got, want, atol=1e-4):
            continue
        transposed = want[:, 1:].reshape(1, new_side, new_side, d).transpose(1, 2).reshape(1, -1, d)
        if torch.allclose(got[:, 1:], transposed, atol=1e-4):
            raise ExerciseFailed(f"{what}: rows and columns are swapped. The grid part is numbered row by row: "
                                 "reshape it to (1, S, S, D) and permute to (1, D, S, S), rows before columns.")
        scrambled = F.interpolate(original[:, 1:].reshape(1, d, side, side), size=(new_side, new_side),
                                  mode="bilinear", align_corners=False).reshape(1, new_side * new_side, d)
        if torch.allclose(got[:, 1:], scrambled, atol=1e-4):
            raise ExerciseFailed(f"{what}: a plain reshape of (1, S*S, D) to (1, D, S, S) mixes up the embedding "
                                 "dimensions with the positions. Reshape to (1, S, S, D), then permute to "
                                 "(1, D, S, S) (F.interpolate wants channels first), and back the same way.")
        expect_close(got, want, what=what, atol=1e-4,
                     hint="use F.interpolate(..., mode='bilinear', align_corners=False) on the (1, D, S, S) grid.")
