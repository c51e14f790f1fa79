"""Date normalisation: a procedural translation task whose alignment can be seen.

    "the 3rd of March 1999; Wed 4 Aug 2010"  ->  "1999-03-03 2010-08-04"

Each source holds ``n_dates`` dates written in one of :data:`STYLES` (words,
ordinals, abbreviations, weekdays, numeric) and joined by separators; the
target lists them in ISO 8601 form, in the same order, separated by spaces.
More dates make longer sequences, so one knob gives an accuracy-vs-length curve.

The split is by *date*: the 73,049 calendar days from 1900-01-01 to 2099-12-31
are divided once (by ``split_seed``) into a training pool and a held-out pool,
and every date of a held-out example comes from the held-out pool. So no
held-out date, in any writing, is ever seen in training. Generation is
deterministic in ``seed``.

Tokens are characters; :data:`VOCAB` has PAD=0, BOS=1, EOS=2 and a fixed alphabet.
"""

from __future__ import annotations

import datetime
import functools
import random
from collections.abc import Iterable, Sequence

import torch

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
FIRST_DAY, LAST_DAY = datetime.date(1900, 1, 1), datetime.date(2099, 12, 31)
N_DAYS = (LAST_DAY - FIRST_DAY).days + 1
SEPARATORS = ("; ", " and ", ", then ", " / ")
SPLITS = ("train", "heldout")


def ordinal(day: int) -> str:
    """1 -> "1st", 2 -> "2nd", 3 -> "3rd", 11 -> "11th", 22 -> "22nd"."""
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


# name -> how a date is written; every style spells out the year, day and month unambiguously.
STYLES = {
    "ordinal_of": lambda d: f"the {ordinal(d.day)} of {MONTHS[d.month - 1]} {d.year}",
    "month_ordinal": lambda d: f"{MONTHS[d.month - 1]} {ordinal(d.day)}, {d.year}",
    "month_day": lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}",
    "day_month": lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}",
    "day_mon": lambda d: f"{d.day} {MONTHS[d.month - 1][:3]} {d.year}",
    "weekday_month_day": lambda d: f"{WEEKDAYS[d.weekday()]}, {MONTHS[d.month - 1]} {d.day}, {d.year}",
    "wkd_day_mon": lambda d: f"{WEEKDAYS[d.weekday()][:3]} {d.day} {MONTHS[d.month - 1][:3]} {d.year}",
    "lower_day_month": lambda d: f"{d.day} {MONTHS[d.month - 1].lower()} {d.year}",
    "dotted": lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",
    "slashed_iso_order": lambda d: f"{d.year}/{d.month}/{d.day}",
}


class DateVocab:
    """Characters of the task plus PAD=0, BOS=1, EOS=2; the same ids for source and target."""

    PAD, BOS, EOS = 0, 1, 2
    SPECIALS = ("<pad>", "<bos>", "<eos>")

    def __init__(self):
        words = " ".join(MONTHS + WEEKDAYS).lower() + " ".join(MONTHS + WEEKDAYS)
        chars = set(words) | set("0123456789 ,.;/-") | set("".join(SEPARATORS)) | set("thndrs")
        self.chars = sorted(chars)
        self.itos = list(self.SPECIALS) + self.chars
        self.stoi = {c: i for i, c in enumerate(self.itos)}

    @property
    def size(self) -> int:
        return len(self.itos)

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        unknown = sorted(set(text) - set(self.chars))
        if unknown:
            raise ValueError(f"characters not in the date vocabulary: {unknown!r}.")
        return [self.BOS] * bos + [self.stoi[c] for c in text] + [self.EOS] * eos

    def decode(self, ids: Iterable[int]) -> str:
        """Characters up to the first EOS; PAD and BOS are skipped."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.EOS:
                break
            if i not in (self.PAD, self.BOS):
                out.append(self.itos[i])
        return "".join(out)

    def __repr__(self) -> str:
        return f"DateVocab(size={self.size}, PAD=0, BOS=1, EOS=2)"


VOCAB = DateVocab()


@functools.lru_cache(maxsize=8)
def day_pools(heldout_fraction: float = 0.1, split_seed: int = 0) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Day numbers (0 = 1900-01-01) of the training pool and the held-out pool, disjoint."""
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must lie strictly between 0 and 1, got {heldout_fraction}.")
    days = list(range(N_DAYS))
    random.Random(split_seed).shuffle(days)
    n_held = round(heldout_fraction * N_DAYS)
    return tuple(sorted(days[n_held:])), tuple(sorted(days[:n_held]))


def date_pairs(n: int, split: str = "train", n_dates: int | tuple[int, int] = (1, 3), seed: int = 0,
               heldout_fraction: float = 0.1, split_seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (source, target) string pairs of the ``split`` ("train" or "heldout").

    n_dates: the number of dates per example, an int or an inclusive range (lo, hi)
        drawn uniformly per example. Deterministic in ``seed``; the date pools depend
        only on ``heldout_fraction`` and ``split_seed``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    lo, hi = (n_dates, n_dates) if isinstance(n_dates, int) else tuple(n_dates)
    if not 1 <= lo <= hi:
        raise ValueError(f"n_dates must be >= 1 (or a range 1 <= lo <= hi), got {n_dates!r}.")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}.")
    pool = day_pools(heldout_fraction, split_seed)[SPLITS.index(split)]
    rng = random.Random(f"{split}-{seed}")  # different streams for the two splits with the same seed
    styles = list(STYLES.values())
    pairs = []
    for _ in range(n):
        dates = [FIRST_DAY + datetime.timedelta(days=rng.choice(pool)) for _ in range(rng.randint(lo, hi))]
        sep = rng.choice(SEPARATORS)
        source = sep.join(rng.choice(styles)(d) for d in dates)
        target = " ".join(d.isoformat() for d in dates)
        pairs.append((source, target))
    return pairs


def max_target_length(n_dates: int) -> int:
    """Characters of a target with ``n_dates`` dates, EOS included (11 per date)."""
    return 11 * n_dates


def encode_pairs(pairs: Sequence[tuple[str, str]], src_len: int | None = None,
                 tgt_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad a list of pairs into tensors.

    Returns src (N, S) and tgt (N, T + 1) int64, padded with PAD. ``tgt`` is
    BOS + target + EOS: a model reads ``tgt[:, :-1]`` and predicts ``tgt[:, 1:]``.
    ``src_len``/``tgt_len`` fix S and T + 1 (default: the longest in ``pairs``).
    """
    if not pairs:
        raise ValueError("encode_pairs needs at least one pair.")
    srcs = [VOCAB.encode(s) for s, _ in pairs]
    tgts = [VOCAB.encode(t, bos=True, eos=True) for _, t in pairs]
    s_len = src_len or max(map(len, srcs))
    t_len = tgt_len or max(map(len, tgts))
    if max(map(len, srcs)) > s_len or max(map(len, tgts)) > t_len:
        raise ValueError(f"a sequence is longer than src_len={s_len} / tgt_len={t_len}.")
    src = torch.full((len(pairs), s_len), VOCAB.PAD, dtype=torch.long)
    tgt = torch.full((len(pairs), t_len), VOCAB.PAD, dtype=torch.long)
    for i, (s, t) in enumerate(zip(srcs, tgts)):
        src[i, : len(s)] = torch.tensor(s)
        tgt[i, : len(t)] = torch.tensor(t)
    return src, tgt


def length_batches(src: torch.Tensor, tgt: torch.Tensor, batch_size: int, generator: torch.Generator | None = None,
                   device: torch.device | str | None = None, pool: int = 50):
    """Endless minibatches of examples with similar source lengths, cut to their longest sequence.

    Padding costs compute: a batch of one-date examples padded to the length of
    three dates does three times the work. Each epoch is shuffled, cut into pools of
    ``pool`` batches, each pool sorted by source length and cut into batches, and
    the batches shuffled (as fairseq and tensor2tensor do). Lengths are computed on
    the CPU, so slicing never waits for the device. Yields (src (B, S'), tgt (B, T')).
    """
    check_pairs_tensors(src, tgt)
    if not 0 < batch_size <= len(src):
        raise ValueError(f"batch_size must be in 1..{len(src)} (the dataset size), got {batch_size}.")
    src, tgt = src.cpu(), tgt.cpu()
    src_len, tgt_len = (src != VOCAB.PAD).sum(1), (tgt != VOCAB.PAD).sum(1)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    while True:
        order = torch.randperm(len(src), generator=generator)
        chunks = []
        for start in range(0, len(src) - batch_size + 1, batch_size * pool):
            group = order[start:start + batch_size * pool]
            group = group[torch.argsort(src_len[group], stable=True)]
            chunks += [group[i:i + batch_size] for i in range(0, len(group) - batch_size + 1, batch_size)]
        for j in torch.randperm(len(chunks), generator=generator).tolist():
            idx = chunks[j]
            s, t = int(src_len[idx].max()), int(tgt_len[idx].max())
            yield src[idx, :s].to(dev, non_blocking=True), tgt[idx, :t].to(dev, non_blocking=True)


def check_pairs_tensors(src: torch.Tensor, tgt: torch.Tensor) -> None:
    """src (N, S) and tgt (N, T) int64 id tensors with the same N (as made by :func:`encode_pairs`)."""
    for name, t in (("src", src), ("tgt", tgt)):
        if not isinstance(t, torch.Tensor) or t.dim() != 2 or t.dtype != torch.long:
            got = f"{tuple(t.shape)} {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise TypeError(f"{name} must be an (N, length) int64 tensor from encode_pairs, got {got}.")
    if len(src) != len(tgt):
        raise ValueError(f"src and tgt must hold the same number of examples, got {len(src)} and {len(tgt)}.")
