"""Checks for the exercises of chapter 08 (latent diffusion and guidance).

* Exercise 8.1: the guided prediction of classifier-free guidance (Ho & Salimans 2022, eq. 6),
  in the chapter's convention ε̃ = ε_∅ + s (ε_c − ε_∅) (s = 1: no guidance).
* Exercise 8.2: single-head cross-attention with a padding mask (Vaswani et al. 2017, eq. 1),
  checked against ``torch.nn.functional.scaled_dot_product_attention``.
* Exercise 8.3: the latent scale factor of latent diffusion (Rombach et al. 2022, sec. 4.3.2 and
  appendix G): 1 / (standard deviation of the latents), one number for all of them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .core import ExerciseFailed, call_student, expect_close

EXERCISE_GUIDANCE = "Exercise 8.1 (guided_velocity)"
EXERCISE_CROSS_ATTENTION = "Exercise 8.2 (cross_attention)"
EXERCISE_SCALE = "Exercise 8.3 (latent_scale_factor)"


def _close(a, b, atol=1e-6) -> bool:
    return isinstance(a, torch.Tensor) and a.shape == b.shape and torch.allclose(a.double(), b.double(), atol=atol)


def check_guided_velocity(fn) -> None:
    """Check ``fn(v_cond, v_uncond, scale) -> guided`` (all (B, C, H, W) but scale, a float).

    The reference is v_∅ + s (v_c − v_∅); tested at s = 0, 1, 3 and 7.5.
    """
    g = torch.Generator().manual_seed(8)
    v_cond = torch.randn(3, 4, 8, 8, generator=g, dtype=torch.float64)
    v_uncond = torch.randn(3, 4, 8, 8, generator=g, dtype=torch.float64)
    for scale in (3.0, 7.5, 1.0, 0.0):
        got = call_student(fn, v_cond, v_uncond, scale, exercise=EXERCISE_GUIDANCE)
        want = v_uncond + scale * (v_cond - v_uncond)
        if _close(got, v_cond + scale * (v_uncond - v_cond)) and scale != 1.0:
            raise ExerciseFailed("cond and uncond are swapped: guidance extrapolates from the unconditional "
                                 "prediction towards (and past) the conditional one, v_∅ + s (v_c − v_∅).")
        if _close(got, (1 + scale) * v_cond - scale * v_uncond) and scale != 0.0:
            raise ExerciseFailed("this is Ho & Salimans' form (1 + w) v_c − w v_∅ with w = s: in this chapter the "
                                 "scale s is Stable Diffusion's, with w = s − 1, so that s = 1 means no guidance.")
        if _close(got, v_cond) and scale not in (1.0,):
            raise ExerciseFailed(f"at s = {scale} the result equals the conditional prediction: the scale is "
                                 "not applied.")
        expect_close(got, want, what=f"the guided prediction at s = {scale}", atol=1e-9, rtol=1e-9,
                     hint="ṽ = v_∅ + s (v_c − v_∅).")


def reference_cross_attention(queries, context, w_q, w_k, w_v, padding_mask):
    """softmax(Q Kᵀ / √d + mask) V with Q = queries W_q, K = context W_k, V = context W_v, by torch's kernel."""
    q, k, v = queries @ w_q, context @ w_k, context @ w_v
    mask = None if padding_mask is None else ~padding_mask[:, None, :]  # True = may attend
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def check_cross_attention(fn) -> None:
    """Check ``fn(queries, context, w_q, w_k, w_v, padding_mask) -> (B, N, d)``.

    queries (B, N, C) (image positions), context (B, T, C_ctx) (text tokens), w_q (C, d), w_k and
    w_v (C_ctx, d), padding_mask (B, T) bool with True marking padding tokens that must get no
    attention. Compared with ``scaled_dot_product_attention`` in float64.
    """
    g = torch.Generator().manual_seed(82)
    b, n, t, c, c_ctx, d = 2, 6, 5, 8, 12, 4
    queries = torch.randn(b, n, c, generator=g, dtype=torch.float64)
    context = torch.randn(b, t, c_ctx, generator=g, dtype=torch.float64)
    w_q = torch.randn(c, d, generator=g, dtype=torch.float64)
    w_k = torch.randn(c_ctx, d, generator=g, dtype=torch.float64)
    w_v = torch.randn(c_ctx, d, generator=g, dtype=torch.float64)
    padding = torch.tensor([[False, False, False, True, True], [False, False, False, False, True]])
    for mask in (None, padding):
        got = call_student(fn, queries, context, w_q, w_k, w_v, mask, exercise=EXERCISE_CROSS_ATTENTION)
        want = reference_cross_attention(queries, context, w_q, w_k, w_v, mask)
        q, k, v = queries @ w_q, context @ w_k, context @ w_v
        if _close(got, ((q @ k.transpose(1, 2)).masked_fill(mask[:, None, :], -math.inf) if mask is not None
                        else q @ k.transpose(1, 2)).softmax(-1) @ v):
            raise ExerciseFailed("the scores are not divided by √d (d = the width of a query): "
                                 "softmax(Q Kᵀ / √d) V, Vaswani et al. eq. 1.")
        if mask is not None and _close(got, reference_cross_attention(queries, context, w_q, w_k, w_v, None)):
            raise ExerciseFailed("the padding mask is ignored: padding tokens (True in padding_mask) must get "
                                 "weight 0, e.g. scores.masked_fill(padding_mask[:, None, :], -inf).")
        if mask is not None and _close(got, reference_cross_attention(queries, context, w_q, w_k, w_v, ~mask)):
            raise ExerciseFailed("the mask is inverted: True in padding_mask marks padding (to hide), the "
                                 "convention of torch.nn.MultiheadAttention's key_padding_mask.")
        wrong_axis = q @ k.transpose(1, 2) / math.sqrt(d)
        if mask is not None:
            wrong_axis = wrong_axis.masked_fill(mask[:, None, :], -math.inf)
        if _close(got, torch.nan_to_num(wrong_axis.softmax(1)) @ v):
            raise ExerciseFailed("the softmax runs over the queries: each query's weights over the text tokens "
                                 "must sum to 1 (softmax over the last axis of Q Kᵀ).")
        expect_close(got, want, what="cross-attention" + (" with padding" if mask is not None else ""),
                     atol=1e-9, rtol=1e-9, hint="softmax(Q Kᵀ / √d + mask) V, queries from the image, keys and "
                                                 "values from the context.")


def check_latent_scale_factor(fn) -> None:
    """Check ``fn(latents) -> float``: 1 / std of all latent values (B, C, h, w), one number.

    The test latents have a mean of 0.5 and channels of different spread, so the root mean
    square, a per-channel std and the variance all give other answers.
    """
    g = torch.Generator().manual_seed(83)
    spread = torch.tensor([0.5, 2.0, 1.0, 4.0]).view(1, 4, 1, 1)
    latents = 0.5 + spread * torch.randn(400, 4, 8, 8, generator=g)
    got = call_student(fn, latents, exercise=EXERCISE_SCALE)
    if isinstance(got, torch.Tensor):
        if got.numel() != 1:
            raise ExerciseFailed(f"the scale factor is one number for all latents (Stable Diffusion multiplies every "
                                 f"channel by the same 0.18215), got a tensor of shape {tuple(got.shape)}.")
        got = got.item()
    if isinstance(got, bool) or not isinstance(got, (int, float)) or not math.isfinite(got):
        raise ExerciseFailed(f"latent_scale_factor should return a finite number, got {got!r}.")
    std = latents.std().item()
    candidates = {
        "the standard deviation itself: invert it (the factor makes the std 1)": std,
        "1 / variance: take the square root (1 / std)": 1 / latents.var().item(),
        "1 / root mean square: subtract the mean first (std, not RMS)": 1 / latents.square().mean().sqrt().item(),
    }
    for message, value in candidates.items():
        if math.isclose(got, value, rel_tol=1e-3):
            raise ExerciseFailed(f"got {got:.5g}, which is {message}.")
    if not math.isclose(got, 1 / std, rel_tol=1e-3):
        raise ExerciseFailed(f"got {got:.5g}, expected 1 / std = {1 / std:.5g}: scaled latents "
                             "z · factor should have standard deviation 1.")
