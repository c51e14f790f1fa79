"""Classifier-free guidance (Ho & Salimans 2022, "Classifier-Free Diffusion Guidance").

One network learns both the conditional and the unconditional model: during training
the condition c (a class, a caption) is replaced by a "null" condition ∅ for a fraction
p_uncond of the examples (Ho & Salimans use 0.1 to 0.2; :func:`drop_condition`). At
sampling time the two predictions are extrapolated away from the unconditional one:

    ε̃(x_t, c) = ε(x_t, ∅) + s · (ε(x_t, c) − ε(x_t, ∅))            (:func:`guided_prediction`)

with guidance scale s: s = 1 is the plain conditional model, s = 0 the unconditional
one, s > 1 pushes samples towards what distinguishes c (higher adherence, lower
diversity). Ho & Salimans write it with w = s − 1 as ε̃ = (1 + w) ε(x_t, c) − w ε(x_t, ∅)
(their eq. 6); Imagen, GLIDE and Stable Diffusion use s. The same linear combination
applies to any prediction that is affine in the score: ε, the velocity of flow matching,
x̂_0 or v. It is an implicit classifier: ε(x_t, c) − ε(x_t, ∅) ∝ −∇ log p(c | x_t).

:func:`guided_model` wraps a conditional model into the function ``f(x, t)`` that a
sampler calls, evaluating the conditional and unconditional halves in one batch
(2 network evaluations per step and image, in one call).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..validation import check_tensor


def _check_scale(scale) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise ValueError(f"scale must be a finite number (1 = no guidance, 0 = unconditional), got {scale!r}.")
    return float(scale)


def guided_prediction(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """ε̃ = ε_∅ + s (ε_c − ε_∅) (Ho & Salimans 2022, eq. 6 with w = s − 1).

    cond, uncond: the model's predictions (B, ...) with and without the condition, same shape.
    """
    scale = _check_scale(scale)
    check_tensor(cond, "cond", dtype="floating", min_batch=1)
    check_tensor(uncond, "uncond", shape=tuple(cond.shape), dtype="floating")
    return uncond + scale * (cond - uncond)


def drop_condition(cond: torch.Tensor, null: torch.Tensor, p: float, *,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace each example's condition by the null condition with probability ``p``.

    cond: (B, ...) conditions (class ids, token ids, embeddings); null: the null condition,
    of shape ``cond.shape[1:]`` (one example) or ``cond.shape`` (one per example), same dtype.
    Returns ``(cond with the dropped rows replaced, dropped)`` with dropped (B,) bool.
    The draw is one ``torch.rand(B)`` on ``generator`` (on its device if given).
    """
    check_tensor(cond, "cond", min_batch=1)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1] (the share of examples trained unconditionally), "
                         f"got {p!r}.")
    if not isinstance(null, torch.Tensor):
        raise TypeError(f"null must be a torch.Tensor (the null condition), got {type(null).__name__}.")
    if tuple(null.shape) not in (tuple(cond.shape[1:]), tuple(cond.shape)):
        raise ValueError(f"null must have the shape of one condition {tuple(cond.shape[1:])} or of the batch "
                         f"{tuple(cond.shape)}, got {tuple(null.shape)}.")
    if null.dtype != cond.dtype:
        raise TypeError(f"null has dtype {null.dtype} but cond has {cond.dtype}; they must match.")
    b = cond.shape[0]
    where = generator.device if generator is not None else cond.device
    dropped = (torch.rand(b, generator=generator, device=where) < p).to(cond.device)
    mask = dropped.view(b, *([1] * (cond.dim() - 1)))
    return torch.where(mask, null.to(cond.device).expand_as(cond), cond), dropped


def guided_model(model: Callable[..., torch.Tensor], cond: torch.Tensor, null: torch.Tensor, scale: float,
                 **fixed) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The guided prediction as a function ``f(x, t)`` for a sampler.

    model(x, t, c, **fixed) -> prediction of x's shape, with the condition as third argument
        (e.g. ``lambda x, t, c: unet(x, t, context=text_encoder(c))``);
    cond: (B, ...) the conditions of the B samples; null: the null condition, shape
        ``cond.shape[1:]`` or ``cond.shape``.
    scale s: 1 calls the model once on ``cond`` (no guidance); 0 once on ``null``; any other
        value once on the batch [x; x] with [cond; null] and returns ε_∅ + s (ε_c − ε_∅).
    """
    scale = _check_scale(scale)
    check_tensor(cond, "cond", min_batch=1)
    if not isinstance(null, torch.Tensor) or tuple(null.shape) not in (tuple(cond.shape[1:]), tuple(cond.shape)):
        got = tuple(null.shape) if isinstance(null, torch.Tensor) else type(null).__name__
        raise ValueError(f"null must be a tensor of shape {tuple(cond.shape[1:])} or {tuple(cond.shape)}, got {got}.")
    b = cond.shape[0]
    null = null.to(cond.device).expand_as(cond)
    both = torch.cat([cond, null])  # (2B, ...)

    def f(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != b:
            raise ValueError(f"x has {x.shape[0]} samples but {b} conditions were given.")
        if scale == 1.0:
            return model(x, t, cond, **fixed)
        if scale == 0.0:
            return model(x, t, null, **fixed)
        out = model(torch.cat([x, x]), torch.cat([t, t]), both, **fixed)  # one call on the doubled batch
        cond_out, uncond_out = out[:b], out[b:]
        return uncond_out + scale * (cond_out - uncond_out)  # ε̃ = ε_∅ + s (ε_c − ε_∅)

    return f


def guidance_nfe(scale: float) -> int:
    """Network evaluations per image and sampler step: 1 at s = 1 or s = 0, else 2."""
    return 1 if _check_scale(scale) in (0.0, 1.0) else 2
