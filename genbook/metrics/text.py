"""Held-out cross-entropy of a language model, and the n-gram baselines it must beat.

Cross-entropy per token in nats, H = −(1/T) Σₜ log p(xₜ | x<t); perplexity is
exp(H) and bits per token are H / ln 2 (Shannon 1948; Jurafsky & Martin,
"Speech and Language Processing", ch. 3). The baselines are count models with
add-k (Lidstone) smoothing, p(w) = (c(w) + k) / (N + kV), estimated on the
training ids and scored on the validation ids.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from genbook.ngram import sorted_lookup
from genbook.validation import check_tensor


def cross_entropy_per_token(logits: torch.Tensor, targets: torch.Tensor, *, ignore_index: int | None = None) -> float:
    """Mean −log softmax(logits)[target] in nats over all (non-ignored) tokens.

    logits: (B, T, V) or (N, V) floats; targets: (B, T) or (N,) int64 in 0..V−1
    (or ``ignore_index``, e.g. padding, which is left out of the mean).
    """
    check_tensor(logits, "logits", dtype="floating")
    if logits.dim() not in (2, 3):
        raise ValueError(f"logits must have shape (B, T, V) or (N, V), got {tuple(logits.shape)}.")
    check_tensor(targets, "targets", shape=tuple(logits.shape[:-1]), dtype=torch.int64)
    vocab = logits.shape[-1]
    keep = targets != ignore_index if ignore_index is not None else torch.ones_like(targets, dtype=torch.bool)
    if not keep.any():
        raise ValueError("targets holds no token to score (all are ignore_index).")
    valid = targets[keep]
    if valid.min() < 0 or valid.max() >= vocab:
        raise ValueError(
            f"targets must lie in 0..{vocab - 1} (the vocabulary of the logits), "
            f"got values in {valid.min().item()}..{valid.max().item()}."
        )
    flat_logits = logits.detach().reshape(-1, vocab).float()  # (N, V)
    flat_targets = targets.reshape(-1)  # (N,)
    ignore = -100 if ignore_index is None else ignore_index
    with torch.no_grad():  # H = −(1/N) Σₙ log softmax(zₙ)[xₙ]
        return F.cross_entropy(flat_logits, flat_targets, ignore_index=ignore).item()


def _check_ids(ids, name: str, vocab_size: int, min_length: int) -> torch.Tensor:
    check_tensor(ids, name, shape=("T",), dtype=torch.int64, value_range=(0, vocab_size - 1), min_batch=min_length)
    return ids.detach().cpu()


def _check_k(k: float) -> None:
    if not k > 0:
        raise ValueError(f"k (add-k smoothing) must be > 0, or unseen tokens get probability 0; got {k!r}.")


def unigram_baseline(train_ids: torch.Tensor, val_ids: torch.Tensor, vocab_size: int, *, k: float = 1.0) -> float:
    """Cross-entropy (nats/token) on ``val_ids`` (T,) of add-k unigram counts of ``train_ids`` (N,).

    p(w) = (c(w) + k) / (N + kV). ``log(vocab_size)`` is the uniform model's loss.
    """
    _check_k(k)
    train = _check_ids(train_ids, "train_ids", vocab_size, 1)
    val = _check_ids(val_ids, "val_ids", vocab_size, 1)
    counts = torch.bincount(train, minlength=vocab_size).double()
    log_p = torch.log(counts + k) - math.log(train.numel() + k * vocab_size)
    return -log_p[val].mean().item()


def bigram_baseline(train_ids: torch.Tensor, val_ids: torch.Tensor, vocab_size: int, *, k: float = 0.1) -> float:
    """Cross-entropy (nats/token) on ``val_ids[1:]`` given the previous token, from add-k bigram counts.

    p(w | v) = (c(v, w) + k) / (c(v) + kV), where c(v) counts v as a predecessor
    in ``train_ids``. Scored on the T − 1 tokens that have a predecessor, as a
    language model scores every token after the first. Counts are kept sparse,
    so large vocabularies are fine. Add-one (k = 1) spreads far too much mass
    over the V² unseen pairs; the default k = 0.1 is a common, better choice.
    """
    _check_k(k)
    train = _check_ids(train_ids, "train_ids", vocab_size, 2)
    val = _check_ids(val_ids, "val_ids", vocab_size, 2)
    pairs, pair_counts = torch.unique(train[:-1] * vocab_size + train[1:], return_counts=True)  # sorted keys
    context_counts = torch.bincount(train[:-1], minlength=vocab_size).double()
    queries = val[:-1] * vocab_size + val[1:]
    slot, seen = sorted_lookup(pairs, queries)
    counts = torch.where(seen, pair_counts[slot], 0).double()
    log_p = torch.log(counts + k) - torch.log(context_counts[val[:-1]] + k * vocab_size)
    return -log_p.mean().item()


def bits_per_token(nats: float) -> float:
    """Convert a cross-entropy from nats to bits."""
    return nats / math.log(2)


def perplexity(nats: float) -> float:
    """exp(cross-entropy): the effective number of equally likely next tokens."""
    return math.exp(nats)
