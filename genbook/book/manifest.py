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
        raise KeyError(f"no chapter {slug!r} in book.toml; known: {[c.slug for c in self.chapters]}")


def load_manifest(path: Path | None = None) -> Manifest:
    """Read and validate ``book.toml``; a malformed entry raises ValueError naming it."""
    path = Path(path or REPO_ROOT / "book.toml")
    data = tomllib.loads(path.read_text())
    book = data.get("book", {})
    if "title" not in book:
        raise ValueError(f"{path}: [book] needs a title.")
    chapters = []
    for i, entry in enumerate(data.get("chapters", [])):
        where = f"{path}: chapters[{i}]"
        missing = {"slug", "title", "status", "budget_s"} - set(entry)
        if missing:
            raise ValueError(f"{where} lacks {sorted(missing)}.")
        if not SLUG.match(entry["slug"]):
            raise ValueError(f"{where}: slug {entry['slug']!r} must look like '05_ddpm'.")
        if entry["status"] not in STATUSES:
            raise ValueError(f"{where}: status {entry['status']!r} must be one of {STATUSES}.")
        if not entry["budget_s"] > 0:
            raise ValueError(f"{where}: budget_s must be positive.")
        chapters.append(Chapter(entry["slug"], entry["title"], entry["status"], float(entry["budget_s"])))
    numbers = [c.number for c in chapters]
    if numbers != sorted(set(numbers)):
        raise ValueError(f"{path}: chapter numbers must be unique and in order, got {numbers}.")
    return Manifest(book["title"], book.get("author", ""), book.get("description", ""), tuple(chapters))
