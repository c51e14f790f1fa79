"""An interpolated Kneser–Ney n-gram model of token sequences: the strong count baseline for a small LM.

For order n, history h (the previous n−1 tokens) and next token w (Kneser & Ney 1995;
Chen & Goodman 1999, eq. 13, with one discount per order)::

    p_n(w | h) = max(c_n(h w) − δ_n, 0) / c_n(h ·)  +  δ_n · N1+(h ·) / c_n(h ·) · p_{n−1}(w | h')

where h' drops the oldest token of h, c_n(h ·) = Σ_w c_n(h w) and N1+(h ·) is the number
of distinct tokens seen after h. A history never seen in training backs off entirely:
p_n(w | h) = p_{n−1}(w | h'). The highest order counts occurrences; every lower order counts
*continuations* (in how many distinct left contexts the n-gram occurs), which is Kneser–Ney's
idea. The lowest order interpolates with the uniform distribution, so no token has
probability 0. Discounts follow Ney, Essen & Kneser (1994): δ_n = n₁ / (n₁ + 2 n₂), with
n₁, n₂ the numbers of n-grams counted exactly once and twice.

Counts are kept as sorted int64 keys (the n-gram in base V, the newest token least
significant), so V^order must stay below 2^62. Shapes: T sequence length, B batch, V vocabulary.
"""

from __future__ import annotations

import torch

from .validation import check_tensor


class _Order:
    """Counts of one order n: sorted n-gram keys with their counts, and per-history totals."""

    def __init__(self, keys: torch.Tensor, counts: torch.Tensor, vocab_size: int):
        self.keys, self.counts = keys, counts.double()  # (M,), sorted keys
        n1, n2 = int((counts == 1).sum()), int((counts == 2).sum())
        self.discount = n1 / (n1 + 2 * n2) if n1 + n2 > 0 else 0.5  # Ney et al. (1994)
        histories = keys // vocab_size
        self.histories, inverse = torch.unique_consecutive(histories, return_inverse=True)  # sorted
        self.totals = torch.zeros(len(self.histories), dtype=torch.float64).index_add_(0, inverse, self.counts)
        self.distinct = torch.bincount(inverse, minlength=len(self.histories)).double()  # N1+(h ·)


def sorted_lookup(sorted_keys: torch.Tensor, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Find queries in a sorted 1D key table (the count tables here, in :mod:`genbook.baselines_text` and in
    :mod:`genbook.metrics.text`).

    sorted_keys: (M,) ascending; queries: any shape. Returns (slot, found), both shaped like queries:
    ``found`` says whether the query is among the keys, and then ``sorted_keys[slot] == query``; where it
    is not, ``slot`` is still a valid index into a non-empty table (so ``values[slot]`` can be read and
    masked with ``found``). An empty table finds nothing.
    """
    if sorted_keys.dim() != 1:
        raise ValueError(f"sorted_keys must be 1D (M,), got shape {tuple(sorted_keys.shape)}.")
    if len(sorted_keys) == 0:
        return torch.zeros_like(queries, dtype=torch.long), torch.zeros_like(queries, dtype=torch.bool)
    slot = torch.searchsorted(sorted_keys, queries).clamp(max=len(sorted_keys) - 1)
    return slot, sorted_keys[slot] == queries


class KneserNey:
    """Interpolated Kneser–Ney n-gram model fitted on ``train_ids`` (T,) int64 in 0..vocab_size−1.

    ``nll(ids)``: mean −log p(ids[t] | ids[t−n+1:t]) over t ≥ 1, in nats per token.
    ``next_probs(history)``: (B, V) next-token distributions given (B, L) histories.
    ``sample(prompt, n_new, generator)``: ancestral sampling, (B, L) -> (B, L + n_new).
    """

    def __init__(self, train_ids: torch.Tensor, vocab_size: int, order: int = 5):
        if isinstance(order, bool) or not isinstance(order, int) or order < 1:
            raise ValueError(f"order must be an int >= 1, got {order!r}.")
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 2:
            raise ValueError(f"vocab_size must be an int >= 2, got {vocab_size!r}.")
        if vocab_size ** order >= 2**62:
            raise ValueError(f"vocab_size**order = {vocab_size}**{order} does not fit the int64 keys; "
                             "use a lower order or a smaller vocabulary.")
        ids = check_tensor(train_ids, "train_ids", shape=("T",), dtype=torch.int64,
                           value_range=(0, vocab_size - 1), min_batch=order + 1).detach().cpu()
        self.vocab_size, self.order = vocab_size, order
        self.orders: list[_Order] = [None] * order  # self.orders[n - 1] holds order n
        keys = self._keys(ids, order)  # the highest order counts occurrences
        unique, counts = torch.unique(keys, return_counts=True)
        self.orders[order - 1] = _Order(unique, counts, vocab_size)
        for n in range(order - 1, 0, -1):  # lower orders count distinct left extensions
            suffixes = self.orders[n].keys % vocab_size**n  # drop the oldest token of each (n+1)-gram
            unique, counts = torch.unique(suffixes, return_counts=True)
            self.orders[n - 1] = _Order(unique, counts, vocab_size)

    def _keys(self, ids: torch.Tensor, n: int) -> torch.Tensor:
        """Keys of the n-grams ending at positions n−1, ..., T−1: (T − n + 1,)."""
        keys = torch.zeros(len(ids) - n + 1, dtype=torch.int64)
        for i in range(n):  # ids[t-n+1+i] has weight V^(n-1-i): the newest token is least significant
            keys = keys * self.vocab_size + ids[i:len(ids) - n + 1 + i]
        return keys

    def _probs(self, history_keys: list[torch.Tensor], valid: list[torch.Tensor], w: torch.Tensor) -> torch.Tensor:
        """p(w | history) for flat queries. history_keys[n-1]: key of the last n−1 tokens (order n);
        valid[n-1]: whether that much history exists. Returns float64, same shape as w."""
        vocab = self.vocab_size
        unigram = self.orders[0]  # its only history is the empty one (key 0)
        total, distinct = unigram.totals[0], unigram.distinct[0]
        slot, seen = sorted_lookup(unigram.keys, w)
        count = torch.where(seen, unigram.counts[slot], 0.0)
        p = (count - unigram.discount).clamp(min=0) / total + unigram.discount * distinct / total / vocab
        for n in range(2, self.order + 1):
            level = self.orders[n - 1]
            h_slot, h_seen = sorted_lookup(level.histories, history_keys[n - 1])
            slot, seen = sorted_lookup(level.keys, history_keys[n - 1] * vocab + w)
            count = torch.where(seen, level.counts[slot], 0.0)
            total = level.totals[h_slot]
            higher = ((count - level.discount).clamp(min=0) + level.discount * level.distinct[h_slot] * p) / total
            p = torch.where(h_seen & valid[n - 1], higher, p)  # unseen (or missing) history: back off
        return p

    def nll(self, ids: torch.Tensor) -> float:
        """Mean −log p(ids[t] | up to order−1 previous tokens) over t = 1..T−1, in nats per token."""
        ids = check_tensor(ids, "ids", shape=("T",), dtype=torch.int64, value_range=(0, self.vocab_size - 1),
                           min_batch=2).detach().cpu()
        t = torch.arange(1, len(ids))  # the scored positions
        history_keys, valid = [], []
        key = torch.zeros(len(t), dtype=torch.int64)
        for n in range(1, self.order + 1):  # history of order n: ids[t-n+1 .. t-1]
            history_keys.append(key.clone())
            valid.append(t >= n - 1)
            key = key + ids[(t - n).clamp(min=0)] * self.vocab_size ** (n - 1)
        return -torch.log(self._probs(history_keys, valid, ids[1:])).mean().item()

    def unseen_history_share(self, ids: torch.Tensor) -> float:
        """Share of the (order−1)-token histories in ids (T,) that never occur in the training ids."""
        if self.order == 1:
            return 0.0
        ids = check_tensor(ids, "ids", shape=("T",), dtype=torch.int64, value_range=(0, self.vocab_size - 1),
                           min_batch=self.order - 1).detach().cpu()
        keys = self._keys(ids, self.order - 1)  # the same key layout as the histories of the top order
        return 1.0 - torch.isin(keys, self.orders[-1].histories).double().mean().item()

    def next_probs(self, history: torch.Tensor) -> torch.Tensor:
        """history (B, L) int64 -> (B, V) float64 distributions of the next token (rows sum to 1)."""
        history = check_tensor(history, "history", shape=("B", "L"), dtype=torch.int64,
                               value_range=(0, self.vocab_size - 1)).detach().cpu()
        b, length = history.shape
        vocab = self.vocab_size
        w = torch.arange(vocab).repeat(b)  # (B*V,)
        history_keys, valid = [], []
        key = torch.zeros(b, dtype=torch.int64)
        for n in range(1, self.order + 1):
            history_keys.append(key.repeat_interleave(vocab))
            valid.append(torch.full((b * vocab,), length >= n - 1))
            if length >= n:
                key = key + history[:, length - n] * vocab ** (n - 1)
        return self._probs(history_keys, valid, w).view(b, vocab)

    def sample(self, prompt: torch.Tensor, n_new: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw n_new tokens after prompt (B, L), one at a time: (B, L + n_new) on the CPU."""
        if isinstance(n_new, bool) or not isinstance(n_new, int) or n_new < 0:
            raise ValueError(f"n_new must be an int >= 0, got {n_new!r}.")
        out = check_tensor(prompt, "prompt", shape=("B", "L"), dtype=torch.int64).detach().cpu()
        for _ in range(n_new):
            probs = self.next_probs(out[:, -(self.order - 1):] if self.order > 1 else out[:, :0])
            out = torch.cat([out, torch.multinomial(probs, 1, generator=generator)], dim=1)
        return out

