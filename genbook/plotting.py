"""Figures the chapters share: image grids (no torchvision needed) and loss curves."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch

from .validation import check_tensor


def image_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 1.0) -> torch.Tensor:
    """Tile a batch into one image.

    images: (N, C, H, W) floats in [-1, 1], C in {1, 3}.
    Returns (H', W', C) floats in [0, 1], ready for ``plt.imshow``.
    """
    check_tensor(images, "images", shape=("N", None, "H", "W"), dtype="floating", value_range=(-1.0, 1.0),
                 min_batch=1)
    n, c, h, w = images.shape
    if c not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got {c} (shape {tuple(images.shape)}).")
    if nrow < 1:
        raise ValueError(f"nrow must be >= 1, got {nrow}.")
    ncol = min(nrow, n)
    rows = math.ceil(n / ncol)
    grid = torch.full((c, rows * (h + padding) + padding, ncol * (w + padding) + padding), pad_value)
    pixels = (images.detach().float().cpu() + 1) / 2
    for k in range(n):
        r, q = divmod(k, ncol)
        top, left = padding + r * (h + padding), padding + q * (w + padding)
        grid[:, top:top + h, left:left + w] = pixels[k]
    return grid.permute(1, 2, 0)


IMAGE_INCHES = 0.8  # a 28x28 tile drawn 0.8 inch wide: about 80 px on the page, enough to tell a shoe from a bag
MAX_COLUMNS = 12  # more tiles than this in a row are too small to read in the book's column


def grid_columns(nrow: int, max_columns: int | None = MAX_COLUMNS) -> int:
    """Tiles per row actually drawn: ``nrow``, or its largest divisor <= ``max_columns`` (16 -> 8, 20 -> 10).

    A divisor keeps every requested row whole (a long strip becomes two or more full rows).
    """
    if max_columns is None or nrow <= max_columns:
        return nrow
    return max(d for d in range(1, max_columns + 1) if nrow % d == 0)


def show_images(images: torch.Tensor, nrow: int = 8, title: str | None = None, ax=None,
                scale: float = IMAGE_INCHES, max_columns: int | None = MAX_COLUMNS):
    """Draw ``image_grid(images, nrow)``; returns the matplotlib Axes.

    scale: inches per image tile (28 pixels plus padding) when a new figure is made.
    max_columns: rows longer than this are folded into whole rows of a divisor of ``nrow`` (see
        :func:`grid_columns`), so samples stay large enough to see; ``None`` draws ``nrow`` per row as asked.
    """
    nrow = grid_columns(nrow, max_columns)
    grid = image_grid(images, nrow=nrow).numpy()
    if ax is None:
        tile = images.shape[-1] + 2
        _, ax = plt.subplots(figsize=(scale * grid.shape[1] / tile, scale * grid.shape[0] / tile))
    ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def plot_losses(history: dict, ax=None, logy: bool = False, title: str | None = None):
    """Plot every logged series of a training history (name -> [(step, value), ...])."""
    if not history:
        raise ValueError("history is empty: nothing to plot (did training log anything?).")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    for name, points in history.items():
        steps, values = zip(*points)
        ax.plot(steps, values, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("value")
    if logy:
        ax.set_yscale("log")
    if len(history) > 1:
        ax.legend()
    if title:
        ax.set_title(title)
    return ax
