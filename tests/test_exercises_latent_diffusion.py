"""Chapter 08's exercise checks pass correct answers and explain typical wrong ones."""

import math

import pytest
import torch

from genbook.exercises import ExerciseFailed
from genbook.exercises.latent_diffusion import (
    check_cross_attention,
    check_guided_velocity,
    check_latent_scale_factor,
)


def guided_velocity(v_cond, v_uncond, scale):
    return v_uncond + scale * (v_cond - v_uncond)


def cross_attention(queries, context, w_q, w_k, w_v, padding_mask):
    q, k, v = queries @ w_q, context @ w_k, context @ w_v
    scores = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])
    if padding_mask is not None:
        scores = scores.masked_fill(padding_mask[:, None, :], -math.inf)
    return scores.softmax(-1) @ v


def test_correct_answers_pass():
    check_guided_velocity(guided_velocity)
    check_cross_attention(cross_attention)
    check_latent_scale_factor(lambda z: 1 / z.std())
    check_latent_scale_factor(lambda z: 1 / z.flatten().std(unbiased=False).item())


def test_stubs_say_not_solved():
    def stub(*args):
        raise NotImplementedError("write it")
    for check in (check_guided_velocity, check_cross_attention, check_latent_scale_factor):
        with pytest.raises(ExerciseFailed, match="not solved yet"):
            check(stub)


def test_typical_wrong_guidance():
    with pytest.raises(ExerciseFailed, match="swapped"):
        check_guided_velocity(lambda c, u, s: c + s * (u - c))
    with pytest.raises(ExerciseFailed, match="Ho & Salimans' form"):
        check_guided_velocity(lambda c, u, s: (1 + s) * c - s * u)
    with pytest.raises(ExerciseFailed, match="not applied"):
        check_guided_velocity(lambda c, u, s: c)


def test_typical_wrong_cross_attention():
    def no_scaling(queries, context, w_q, w_k, w_v, padding_mask):
        q, k, v = queries @ w_q, context @ w_k, context @ w_v
        scores = q @ k.transpose(1, 2)
        if padding_mask is not None:
            scores = scores.masked_fill(padding_mask[:, None, :], -math.inf)
        return scores.softmax(-1) @ v

    def ignores_mask(queries, context, w_q, w_k, w_v, padding_mask):
        return cross_attention(queries, context, w_q, w_k, w_v, None)

    def inverted_mask(queries, context, w_q, w_k, w_v, padding_mask):
        return cross_attention(queries, context, w_q, w_k, w_v, None if padding_mask is None else ~padding_mask)

    def wrong_axis(queries, context, w_q, w_k, w_v, padding_mask):
        q, k, v = queries @ w_q, context @ w_k, context @ w_v
        scores = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])
        if padding_mask is not None:
            scores = scores.masked_fill(padding_mask[:, None, :], -math.inf)
        return torch.nan_to_num(scores.softmax(1)) @ v

    for fn, message in ((no_scaling, "√d"), (ignores_mask, "ignored"), (inverted_mask, "inverted"),
                        (wrong_axis, "over the queries")):
        with pytest.raises(ExerciseFailed, match=message):
            check_cross_attention(fn)


def test_typical_wrong_scale_factors():
    with pytest.raises(ExerciseFailed, match="invert it"):
        check_latent_scale_factor(lambda z: z.std())
    with pytest.raises(ExerciseFailed, match="square root"):
        check_latent_scale_factor(lambda z: 1 / z.var())
    with pytest.raises(ExerciseFailed, match="subtract the mean"):
        check_latent_scale_factor(lambda z: 1 / z.square().mean().sqrt())
    with pytest.raises(ExerciseFailed, match="one number"):
        check_latent_scale_factor(lambda z: 1 / z.std((0, 2, 3)))
    with pytest.raises(ExerciseFailed, match="finite number"):
        check_latent_scale_factor(lambda z: "0.18")
