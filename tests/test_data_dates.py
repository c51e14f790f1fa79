"""The date-normalisation task: deterministic, correct targets, a held-out split without overlap."""

import datetime
import re

import pytest
import torch

from genbook.data.dates import (
    FIRST_DAY,
    N_DAYS,
    STYLES,
    VOCAB,
    date_pairs,
    day_pools,
    encode_pairs,
    length_batches,
    max_target_length,
    ordinal,
)

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}( \d{4}-\d{2}-\d{2})*$")


def test_deterministic_per_seed():
    assert date_pairs(50, seed=3) == date_pairs(50, seed=3)
    assert date_pairs(50, seed=3) != date_pairs(50, seed=4)
    assert date_pairs(50, "train", seed=0) != date_pairs(50, "heldout", seed=0)


def test_targets_are_the_iso_dates_of_the_source():
    for source, target in date_pairs(300, n_dates=1, seed=1):
        date = datetime.date.fromisoformat(target)
        assert source in {style(date) for style in STYLES.values()}, (source, target)


def test_n_dates_controls_the_length():
    for k in (1, 2, 4):
        pairs = date_pairs(40, n_dates=k, seed=2)
        assert all(ISO.match(t) and len(t.split()) == k and len(t) + 1 == max_target_length(k) for _, t in pairs)
    mixed = [len(t.split()) for _, t in date_pairs(300, n_dates=(1, 3))]
    assert set(mixed) == {1, 2, 3}
    short = sum(len(s) for s, _ in date_pairs(200, n_dates=1)) / 200
    long = sum(len(s) for s, _ in date_pairs(200, n_dates=3)) / 200
    assert long > 2.5 * short


def test_heldout_dates_never_appear_in_training():
    train_pool, held_pool = day_pools()
    assert not set(train_pool) & set(held_pool)
    assert len(train_pool) + len(held_pool) == N_DAYS
    assert abs(len(held_pool) / N_DAYS - 0.1) < 0.001
    held_dates = {(FIRST_DAY + datetime.timedelta(days=d)).isoformat() for d in held_pool}
    train = date_pairs(3000, "train", n_dates=(1, 2))
    heldout = date_pairs(1000, "heldout", n_dates=(1, 2))
    assert all(d in held_dates for _, t in heldout for d in t.split())
    assert not any(d in held_dates for _, t in train for d in t.split())
    assert not {s for s, _ in train} & {s for s, _ in heldout}
    assert day_pools(split_seed=1) != day_pools(split_seed=0)


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="split must be one of"):
        date_pairs(1, "test")
    with pytest.raises(ValueError, match="n_dates must be >= 1"):
        date_pairs(1, n_dates=(3, 1))
    with pytest.raises(ValueError, match="heldout_fraction"):
        day_pools(1.5)


def test_ordinals():
    assert [ordinal(d) for d in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "31st"]


def test_vocab_round_trip_and_specials():
    assert (VOCAB.PAD, VOCAB.BOS, VOCAB.EOS) == (0, 1, 2)
    for source, target in date_pairs(100, n_dates=(1, 3)):
        assert VOCAB.decode(VOCAB.encode(source)) == source
        ids = VOCAB.encode(target, bos=True, eos=True)
        assert ids[0] == VOCAB.BOS and ids[-1] == VOCAB.EOS
        assert VOCAB.decode(ids + [VOCAB.PAD, 5]) == target  # decoding stops at EOS
    with pytest.raises(ValueError, match="not in the date vocabulary"):
        VOCAB.encode("3 März 1999")


def test_encode_pairs_pads_and_adds_bos_eos():
    pairs = [("3 Mar 1999", "1999-03-03"), ("the 1st of May 2001; 2 Jun 2002", "2001-05-01 2002-06-02")]
    src, tgt = encode_pairs(pairs)
    assert src.dtype == tgt.dtype == torch.long
    assert src.shape == (2, len(pairs[1][0])) and tgt.shape == (2, 21 + 2)
    assert src[0, len(pairs[0][0]):].eq(VOCAB.PAD).all()
    assert tgt[:, 0].eq(VOCAB.BOS).all() and tgt[0, 11] == VOCAB.EOS and tgt[0, 12:].eq(VOCAB.PAD).all()
    assert VOCAB.decode(tgt[1].tolist()) == pairs[1][1]
    assert encode_pairs(pairs, src_len=40, tgt_len=30)[0].shape == (2, 40)
    with pytest.raises(ValueError, match="longer than"):
        encode_pairs(pairs, src_len=5)
    with pytest.raises(ValueError, match="at least one pair"):
        encode_pairs([])


def test_length_batches_are_trimmed_and_faithful():
    pairs = date_pairs(640, n_dates=(1, 3), seed=5)
    src, tgt = encode_pairs(pairs)
    rows = {VOCAB.decode(s.tolist()): VOCAB.decode(t.tolist()) for s, t in zip(src, tgt)}
    stream = length_batches(src, tgt, 32, generator=torch.Generator().manual_seed(0))
    spans = []
    for _ in range(40):  # two epochs
        s, t = next(stream)
        assert s.shape[0] == t.shape[0] == 32
        assert (s != VOCAB.PAD).sum(1).max() == s.shape[1]  # cut to the longest source of the batch
        assert (t != VOCAB.PAD).sum(1).max() == t.shape[1]
        assert all(rows[VOCAB.decode(a.tolist())] == VOCAB.decode(b.tolist()) for a, b in zip(s, t))
        lengths = (s != VOCAB.PAD).sum(1).float()
        spans.append((lengths.max() - lengths.min()).item())
    overall = (src != VOCAB.PAD).sum(1).float()
    assert sum(spans) / len(spans) < 0.5 * (overall.max() - overall.min()).item()  # batches group similar lengths
    with pytest.raises(ValueError, match="batch_size"):
        next(length_batches(src, tgt, 10_000))
    with pytest.raises(TypeError, match="int64 tensor"):
        next(length_batches(src.float(), tgt, 4))
