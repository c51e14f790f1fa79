"""Tokenizers: characters, byte-level BPE (GPT-2) and WordPiece (BERT).

``CharTokenizer`` is written out here, a dozen lines. The subword tokenizers are
trained locally with the Hugging Face ``tokenizers`` library (nothing is
downloaded) and wrapped so all three share one interface:
``encode(str) -> list[int]``, ``decode(list[int]) -> str``, ``vocab_size``,
``token_to_id(str) -> int``, ``id_to_token(int) -> str``.

* BPE: Sennrich, Haddow & Birch (2016), arXiv:1508.07909; byte-level as in
  GPT-2 (Radford et al. 2019): every string round-trips exactly.
* WordPiece: Schuster & Nakajima (2012); as used in BERT (Devlin et al. 2019,
  arXiv:1810.04805): lower-cased, split on whitespace and punctuation, so decode
  gives the text back only up to case, accents and spacing around punctuation.
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers


class CharTokenizer:
    """One token per character; ids in order of sorted characters of ``text``.

    An unknown character raises ValueError, unless ``unk_token`` is given (e.g.
    "<unk>"): then it gets the last id, unknown characters encode to it and it
    decodes to the string ``unk_token``.
    """

    def __init__(self, text: str, unk_token: str | None = None):
        if not text:
            raise ValueError("CharTokenizer needs a non-empty text to take its characters from.")
        self.chars = sorted(set(text))
        if unk_token is not None and unk_token in self.chars:
            raise ValueError(f"unk_token {unk_token!r} is a character of the text; pick another, e.g. '<unk>'.")
        self.unk_token = unk_token
        self.itos = self.chars + ([unk_token] if unk_token is not None else [])
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        # Lookup table from Unicode code point to id, so encoding 5 MB of text is one numpy gather.
        self._table = np.full(max(map(ord, self.chars)) + 1, -1, dtype=np.int64)
        self._table[[ord(c) for c in self.chars]] = np.arange(len(self.chars))

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        ids = np.full(len(codes), -1, dtype=np.int64)
        known = codes < len(self._table)
        ids[known] = self._table[codes[known]]
        if (ids < 0).any():
            if self.unk_token is None:
                unknown = sorted({chr(c) for c in codes[ids < 0]})
                raise ValueError(
                    f"Characters not in the vocabulary: {unknown[:20]!r}. Build the tokenizer from a text "
                    "that contains them, or pass unk_token='<unk>' to map them to one id."
                )
            ids[ids < 0] = len(self.chars)
        return ids.tolist()

    def decode(self, ids: Iterable[int]) -> str:
        try:
            return "".join(self.itos[i] for i in ids)
        except (IndexError, TypeError) as error:
            raise ValueError(f"ids must be ints in 0..{self.vocab_size - 1} ({error}).") from error

    def token_to_id(self, token: str) -> int:
        if self.unk_token is not None and token == self.unk_token:
            return len(self.chars)
        if token not in self.stoi:
            raise KeyError(f"{token!r} is not in the vocabulary.")
        return self.stoi[token]

    def id_to_token(self, i: int) -> str:
        return self.itos[i]

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


class SubwordTokenizer:
    """Thin wrapper of a trained ``tokenizers.Tokenizer`` with the CharTokenizer interface.

    ``encode`` adds no special tokens: a chapter that wants [CLS] ... [SEP] adds
    them itself with ``token_to_id``, in plain sight. ``decode`` keeps special tokens.
    """

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Many texts at once (parallel in Rust)."""
        return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def token_to_id(self, token: str) -> int:
        i = self.tokenizer.token_to_id(token)
        if i is None:
            raise KeyError(f"{token!r} is not in the vocabulary.")
        return i

    def id_to_token(self, i: int) -> str:
        token = self.tokenizer.id_to_token(i)
        if token is None:
            raise KeyError(f"id {i} is not in 0..{self.vocab_size - 1}.")
        return token

    def save(self, path: str | Path) -> None:
        """Write the tokenizer as one JSON file (the ``tokenizers`` format)."""
        self.tokenizer.save(str(path))

    @classmethod
    def load(cls, path: str | Path) -> SubwordTokenizer:
        return cls(Tokenizer.from_file(str(path)))

    def __repr__(self) -> str:
        return f"SubwordTokenizer({type(self.tokenizer.model).__name__}, vocab_size={self.vocab_size})"


def _as_iterable(texts: str | Iterable[str]) -> Iterable[str]:
    return [texts] if isinstance(texts, str) else texts  # a str would otherwise iterate over characters


def train_bpe(
    texts: str | Iterable[str],
    vocab_size: int,
    special_tokens: tuple[str, ...] = ("<|endoftext|>",),
    min_frequency: int = 2,
) -> SubwordTokenizer:
    """Byte-level BPE as in GPT-2, trained on ``texts``: 256 byte tokens + merges + special tokens.

    decode(encode(s)) == s for every string s.
    """
    if vocab_size < 256 + len(special_tokens):
        raise ValueError(f"vocab_size must be at least 256 bytes + {len(special_tokens)} special tokens.")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_as_iterable(texts), trainer=trainer)
    return SubwordTokenizer(tokenizer)


def _word_characters(texts: list[str], normalizer) -> set[str]:
    """Characters that can continue a word after BERT normalisation: not whitespace, not punctuation.

    Worked out on the alphabet, not the whole text (fast); Chinese characters, which the
    normalizer surrounds with spaces, always stand alone and are left out.
    """
    alphabet = set().union(*map(set, texts))
    characters = set()
    for raw in alphabet:
        normal = normalizer.normalize_str(raw)
        if normal != normal.strip():
            continue
        characters.update(
            c
            for c in normal
            if not c.isspace()
            and not unicodedata.category(c).startswith("P")
            and not (c.isascii() and c in string.punctuation)
        )
    return characters


def train_wordpiece(
    texts: str | Iterable[str],
    vocab_size: int,
    special_tokens: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"),
    lowercase: bool = True,
) -> SubwordTokenizer:
    """WordPiece as in BERT, trained on ``texts``; continuation pieces start with "##".

    Special tokens get the first ids in the order given ([PAD] = 0 by default).
    Training is deterministic: the same texts give the same vocabulary.
    decode(encode(s)) equals s lower-cased (if ``lowercase``) and without accents,
    up to whitespace: spaces around punctuation may differ; characters never seen
    in training become "[UNK]".
    """
    if "[UNK]" not in special_tokens:
        raise ValueError('special_tokens must contain "[UNK]" (WordPiece maps unknown words to it).')
    texts = list(_as_iterable(texts))
    normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    # HF's trainer numbers the "##c" continuation pieces in hash-map order, and ties between
    # equally frequent merges are broken by those numbers, so two runs can learn different
    # vocabularies (huggingface/tokenizers#1794). Registering every "##c" up front, sorted,
    # makes training deterministic; they stay ordinary (not special) tokens in the result.
    pieces = [f"##{c}" for c in sorted(_word_characters(texts, normalizer))]
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=[*special_tokens, *pieces], show_progress=False
    )
    scratch = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    scratch.normalizer, scratch.pre_tokenizer = normalizer, pre_tokenizer
    scratch.train_from_iterator(texts, trainer=trainer)

    tokenizer = Tokenizer(models.WordPiece(vocab=scratch.get_vocab(with_added_tokens=False), unk_token="[UNK]"))
    tokenizer.normalizer, tokenizer.pre_tokenizer = normalizer, pre_tokenizer
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    tokenizer.add_special_tokens(list(special_tokens))
    return SubwordTokenizer(tokenizer)
