"""Checks for the exercises of chapter 09 (DALL·E, CLIP and reranking).

* Exercise 9.1: CLIP's symmetric contrastive loss (Radford et al. 2021, Figure 3), with
  repeated captions in a batch treated as positives; checked against a loop over the
  batch written out here, the independent reference.
* Exercise 9.2: the modality mask of DALL·E's logits (Ramesh et al. 2021, sec. 2.2): which
  vocabulary each position may predict; checked against a position-by-position rule.
"""

from __future__ import annotations

import math

import torch

from .core import ExerciseFailed, call_student, expect_close

EXERCISE_CONTRASTIVE = "Exercise 9.1 (symmetric_contrastive_loss)"
EXERCISE_MASK = "Exercise 9.2 (modality_mask)"


def contrastive_loss_by_loops(logits: torch.Tensor, groups: torch.Tensor) -> float:
    """The symmetric contrastive loss, one image and one caption at a time (float64 Python sums).

    Image i's positives are the captions j with groups[j] == groups[i]; its term is
    −log( Σ_{j ∈ P_i} exp(l_ij) / Σ_k exp(l_ik) ); caption j's term is the same over the
    column j. The loss is (mean over images + mean over captions) / 2.
    """
    rows = logits.double().tolist()
    g = groups.tolist()
    b = len(rows)

    def term(scores: list[float], positives: list[int]) -> float:
        top = max(scores)
        everything = sum(math.exp(s - top) for s in scores)
        return -math.log(sum(math.exp(scores[j] - top) for j in positives) / everything)

    image_terms = [term(rows[i], [j for j in range(b) if g[j] == g[i]]) for i in range(b)]
    text_terms = [term([rows[i][j] for i in range(b)], [i for i in range(b) if g[i] == g[j]]) for j in range(b)]
    return (sum(image_terms) / b + sum(text_terms) / b) / 2


def _one_direction(logits: torch.Tensor, groups: torch.Tensor, dim: int) -> float:
    """-log of the positives' probability along one direction only (a typical wrong answer)."""
    positive = groups[:, None] == groups[None, :]
    on_positives = logits.double().masked_fill(~positive, float("-inf"))
    return float((logits.double().logsumexp(dim) - on_positives.logsumexp(dim)).mean())


def check_symmetric_contrastive_loss(fn) -> None:
    """Check ``fn(logits, groups) -> scalar tensor``: (1/2)(mean_i −log Σ_{j∈P_i} softmax(logits[i])_j
    + the same over the columns), P_i the captions of image i's group.

    logits: (B, B) float, logits[i, j] the scaled similarity of image i and caption j;
    groups: (B,) int64, equal for equal captions. Tested with all captions distinct, with
    repeated captions, and with a non-symmetric logits matrix, in float64.
    """
    g = torch.Generator().manual_seed(9)
    problems = [
        ("all captions distinct", torch.randn(6, 6, generator=g, dtype=torch.float64) * 3, torch.arange(6)),
        ("captions 0, 2, 5 equal and 1, 4 equal", torch.randn(6, 6, generator=g, dtype=torch.float64) * 3,
         torch.tensor([0, 1, 0, 2, 1, 0])),
        ("a batch of 9 with three repeated captions", torch.randn(9, 9, generator=g, dtype=torch.float64) * 5,
         torch.tensor([3, 1, 3, 3, 7, 1, 2, 8, 7])),
    ]
    for name, logits, groups in problems:
        got = call_student(fn, logits.clone(), groups.clone(), exercise=EXERCISE_CONTRASTIVE)
        if not isinstance(got, torch.Tensor) or got.numel() != 1:
            raise ExerciseFailed(f"{EXERCISE_CONTRASTIVE} should return a scalar tensor, got {type(got).__name__}"
                                 + (f" of shape {tuple(got.shape)}" if isinstance(got, torch.Tensor) else "") + ".")
        value, want = float(got), contrastive_loss_by_loops(logits, groups)
        if abs(value - want) <= 1e-6 * max(1.0, abs(want)):
            continue
        distinct = torch.unique(groups).numel() == len(groups)
        one_hot = 0.5 * (float(torch.nn.functional.cross_entropy(logits, torch.arange(len(groups))))
                         + float(torch.nn.functional.cross_entropy(logits.T, torch.arange(len(groups)))))
        hints = [
            (_one_direction(logits, groups, 1), "it equals the image-to-text term alone: CLIP's loss is symmetric, "
             "(image-to-text + text-to-image) / 2, the second a softmax over each column (dim=0)."),
            (_one_direction(logits, groups, 0), "it equals the text-to-image term alone: add the image-to-text term "
             "(softmax over each row) and halve the sum."),
            (2 * want, "it is twice the reference: average the two directions, do not add them."),
            (one_hot, "it treats only the diagonal as positive: a caption repeated in the batch is the same text, "
             "so every caption of image i's group is right for it: use −log of the probability summed over them."),
        ]
        for wrong, message in hints:
            if (not distinct or "diagonal" not in message) and abs(value - wrong) <= 1e-6 * max(1.0, abs(wrong)):
                raise ExerciseFailed(f"{EXERCISE_CONTRASTIVE} ({name}): {message}")
        raise ExerciseFailed(f"{EXERCISE_CONTRASTIVE} ({name}): got {value:.6g}, expected {want:.6g}. "
                             "Per row i: −log of the sum over positives j of softmax(logits[i])[j] (logsumexp helps); "
                             "the same per column; average each over the batch, then the two directions.")


def modality_mask_by_positions(text_len: int, n_image_tokens: int, text_vocab: int, image_vocab: int) -> torch.Tensor:
    """(N − 1, V) bool, position by position: the logits at p predict token p + 1."""
    n, v = text_len + n_image_tokens, text_vocab + image_vocab
    mask = torch.zeros(n - 1, v, dtype=torch.bool)
    for p in range(n - 1):
        if p + 1 < text_len:
            mask[p, :text_vocab] = True  # the next token is text
        else:
            mask[p, text_vocab:] = True  # the next token is an image token
    return mask


def check_modality_mask(fn) -> None:
    """Check ``fn(text_len, n_image_tokens, text_vocab, image_vocab) -> (N − 1, V) bool``, True = allowed."""
    for args in [(3, 4, 5, 6), (8, 64, 345, 1000), (1, 2, 2, 3)]:
        got = call_student(fn, *args, exercise=EXERCISE_MASK)
        want = modality_mask_by_positions(*args)
        n = args[0] + args[1]
        if isinstance(got, torch.Tensor) and got.shape == (n, want.shape[1]):
            raise ExerciseFailed(f"{EXERCISE_MASK}: the mask has N = {n} rows, one per token; the model reads the "
                                 f"first N − 1 tokens and each of its N − 1 outputs predicts the next, so return "
                                 f"{n - 1} rows.")
        if not isinstance(got, torch.Tensor) or got.dtype != torch.bool:
            raise ExerciseFailed(f"{EXERCISE_MASK}: return a bool tensor (True = allowed), got "
                                 f"{got.dtype if isinstance(got, torch.Tensor) else type(got).__name__}.")
        if got.shape != want.shape:
            raise ExerciseFailed(f"{EXERCISE_MASK}: expected shape {tuple(want.shape)} = (N − 1, V) for text_len, "
                                 f"n_image_tokens, text_vocab, image_vocab = {args}, got {tuple(got.shape)}.")
        if torch.equal(got, ~want):
            raise ExerciseFailed(f"{EXERCISE_MASK}: True and False are swapped: True marks the allowed entries.")
        shifted = torch.zeros_like(want)  # the modality of token p instead of token p + 1
        t_len, t_vocab = args[0], args[2]
        shifted[:t_len, :t_vocab] = True
        shifted[t_len:, t_vocab:] = True
        if torch.equal(got, shifted) and not torch.equal(shifted, want):
            raise ExerciseFailed(f"{EXERCISE_MASK}: off by one. Row p holds the logits that predict token p + 1, "
                                 f"so row text_len − 1 (the last text token's output) must allow the image vocabulary.")
        expect_close(got.double(), want.double(), what=f"the mask for {args}", atol=0, rtol=0,
                     hint="Row p: the text vocabulary if p + 1 < text_len, else the image vocabulary.")
