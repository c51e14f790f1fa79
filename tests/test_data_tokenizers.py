"""Tokenizers: character, byte-level BPE and WordPiece round trips, special tokens, errors."""

import pytest

from genbook.data import CharTokenizer, SubwordTokenizer, make_shapes, train_bpe, train_wordpiece

VERSE = """Shall I compare thee to a summer's day?
Thou art more lovely and more temperate:
Rough winds do shake the darling buds of May,
And summer's lease hath all too short a date;
Sometime too hot the eye of heaven shines,
And often is his gold complexion dimm'd;
"""


@pytest.fixture(scope="module")
def corpus():
    """A small, self-contained training corpus: verse plus captions (no download needed)."""
    return [VERSE] * 20 + make_shapes(2000, seed=0).captions


@pytest.fixture(scope="module")
def bpe(corpus):
    return train_bpe(corpus, vocab_size=400)


@pytest.fixture(scope="module")
def wordpiece(corpus):
    return train_wordpiece(corpus, vocab_size=300)


def test_char_tokenizer_round_trip_and_vocabulary():
    tokenizer = CharTokenizer(VERSE)
    assert tokenizer.vocab_size == len(set(VERSE))
    assert tokenizer.itos == sorted(set(VERSE))
    ids = tokenizer.encode(VERSE)
    assert len(ids) == len(VERSE) and all(isinstance(i, int) for i in ids)
    assert tokenizer.decode(ids) == VERSE
    assert tokenizer.encode("") == [] and tokenizer.decode([]) == ""
    assert tokenizer.token_to_id("S") == tokenizer.encode("S")[0] and tokenizer.id_to_token(0) == "\n"


def test_char_tokenizer_unknown_characters():
    tokenizer = CharTokenizer("abc")
    with pytest.raises(ValueError, match=r"not in the vocabulary: \['z', 'é'\]"):
        tokenizer.encode("abzé")
    with_unk = CharTokenizer("abc", unk_token="<unk>")
    assert with_unk.vocab_size == 4 and with_unk.token_to_id("<unk>") == 3
    assert with_unk.encode("azb😀") == [0, 3, 1, 3]
    assert with_unk.decode(with_unk.encode("azb")) == "a<unk>b"
    with pytest.raises(ValueError, match="unk_token"):
        CharTokenizer("a<b", unk_token="<")
    with pytest.raises(ValueError, match="ints in 0..2"):
        tokenizer.decode([5])


@pytest.mark.parametrize(
    "text",
    [
        VERSE,
        "a small red circle in the top left",
        "  leading and trailing spaces  \n\n\ttabs\r\nand CRLF",
        "Ünïcødé, naïve café, 日本語, emoji 😀 and a zero-width\u200bspace",
        "text with the special token <|endoftext|> inside",
        "",
    ],
)
def test_byte_level_bpe_round_trips_exactly(bpe, text):
    assert bpe.decode(bpe.encode(text)) == text


def test_bpe_vocabulary_and_compression(bpe, corpus):
    assert isinstance(bpe, SubwordTokenizer) and 256 < bpe.vocab_size <= 400
    assert bpe.token_to_id("<|endoftext|>") == 0
    assert bpe.encode("<|endoftext|>") == [0]
    caption = "a large blue square above a green star"
    assert len(bpe.encode(caption)) < len(caption) / 2  # merges learned from the captions
    with pytest.raises(KeyError):
        bpe.token_to_id("no such token")
    with pytest.raises(ValueError, match="at least 256"):
        train_bpe(corpus, vocab_size=100)


def test_training_is_deterministic(bpe, wordpiece, corpus):
    """Same corpus, same vocabulary (HF's WordPiece trainer alone is not: huggingface/tokenizers#1794)."""
    again = train_bpe(corpus, vocab_size=400)
    assert again.tokenizer.get_vocab() == bpe.tokenizer.get_vocab()
    for _ in range(3):
        assert train_wordpiece(corpus, vocab_size=300).tokenizer.get_vocab() == wordpiece.tokenizer.get_vocab()


def test_wordpiece_has_no_extra_special_tokens(wordpiece):
    """The "##c" pieces registered for determinism are ordinary tokens, not special ones."""
    specials = {t.content for t in wordpiece.tokenizer.get_added_tokens_decoder().values()}
    assert specials == {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
    assert "##e" in wordpiece.tokenizer.get_vocab()


def test_wordpiece_round_trip_up_to_case_and_spacing(wordpiece):
    for text in (VERSE, "A small red circle in the top left", "Shall I compare thee, summer's day?"):
        decoded = wordpiece.decode(wordpiece.encode(text))
        assert "".join(decoded.split()) == "".join(text.lower().split())
    # What is not kept: case, and the spacing around punctuation.
    assert wordpiece.decode(wordpiece.encode("Summer's day: May")) == "summer ' s day : may"


def test_wordpiece_special_tokens_and_unknowns(wordpiece):
    names = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
    assert [wordpiece.token_to_id(t) for t in names] == [0, 1, 2, 3, 4]
    assert wordpiece.vocab_size <= 300
    ids = wordpiece.encode("summer ☃")  # a character never seen in training
    assert ids[-1] == wordpiece.token_to_id("[UNK]") and wordpiece.id_to_token(ids[0]) == "summer"
    assert wordpiece.encode("summer")[0] != wordpiece.token_to_id("[CLS]")  # encode adds no [CLS]/[SEP]
    pieces = [wordpiece.id_to_token(i) for i in wordpiece.encode("complexion")]
    assert all(p.startswith("##") for p in pieces[1:])
    with pytest.raises(ValueError, match=r"\[UNK\]"):
        train_wordpiece(["x"], vocab_size=50, special_tokens=("[PAD]",))


def test_save_and_load(bpe, tmp_path):
    path = tmp_path / "bpe.json"
    bpe.save(path)
    loaded = SubwordTokenizer.load(path)
    assert loaded.vocab_size == bpe.vocab_size and loaded.encode(VERSE) == bpe.encode(VERSE)


def test_a_single_string_is_one_text_not_its_characters():
    tokenizer = train_bpe(VERSE * 5, vocab_size=300)
    assert len(tokenizer.encode("summer")) < 6  # merges were learned across characters
