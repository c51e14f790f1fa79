"""What every exercise check needs: a friendly failure and a tensor comparison."""

from __future__ import annotations

import torch


class ExerciseFailed(AssertionError):
    """The reader's function does not do what the exercise asks yet; the message says why."""


def call_student(fn, *args, exercise: str):
    """Call the reader's function, turning an unsolved stub into a clear message."""
    try:
        return fn(*args)
    except NotImplementedError as err:
        raise ExerciseFailed(f"{exercise} is not solved yet: {err}") from None


def expect_close(got, want: torch.Tensor, *, what: str, atol: float = 1e-5, rtol: float = 1e-5, hint: str = "") -> None:
    """Raise ExerciseFailed unless ``got`` is a tensor equal to ``want`` (shape and values)."""
    if not isinstance(got, torch.Tensor):
        raise ExerciseFailed(f"{what} should be a torch.Tensor, got {type(got).__name__}.")
    if got.shape != want.shape:
        raise ExerciseFailed(f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)}.")
    if not torch.isfinite(got).all():
        bad = (~torch.isfinite(got)).nonzero()[0].tolist()
        raise ExerciseFailed(f"{what} is not finite at index {bad} (value {got[tuple(bad)].item()}). {hint}".strip())
    if not torch.allclose(got.double(), want.double(), atol=atol, rtol=rtol):
        err = (got.double() - want.double()).abs()
        i = tuple(int(j) for j in torch.unravel_index(err.argmax(), err.shape))
        idx = list(i)
        raise ExerciseFailed(
            f"{what} differs from the reference by up to {err.max().item():.3g} "
            f"(at index {idx}: got {got[i].item():.6g}, expected {want[i].item():.6g}). {hint}".strip()
        )
