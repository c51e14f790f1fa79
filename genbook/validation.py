"""Argument checks with errors that say what was expected and how to fix it.

Every public genbook function that takes a tensor checks it here first, so a
reader who hands uint8 pixels to a function that wants floats in [-1, 1], or a
(B, H, W) batch where (B, C, H, W) was meant, gets one clear sentence instead of
a shape error deep inside a matmul (or, worse, a silently wrong number).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def check_tensor(
    x,
    name: str,
    *,
    shape: Sequence[int | str | None] | None = None,
    dtype: str | torch.dtype | None = None,
    value_range: tuple[float, float] | None = None,
    min_batch: int | None = None,
    finite: bool = False,
) -> torch.Tensor:
    """Return ``x`` if it is a tensor that fits the description, else raise.

    shape: one entry per dimension; an int must match exactly, a str or None
        matches anything (use names such as ``"B"`` to document the dimension).
    dtype: a ``torch.dtype``, or ``"floating"`` for any floating point type.
    value_range: (low, high) that every element must lie in (checked on the values);
        NaN and ±inf are refused too.
    min_batch: the first dimension must be at least this large.
    finite: refuse NaN and ±inf (implied by ``value_range``). Reading the answer
        synchronises with the device: keep it out of per-step code on a GPU.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}.")
    if shape is not None:
        want = "(" + ", ".join(str(s) if s is not None else "*" for s in shape) + ")"
        if x.dim() != len(shape) or any(
            isinstance(s, int) and x.shape[i] != s for i, s in enumerate(shape)
        ):
            raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}.")
    if dtype == "floating":
        if not x.is_floating_point():
            hint = " (uint8 pixels? convert with x.float() / 127.5 - 1)" if x.dtype == torch.uint8 else ""
            raise TypeError(f"{name} must be a floating point tensor, got {x.dtype}{hint}.")
    elif dtype is not None and x.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {x.dtype}.")
    if min_batch is not None and (x.dim() == 0 or x.shape[0] < min_batch):
        n = x.shape[0] if x.dim() else 0
        raise ValueError(f"{name} needs at least {min_batch} samples, got {n}.")
    if (finite or value_range is not None) and x.numel() and x.is_floating_point():
        if not torch.isfinite(x).all():
            n_nan, n_inf = int(torch.isnan(x).sum()), int(torch.isinf(x).sum())
            raise ValueError(f"{name} has values that are not finite: {n_nan} NaN and {n_inf} ±inf of "
                             f"{x.numel()} (diverged training, or a division by zero upstream?).")
    if value_range is not None and x.numel():
        low, high = value_range
        lo, hi = x.min().item(), x.max().item()
        if lo < low or hi > high:
            raise ValueError(
                f"{name} must lie in [{low}, {high}], got values in [{lo:.4g}, {hi:.4g}]"
                + (" (pixels in 0..255? scale with x / 127.5 - 1)" if hi > 2 and high <= 1 else "")
                + "."
            )
    return x
