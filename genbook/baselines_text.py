"""Count baselines for text models: what a table of counts over the same unlabelled text achieves.

Chapter 02 compares its BERT with these, so that "pretraining learned something" is measured
against the best cheap use of the same text, not only against guessing the most frequent token.

- :class:`NeighbourCountModel` fills a gap with the token seen most often between the same
  left and right neighbours in the training text, backing off to the most frequent token
  (the count version of the masked-LM task, Devlin et al. 2019, sec. 3.1).
- :class:`BigramPMI` scores a passage by the summed pointwise mutual information of its
  adjacent tokens (Church & Hanks, 1990), log p(b | a) / p(b) with an interpolated bigram,
  so that text in its natural order scores higher than the same kind of text shuffled.
- :func:`fit_threshold` picks the cut on a score that best separates two labelled classes.

All inputs are 1D or 2D int64 tensors of token ids in ``[0, vocab_size)``.
"""

from __future__ import annotations

import torch

from .ngram import sorted_lookup


def _check_stream(stream: torch.Tensor, vocab_size: int, min_length: int) -> torch.Tensor:
    if not isinstance(stream, torch.Tensor) or stream.dim() != 1 or stream.dtype != torch.long:
        shape = tuple(getattr(stream, "shape", ()))
        raise TypeError(f"stream must be a 1D int64 tensor of token ids, got {type(stream).__name__} "
                        f"{getattr(stream, 'dtype', '')} {shape}.")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 2:
        raise ValueError(f"vocab_size must be an int >= 2, got {vocab_size!r}.")
    if len(stream) < min_length:
        raise ValueError(f"stream has {len(stream)} tokens; at least {min_length} are needed.")
    if stream.min() < 0 or stream.max() >= vocab_size:
        raise ValueError(f"token ids must lie in [0, {vocab_size}), got [{stream.min()}, {stream.max()}].")
    return stream.cpu()


class NeighbourCountModel:
    """argmax_m count(l, m, r) over the training text, else the most frequent token.

    stream: (N,) token ids of the training text. :meth:`predict` takes the left and right
    neighbours of each gap, (M,) each, and returns (M,) predicted ids; ``last_backoff_rate``
    is the fraction of gaps whose (left, right) pair never occurs in the training text.
    """

    def __init__(self, stream: torch.Tensor, vocab_size: int):
        stream = _check_stream(stream, vocab_size, 3)
        self.vocab_size = vocab_size
        left, middle, right = stream[:-2], stream[1:-1], stream[2:]
        pair = left * vocab_size + right  # (N-2,) one key per (l, r)
        triples, counts = torch.unique(pair * vocab_size + middle, return_counts=True)  # sorted by pair, then middle
        pairs_of, middles_of = triples // vocab_size, triples % vocab_size
        # sort by (pair, count descending): the first row of each pair is its most frequent middle token
        order = torch.argsort(pairs_of * (counts.max() + 1) + (counts.max() - counts), stable=True)
        pairs_of, middles_of = pairs_of[order], middles_of[order]
        first = torch.ones_like(pairs_of, dtype=torch.bool)
        first[1:] = pairs_of[1:] != pairs_of[:-1]
        self.pairs, self.best_middle = pairs_of[first], middles_of[first]  # (P,) sorted keys, (P,) answers
        self.most_frequent = int(torch.bincount(stream, minlength=vocab_size).argmax())
        self.last_backoff_rate = float("nan")

    def predict(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        if left.shape != right.shape or left.dim() != 1:
            raise ValueError(f"left and right must be 1D of one shape, got {tuple(left.shape)} "
                             f"and {tuple(right.shape)}.")
        key = left.cpu().long() * self.vocab_size + right.cpu().long()
        index, seen = sorted_lookup(self.pairs, key)
        self.last_backoff_rate = 1.0 - seen.float().mean().item() if len(key) else float("nan")
        return torch.where(seen, self.best_middle[index], torch.full_like(key, self.most_frequent))


class BigramPMI:
    """Summed log p(b | a) / p(b) over adjacent pairs (a, b), the bigram interpolated with the unigram.

    p(b) = (count(b) + 1) / (N + V);  p(b | a) = lam * count(a, b) / count(a) + (1 - lam) * p(b).
    :meth:`score` takes (B, T) ids and returns (B,) scores; higher means more like the training text's order.
    """

    def __init__(self, stream: torch.Tensor, vocab_size: int, lam: float = 0.9):
        stream = _check_stream(stream, vocab_size, 2)
        if not 0.0 <= lam < 1.0:
            raise ValueError(f"lam must be in [0, 1), got {lam!r}.")
        self.vocab_size, self.lam = vocab_size, lam
        unigram = torch.bincount(stream, minlength=vocab_size).double()
        self.log_unigram = ((unigram + 1) / (unigram.sum() + vocab_size)).log()  # (V,)
        self.left_counts = torch.bincount(stream[:-1], minlength=vocab_size).double()  # count(a) as a left token
        keys, counts = torch.unique(stream[:-1] * vocab_size + stream[1:], return_counts=True)
        self.keys, self.counts = keys, counts.double()  # sorted pair keys and their counts

    def pair_log_ratio(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """log p(b | a) - log p(b), elementwise over ids of one shape."""
        key = a.long() * self.vocab_size + b.long()
        index, seen = sorted_lookup(self.keys, key)
        count_ab = torch.where(seen, self.counts[index], torch.zeros((), dtype=torch.double))
        p_b = self.log_unigram[b].exp()
        p_b_given_a = self.lam * count_ab / self.left_counts[a].clamp_min(1) + (1 - self.lam) * p_b
        return p_b_given_a.log() - p_b.log()

    def score(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.dim() != 2 or ids.shape[1] < 2:
            raise ValueError(f"ids must be (B, T) with T >= 2, got {tuple(ids.shape)}.")
        ids = ids.cpu()
        return self.pair_log_ratio(ids[:, :-1], ids[:, 1:]).sum(1).float()


def fit_threshold(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """The cut c maximising the accuracy of "label 1 iff score > c" on (scores, labels), both (N,).

    Candidates are midpoints between consecutive sorted scores (and the two ends); ties go to the lower cut.
    """
    if scores.shape != labels.shape or scores.dim() != 1 or len(scores) < 2:
        raise ValueError(f"scores and labels must be 1D of one shape with >= 2 entries, "
                         f"got {tuple(scores.shape)} and {tuple(labels.shape)}.")
    if not set(labels.unique().tolist()) <= {0, 1}:
        raise ValueError("labels must be 0 or 1.")
    s = scores.double().sort().values
    cuts = torch.cat([s[:1] - 1, (s[1:] + s[:-1]) / 2, s[-1:] + 1])  # (N+1,)
    accuracy = ((scores.double()[None, :] > cuts[:, None]) == labels.bool()[None, :]).double().mean(1)
    return cuts[int(accuracy.argmax())].item()
