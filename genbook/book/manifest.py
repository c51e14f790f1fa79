"""``book.toml``: the book's title and the ordered list of chapters with their facts.

Each chapter has a slug ``NN_name`` (its file is ``chapters/NN_name.py``), a
title, a status (``planned`` or ``written``; only written chapters are built and
tested) and ``budget_s``, its wall-time budget in the fast profile on a 2-core CPU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import tomllib

from ..paths import REPO_ROOT

STATUSES = ("planned", "written")
SLUG = re.compile(r"^(\d\d)_[a-z0-9_]+$")
TABLES = ("book", "chapters")
BOOK_KEYS = ("title", "author", "description")
CHAPTER_KEYS = ("slug", "title", "status", "budget_s")


@dataclass(frozen=True)
class Chapter:
    slug: str
    title: str
    status: str
    budget_s: float

    @property
    def number(self) -> int:
        return int(self.slug[:2])

    @property
    def path(self) -> Path:
        return REPO_ROOT / "chapters" / f"{self.slug}.py"


@dataclass(frozen=True)
class Manifest:
    title: str
    author: str
    description: str
    chapters: tuple[Chapter, ...]

    def written(self) -> list[Chapter]:
        return [c for c in self.chapters if c.status == "written"]

    def chapter(self, slug: str) -> Chapter:
        for c in self.chapters:
            if c.slug == slug:
                return c
        raise KeyError(f"no chapter {slug!r} in book.toml; known: {', '.join(c.slug for c in self.chapters)}")


def load_manifest(path: Path | None = None) -> Manifest:
    """Read and validate ``book.toml``; a malformed entry raises ValueError naming it."""
    path = Path(path or REPO_ROOT / "book.toml")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML: {err}.") from None
    unknown = sorted(set(data) - set(TABLES))
    if unknown:
        raise ValueError(f"{path}: unknown table(s) {unknown}; expected [book] and [[chapters]].")
    book = data.get("book", {})
    if not isinstance(book, dict) or not isinstance(data.get("chapters", []), list):
        raise ValueError(f"{path}: expected one [book] table and a list of [[chapters]] tables.")
    unknown = sorted(set(book) - set(BOOK_KEYS))
    if unknown:
        raise ValueError(f"{path}: [book]: unknown key(s) {unknown}; expected some of {list(BOOK_KEYS)}.")
    for key in BOOK_KEYS:
        if key in book and not isinstance(book[key], str):
            raise ValueError(f"{path}: [book]: {key} must be a string, got {book[key]!r}.")
    if "title" not in book:
        raise ValueError(f"{path}: [book] needs a title.")
    chapters = []
    for i, entry in enumerate(data.get("chapters", [])):
        where = f"{path}: chapters[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} must be a [[chapters]] table, got {entry!r}.")
        if "slug" in entry and not isinstance(entry["slug"], str):
            raise ValueError(f"{where}: slug must be a string such as \"05_ddpm\", got {entry['slug']!r}.")
        if isinstance(entry.get("slug"), str):
            where += f" ({entry['slug']!r})"
        missing = set(CHAPTER_KEYS) - set(entry)
        if missing:
            raise ValueError(f"{where} lacks {sorted(missing)}.")
        unknown = sorted(set(entry) - set(CHAPTER_KEYS))
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; expected {list(CHAPTER_KEYS)}.")
        if not SLUG.match(entry["slug"]):
            raise ValueError(f"{where}: slug {entry['slug']!r} must look like '05_ddpm'.")
        if not isinstance(entry["title"], str):
            raise ValueError(f"{where}: title must be a string, got {entry['title']!r}.")
        if entry["status"] not in STATUSES:
            raise ValueError(f"{where}: status {entry['status']!r} must be one of {STATUSES}.")
        budget = entry["budget_s"]
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget > 0:
            raise ValueError(f"{where}: budget_s must be a positive number of seconds (budget_s = 180), "
                             f"got {budget!r}.")
        chapters.append(Chapter(entry["slug"], entry["title"], entry["status"], float(entry["budget_s"])))
    numbers = [c.number for c in chapters]
    if numbers != sorted(set(numbers)):
        raise ValueError(f"{path}: chapter numbers must be unique and in order, got {numbers}.")
    return Manifest(book["title"], book.get("author", ""), book.get("description", ""), tuple(chapters))
