"""Chapter 09's exercise checks pass correct answers and explain typical wrong ones."""

import pytest
import torch
import torch.nn.functional as F

from genbook.clip import contrastive_loss
from genbook.exercises import ExerciseFailed
from genbook.exercises.dalle import check_modality_mask, check_symmetric_contrastive_loss
from genbook.exercises.dalle_guidance import check_guided_logits, guided_logits_reference
from genbook.nn.dalle import modality_logits_mask


def loss_with(logits, groups, *, image_to_text=True, text_to_image=True, scale=0.5, one_hot=False):
    positive = torch.eye(len(groups), dtype=torch.bool) if one_hot else groups[:, None] == groups[None, :]
    on_positives = logits.masked_fill(~positive, float("-inf"))
    total = 0.0
    if image_to_text:
        total = total + (logits.logsumexp(1) - on_positives.logsumexp(1)).mean()
    if text_to_image:
        total = total + (logits.logsumexp(0) - on_positives.logsumexp(0)).mean()
    return scale * total


def soft_target_loss(logits, groups):  # a plausible variant: cross-entropy against targets spread over positives
    same = (groups[:, None] == groups[None, :]).to(logits.dtype)
    targets = same / same.sum(1, keepdim=True)
    return -0.5 * ((targets * logits.log_softmax(1)).sum(1).mean() + (targets.T * logits.log_softmax(0)).sum(0).mean())


def test_correct_answers_pass():
    check_symmetric_contrastive_loss(contrastive_loss)
    check_symmetric_contrastive_loss(loss_with)
    check_modality_mask(modality_logits_mask)


def test_stubs_say_not_solved():
    def stub(*args):
        raise NotImplementedError("write it")
    for check in (check_symmetric_contrastive_loss, check_modality_mask):
        with pytest.raises(ExerciseFailed, match="not solved yet"):
            check(stub)


@pytest.mark.parametrize("wrong, message", [
    (lambda s, g: loss_with(s, g, text_to_image=False, scale=1.0), "image-to-text term alone"),
    (lambda s, g: loss_with(s, g, image_to_text=False, scale=1.0), "text-to-image term alone"),
    (lambda s, g: loss_with(s, g, scale=1.0), "twice the reference"),
    (lambda s, g: loss_with(s, g, one_hot=True), "only the diagonal as positive"),
    (lambda s, g: 0.5 * (F.cross_entropy(s, torch.arange(len(g))) + F.cross_entropy(s, torch.arange(len(g)))),
     "image-to-text term alone"),  # both terms over rows: the softmax of the columns is missing
    (lambda s, g: loss_with(s, g).reshape(1), None),  # a one-element tensor is accepted
    (lambda s, g: (s.log_softmax(1) - s).sum(), "expected"),
    (lambda s, g: [0.0], "scalar tensor"),
    (soft_target_loss, "expected"),
])
def test_typical_wrong_losses_are_explained(wrong, message):
    if message is None:
        check_symmetric_contrastive_loss(wrong)
        return
    with pytest.raises(ExerciseFailed, match=message):
        check_symmetric_contrastive_loss(wrong)


def test_typical_wrong_masks_are_explained():
    def off_by_one(text_len, n_image, text_vocab, image_vocab):
        is_text = torch.arange(text_len + n_image - 1) < text_len  # the modality of token p, not p + 1
        return is_text[:, None] == (torch.arange(text_vocab + image_vocab) < text_vocab)[None, :]

    def all_rows(text_len, n_image, text_vocab, image_vocab):
        is_text = torch.arange(1, text_len + n_image + 1) < text_len
        return is_text[:, None] == (torch.arange(text_vocab + image_vocab) < text_vocab)[None, :]

    with pytest.raises(ExerciseFailed, match="off by one"):
        check_modality_mask(off_by_one)
    with pytest.raises(ExerciseFailed, match="has N = 7 rows"):
        check_modality_mask(all_rows)
    with pytest.raises(ExerciseFailed, match="swapped"):
        check_modality_mask(lambda *a: ~modality_logits_mask(*a))
    with pytest.raises(ExerciseFailed, match="bool tensor"):
        check_modality_mask(lambda *a: modality_logits_mask(*a).float())


def _guided(cond, uncond, g):  # a correct answer written differently: guide the finite entries only
    out = torch.full_like(cond, float("-inf"))
    ok = torch.isfinite(cond)
    out[ok] = (1 - g) * uncond[ok] + g * cond[ok]
    return out


def _masked(fn):
    """Turn an expression of (cond, uncond, g) into an answer that keeps -inf at the masked entries."""
    def answer(cond, uncond, g):
        ok = torch.isfinite(cond)
        return fn(cond.masked_fill(~ok, 0.0), uncond.masked_fill(~ok, 0.0), g).masked_fill(~ok, float("-inf"))
    return answer


def test_guided_logits_correct_answers_pass():
    check_guided_logits(guided_logits_reference)
    check_guided_logits(_guided)
    check_guided_logits(lambda c, u, g: _guided(c, u, g).log_softmax(-1))  # a constant per row is fine
    check_guided_logits(_masked(lambda c, u, g: u + g * (c - u)))


def test_guided_logits_stub_says_not_solved():
    def stub(*args):
        raise NotImplementedError("write it")
    with pytest.raises(ExerciseFailed, match="not solved yet"):
        check_guided_logits(stub)


@pytest.mark.parametrize("wrong, message", [
    (lambda c, u, g: u + g * (c - u), "NaN"),  # -inf - (-inf) at the masked entries
    (_masked(lambda c, u, g: c + g * u), "adds the two"),
    (_masked(lambda c, u, g: c + g * (u - c)), "swapped"),
    (_masked(lambda c, u, g: (1 + g) * c - g * u), "g = 1 must give"),
    (_masked(lambda c, u, g: c), "not applied"),
    (_masked(lambda c, u, g: g * (c - u)), "unconditional logits are missing"),
    (lambda c, u, g: _guided(c, u, g).softmax(-1), "must stay −inf"),  # probabilities: 0, not -inf, when masked
    (lambda c, u, g: torch.nan_to_num(_guided(c, u, g), neginf=-1e9), "must stay −inf"),
    (lambda c, u, g: _guided(c, u, g)[:, 4:], "shape"),
    (lambda c, u, g: _guided(c, u, g) * 2, "differ"),
])
def test_guided_logits_typical_wrong_answers_are_explained(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_guided_logits(wrong)


def test_guided_logits_probabilities_are_named():
    def probabilities(c, u, g):
        p = _guided(c, u, g).softmax(-1)
        return p.masked_fill(~torch.isfinite(c), float("-inf"))
    with pytest.raises(ExerciseFailed, match="probabilities"):
        check_guided_logits(probabilities)

