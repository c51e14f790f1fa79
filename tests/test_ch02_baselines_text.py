"""genbook.baselines_text (chapter 02's count baselines) against naive Python versions."""

import math
from collections import Counter

import pytest
import torch

from genbook.baselines_text import BigramPMI, NeighbourCountModel, fit_threshold


def random_stream(n=3000, vocab=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    # a Markov chain with strong next-token preferences, so counts matter
    transition = torch.rand(vocab, vocab, generator=g) ** 4
    stream = [0]
    for _ in range(n - 1):
        stream.append(int(torch.multinomial(transition[stream[-1]], 1, generator=g)))
    return torch.tensor(stream)


def test_neighbour_count_matches_a_dictionary_of_counts():
    stream, vocab = random_stream(), 12
    model = NeighbourCountModel(stream, vocab)
    s = stream.tolist()
    table = {}
    for a, m, b in zip(s, s[1:], s[2:]):
        table.setdefault((a, b), Counter())[m] += 1
    unigram = Counter(s).most_common(1)[0][0]
    left = torch.randint(0, vocab, (500,), generator=torch.Generator().manual_seed(1))
    right = torch.randint(0, vocab, (500,), generator=torch.Generator().manual_seed(2))
    predicted = model.predict(left, right)
    for a, b, p in zip(left.tolist(), right.tolist(), predicted.tolist()):
        if (a, b) in table:
            counts = table[(a, b)]
            assert counts[p] == max(counts.values())  # a most frequent middle token (ties: any of them)
        else:
            assert p == unigram
    unseen = sum((a, b) not in table for a, b in zip(left.tolist(), right.tolist())) / 500
    assert model.last_backoff_rate == pytest.approx(unseen, abs=1e-6)


def test_neighbour_count_backs_off_for_unseen_pairs():
    model = NeighbourCountModel(torch.tensor([1, 2, 3, 1, 2, 3, 1, 2]), 6)
    assert model.predict(torch.tensor([1, 5]), torch.tensor([3, 5])).tolist() == [2, model.most_frequent]
    assert model.last_backoff_rate == pytest.approx(0.5, abs=1e-6)


def test_pmi_pair_ratio_matches_the_formula_and_prefers_natural_order():
    stream, vocab, lam = random_stream(), 12, 0.9
    pmi = BigramPMI(stream, vocab, lam=lam)
    s = stream.tolist()
    uni, bi, left = Counter(s), Counter(zip(s, s[1:])), Counter(s[:-1])
    for a, b in [(0, 1), (3, 3), (5, 11), (11, 0)]:
        p_b = (uni[b] + 1) / (len(s) + vocab)
        p_b_a = lam * bi[(a, b)] / max(left[a], 1) + (1 - lam) * p_b
        assert pmi.pair_log_ratio(torch.tensor(a), torch.tensor(b)).item() == pytest.approx(math.log(p_b_a / p_b))
    windows = stream[: 40 * 50].view(40, 50)
    shuffled = windows.gather(1, torch.rand(40, 50, generator=torch.Generator().manual_seed(3)).argsort(1))
    assert (pmi.score(windows) > pmi.score(shuffled)).float().mean() > 0.9


def test_fit_threshold_is_the_best_cut_by_brute_force():
    g = torch.Generator().manual_seed(0)
    labels = (torch.rand(60, generator=g) < 0.5).long()
    scores = torch.randn(60, generator=g) + 1.2 * labels
    cut = fit_threshold(scores, labels)
    accuracy = lambda c: ((scores > c).long() == labels).float().mean().item()  # noqa: E731
    best = max(accuracy(c) for c in torch.cat([scores, scores.min()[None] - 1]).tolist())
    assert accuracy(cut) == pytest.approx(best)


def test_bad_input_is_refused_with_a_clear_message():
    with pytest.raises(TypeError, match="1D int64"):
        NeighbourCountModel(torch.tensor([[1, 2, 3]]), 5)
    with pytest.raises(ValueError, match="token ids must lie"):
        BigramPMI(torch.tensor([1, 2, 9]), 5)
    with pytest.raises(ValueError, match="lam"):
        BigramPMI(torch.tensor([1, 2, 3]), 5, lam=1.0)
    with pytest.raises(ValueError, match="0 or 1"):
        fit_threshold(torch.tensor([0.1, 0.2]), torch.tensor([0, 2]))
