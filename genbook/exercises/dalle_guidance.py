"""Check for chapter 09's exercise on classifier-free guidance of a token model's logits.

* Exercise 9.3: the guided next-token logits ℓ̃ = ℓ_∅ + g (ℓ_c − ℓ_∅) (Ho & Salimans 2022, as used
  for autoregressive image-token models by Gafni et al. 2022 and Yu et al. 2022), over DALL·E's
  joint vocabulary, where the modality mask sets the entries of the other vocabulary to −inf in
  both rows. g = 1 must give the conditional logits; the masked entries must stay −inf (not NaN).
  The reference is written here from the definition, entry by entry.
"""

from __future__ import annotations

import torch

from .core import ExerciseFailed, call_student

EXERCISE_GUIDED_LOGITS = "Exercise 9.3 (guided_logits)"


def guided_logits_reference(cond: torch.Tensor, uncond: torch.Tensor, g: float) -> torch.Tensor:
    """(B, V) logits with −inf at the same entries -> ℓ_∅ + g (ℓ_c − ℓ_∅) where finite, −inf elsewhere."""
    out = torch.full_like(cond, float("-inf"))
    allowed = torch.isfinite(cond)
    out[allowed] = uncond[allowed] + g * (cond[allowed] - uncond[allowed])
    return out


def _row_shift(got: torch.Tensor, want: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """got − want on the allowed entries less each row's mean difference (a row constant does not change softmax)."""
    diff = torch.where(allowed, got.double() - want.double(), torch.zeros((), dtype=torch.float64))
    mean = diff.sum(1, keepdim=True) / allowed.sum(1, keepdim=True)
    return torch.where(allowed, diff - mean, torch.zeros((), dtype=torch.float64))


def _same(got: torch.Tensor, want: torch.Tensor, allowed: torch.Tensor) -> bool:
    return bool(_row_shift(got, want, allowed).abs().max() <= 1e-9 * max(1.0, float(want[allowed].abs().max())))


def check_guided_logits(fn) -> None:
    """Check ``fn(cond, uncond, g) -> guided`` with cond, uncond (B, V) float and g a float.

    cond and uncond hold −inf at the same entries (the modality mask); the result must be
    ℓ_∅ + g (ℓ_c − ℓ_∅) on the other entries (up to a constant per row, which the softmax
    ignores) and −inf on the masked ones. Tested at g = 3, 1.5, 1 and 0, in float64.
    """
    gen = torch.Generator().manual_seed(93)
    b, v_text, v_image = 3, 4, 7
    cond = torch.randn(b, v_text + v_image, generator=gen, dtype=torch.float64) * 2
    uncond = torch.randn(b, v_text + v_image, generator=gen, dtype=torch.float64) * 2
    cond[:, :v_text] = uncond[:, :v_text] = float("-inf")  # an image position: text entries masked
    allowed = torch.isfinite(cond)
    for g in (3.0, 1.5, 1.0, 0.0):
        got = call_student(fn, cond.clone(), uncond.clone(), g, exercise=EXERCISE_GUIDED_LOGITS)
        where = f"{EXERCISE_GUIDED_LOGITS} at g = {g}"
        if not isinstance(got, torch.Tensor) or got.shape != cond.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise ExerciseFailed(f"{where}: return a tensor of the logits' shape {tuple(cond.shape)}, got {shape}.")
        if torch.isnan(got).any():
            raise ExerciseFailed(f"{where}: the result has NaN entries. At a masked entry both logits are −inf, and "
                                 "−inf − (−inf) is NaN: guide only the allowed entries and keep −inf at the others.")
        if not torch.equal(torch.isneginf(got), ~allowed):
            raise ExerciseFailed(f"{where}: the masked entries (−inf in both rows) must stay −inf, and only they: "
                                 "the guided distribution may not give the other modality's tokens any probability.")
        want = guided_logits_reference(cond, uncond, g)
        if _same(got, want, allowed):
            continue
        probs = got[allowed].view(b, -1)
        if bool((probs >= 0).all() and (probs <= 1).all()) and torch.allclose(probs.sum(1).double(),
                                                                              torch.ones(b, dtype=torch.float64)):
            raise ExerciseFailed(f"{where}: these look like probabilities; return the guided logits (the sampler "
                                 "applies temperature and top-k to them before the softmax).")
        hints = [
            (cond + g * uncond, "cond + g · uncond adds the two; guidance extrapolates from the unconditional logits "
             "along their difference: uncond + g (cond − uncond)."),
            (cond + g * (uncond - cond), "cond and uncond are swapped: start from the unconditional logits and move "
             "towards (and past, for g > 1) the conditional ones."),
            ((1 + g) * cond - g * uncond, "this is Ho & Salimans' (1 + w) ℓ_c − w ℓ_∅ with w = g: here g = 1 must give "
             "the conditional logits, so w = g − 1 and the result is uncond + g (cond − uncond)."),
            (cond, "the result equals the conditional logits: the guidance scale is not applied."),
            (g * (cond - uncond), "the unconditional logits are missing: uncond + g (cond − uncond)."),
        ]
        for wrong, message in hints:
            if _same(got, wrong, allowed):
                raise ExerciseFailed(f"{where}: {message}")
        error = _row_shift(got, want, allowed).abs().max().item()
        raise ExerciseFailed(f"{where}: the allowed entries differ from ℓ_∅ + g (ℓ_c − ℓ_∅) by up to {error:.3g} "
                             "(beyond a constant per row, which the softmax ignores). g = 1 must give ℓ_c, g = 0 ℓ_∅.")
