"""The results page: one row per chapter, in the book's order, from `_build/results/*.json`, rendered as a table."""

import json
import re
from html.parser import HTMLParser

import pytest

from genbook.book.build import results_page
from genbook.book.manifest import load_manifest

BOOK = """
[book]
title = "A test book"

[[chapters]]
slug = "00_intro"
title = "Introduction"
status = "written"
budget_s = 30

[[chapters]]
slug = "01_waiting"
title = "Not run yet"
status = "written"
budget_s = 60

[[chapters]]
slug = "02_slow"
title = "A slow | chapter"
status = "written"
budget_s = 10

[[chapters]]
slug = "03_later"
title = "Planned"
status = "planned"
budget_s = 10
"""


def record(chapter, wall, profile="fast", **extra):
    return {"chapter": chapter, "profile": profile, "wall_s": wall, "metrics": {"fd": 12.3456, "acc|top1": 0.91},
            "baselines": {"pca_fd": 45.6}, "device": "cpu", "torch": "2.13.0+cpu", "machine": "x86_64, 2 cpus",
            "finished": "2026-01-02T03:04:05", **extra}


@pytest.fixture
def page(tmp_path, monkeypatch):
    monkeypatch.setenv("GENBOOK_BUILD", str(tmp_path / "build"))
    results = tmp_path / "build" / "results"
    results.mkdir(parents=True)
    for r in [record("00_intro", 12.0, n_samples=1000), record("02_slow", 25.5), record("03_later", 1.0),
              record("99_removed", 3.0, profile="full")]:
        (results / f"{r['chapter']}.json").write_text(json.dumps(r))
    (tmp_path / "book.toml").write_text(BOOK)
    return results_page(load_manifest(tmp_path / "book.toml"))


class Table(HTMLParser):
    """The cells of the first table in an HTML document, as text."""

    def __init__(self):
        super().__init__()
        self.rows, self.cell, self.in_table = [], None, False

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.in_table = True
        elif tag == "tr" and self.in_table:
            self.rows.append([])
        elif tag in ("td", "th") and self.in_table:
            self.cell = ""
        elif tag == "br" and self.cell is not None:
            self.cell += " / "

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(re.sub(r"\s+", " ", self.cell).strip())
            self.cell = None
        elif tag == "table":
            self.in_table = False

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def render(markdown: str) -> list[list[str]]:
    """The page through MyST (the parser the book uses) to HTML, and back to a table of text cells."""
    from docutils.core import publish_string
    from myst_parser.docutils_ import Parser

    html = publish_string(markdown, parser=Parser(), writer="html5",
                          settings_overrides={"output_encoding": "unicode", "report_level": 4,
                                              "myst_all_links_external": True})
    table = Table()
    table.feed(html)
    return table.rows


def test_rows_follow_the_book_and_say_what_is_missing(page):
    rows = render(page)
    assert rows[0] == ["chapter", "metrics", "baselines", "wall / budget (s)", "run"]
    names = [r[0] for r in rows[1:]]
    assert names == ["00. Introduction", "01. Not run yet", "02. A slow | chapter", "03. Planned (planned)",
                     "99_removed (not in the book)"]
    assert all(len(r) == 5 for r in rows), rows  # escaped pipes did not split a cell
    assert "not run yet (make test)" in rows[2][1]


def test_numbers_baselines_budget_and_run(page):
    intro, slow, removed = render(page)[1], render(page)[3], render(page)[5]
    assert intro[1] == "fd = 12.35 / acc|top1 = 0.91" and intro[2] == "pca_fd = 45.6"
    assert intro[3] == "12.0 / 30" and intro[4] == "fast / cpu / 2026-01-02 03:04:05 / n_samples = 1000"
    assert slow[3] == "25.5 (over) / 10"  # over its fast-profile budget
    assert removed[3] == "3.0 / –"  # budgets are for the fast profile only
    assert "[00. Introduction](chapters/00_intro)" in page  # rows link to the chapters' pages
    assert page.rstrip().endswith("Measured on: x86_64, 2 cpus, torch 2.13.0+cpu.")


def test_no_results_at_all(tmp_path, monkeypatch):
    monkeypatch.setenv("GENBOOK_BUILD", str(tmp_path / "build"))
    (tmp_path / "book.toml").write_text(BOOK)
    rows = render(results_page(load_manifest(tmp_path / "book.toml")))
    assert [r[0] for r in rows[1:]] == ["00. Introduction", "01. Not run yet", "02. A slow | chapter"]
    assert all("not run yet" in r[1] for r in rows[1:])


def test_the_book_has_a_row_for_every_written_chapter():
    page = results_page(load_manifest())
    for chapter in load_manifest().written():
        assert f"](chapters/{chapter.slug})" in page
