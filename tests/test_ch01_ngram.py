"""genbook.ngram.KneserNey against a naive dictionary implementation of the same equations."""

from collections import Counter

import pytest
import torch

from genbook.ngram import KneserNey, sorted_lookup


def naive_kneser_ney(text: list[int], vocab: int, order: int):
    """Interpolated Kneser–Ney written with Python dicts, straight from the equations."""
    counts = {order: Counter(tuple(text[i:i + order]) for i in range(len(text) - order + 1))}
    for n in range(order - 1, 0, -1):  # continuation counts: distinct left extensions
        counts[n] = Counter(gram[1:] for gram in counts[n + 1])
    discounts = {}
    for n, c in counts.items():
        n1 = sum(1 for v in c.values() if v == 1)
        n2 = sum(1 for v in c.values() if v == 2)
        discounts[n] = n1 / (n1 + 2 * n2) if n1 + n2 else 0.5

    def prob(history: tuple, w: int, n: int) -> float:
        if n == 1:
            total = sum(counts[1].values())
            d = discounts[1]
            return max(counts[1][(w,)] - d, 0) / total + d * len(counts[1]) / total / vocab
        lower = prob(history, w, n - 1)
        if len(history) < n - 1:  # not enough history for this order
            return lower
        h = tuple(history[len(history) - (n - 1):])  # the last n - 1 tokens
        following = {g[-1]: v for g, v in counts[n].items() if g[:-1] == h}
        total = sum(following.values())
        if total == 0:
            return lower
        d = discounts[n]
        return (max(following.get(w, 0) - d, 0) + d * len(following) * lower) / total

    return lambda history, w: prob(tuple(history), w, order)


def random_text(n: int, vocab: int, seed: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    # a Markov chain with a few strong transitions, so that counts of all sizes occur
    transition = torch.rand(vocab, vocab, generator=g) ** 4
    ids = [0]
    for _ in range(n - 1):
        ids.append(int(torch.multinomial(transition[ids[-1]], 1, generator=g)))
    return ids


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_matches_naive_equations(order):
    vocab = 5
    text = random_text(400, vocab, seed=order)
    model = KneserNey(torch.tensor(text), vocab, order)
    naive = naive_kneser_ney(text, vocab, order)
    histories = [text[i:i + 3] for i in range(0, 60, 7)] + [[4, 4, 4], [0], []]
    for history in histories:
        ours = model.next_probs(torch.tensor([history], dtype=torch.int64))[0]
        want = torch.tensor([naive(history, w) for w in range(vocab)], dtype=torch.float64)
        assert torch.allclose(ours, want, atol=1e-12), (history, ours, want)
        assert abs(ours.sum().item() - 1) < 1e-12


def test_nll_agrees_with_next_probs():
    vocab, order = 6, 3
    text = torch.tensor(random_text(300, vocab, seed=7))
    model = KneserNey(text, vocab, order)
    heldout = torch.tensor(random_text(40, vocab, seed=8))
    logs = [model.next_probs(heldout[None, max(0, t - order + 1):t])[0, heldout[t]].log() for t in range(1, 40)]
    assert abs(model.nll(heldout) + torch.stack(logs).mean().item()) < 1e-10


def test_higher_order_learns_deterministic_text():
    text = torch.tensor([0, 1, 2, 3] * 50)
    heldout = torch.tensor([0, 1, 2, 3] * 5)
    assert KneserNey(text, 4, 3).nll(heldout) < 0.2 < KneserNey(text, 4, 1).nll(heldout)


def test_sample_is_reproducible_and_follows_the_text():
    text = torch.tensor([0, 1, 2, 3] * 50)
    model = KneserNey(text, 4, 3)
    a = model.sample(torch.tensor([[0, 1]]), 12, torch.Generator().manual_seed(0))
    b = model.sample(torch.tensor([[0, 1]]), 12, torch.Generator().manual_seed(0))
    assert a.shape == (1, 14) and torch.equal(a, b)
    assert (a[0, 2:] == torch.tensor([2, 3, 0, 1] * 3)).float().mean() > 0.8


def test_bad_input_is_refused():
    text = torch.tensor([0, 1, 2, 3] * 5)
    with pytest.raises(ValueError, match="order"):
        KneserNey(text, 4, 0)
    with pytest.raises(ValueError, match="int64"):
        KneserNey(text, 200_000, 5)
    with pytest.raises(ValueError):
        KneserNey(torch.tensor([0, 1, 7]), 4, 1)  # id outside the vocabulary
    model = KneserNey(text, 4, 2)
    with pytest.raises(ValueError):
        model.nll(torch.tensor([0, 9]))
    with pytest.raises(ValueError, match="n_new"):
        model.sample(torch.tensor([[0]]), -1)


def test_unseen_history_share():
    model = KneserNey(torch.tensor([0, 1, 2, 3] * 5), 5, 3)
    assert model.unseen_history_share(torch.tensor([0, 1, 2, 3, 0])) == 0.0  # 01 12 23 30: all seen
    assert model.unseen_history_share(torch.tensor([0, 1, 4, 4])) == pytest.approx(2 / 3)  # 01 seen; 14 and 44 never
    assert KneserNey(torch.tensor([0, 1, 2, 3] * 5), 5, 1).unseen_history_share(torch.tensor([4, 4])) == 0.0


def test_sorted_lookup_matches_a_dictionary():
    g = torch.Generator().manual_seed(3)
    keys = torch.unique(torch.randint(-50, 200, (60,), generator=g))  # sorted, distinct, negatives too
    queries = torch.randint(-60, 210, (7, 9), generator=g)  # any shape; most absent, some above/below all keys
    queries[0, :3] = torch.stack([keys[0], keys[-1], keys[len(keys) // 2]])  # both ends and the middle
    where = {int(k): i for i, k in enumerate(keys)}
    slot, found = sorted_lookup(keys, queries)
    assert slot.shape == found.shape == queries.shape
    for q, s, f in zip(queries.flatten().tolist(), slot.flatten().tolist(), found.flatten().tolist()):
        assert f == (q in where)
        assert 0 <= s < len(keys)  # always a valid index, so values[slot] can be read and masked
        if f:
            assert s == where[q]
    slot, found = sorted_lookup(keys[:0], queries)  # an empty table finds nothing
    assert not found.any() and slot.shape == queries.shape
    with pytest.raises(ValueError, match="sorted_keys must be 1D"):
        sorted_lookup(keys.view(-1, 1), queries)
