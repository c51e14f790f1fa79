"""The results page: one block per chapter, in the book's order, from `_build/results/*.json`, and the FD figure."""

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
    for r in [record("00_intro", 12.0, n_samples=1000, retrained=False),
              record("02_slow", 25.5, retrained=True, bars={"fd below pca": True, "beats blur": False}),
              record("03_later", 1.0),
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


def headings(markdown: str) -> list[str]:
    return [line[3:] for line in markdown.splitlines() if line.startswith("## ")]


def block(markdown: str, heading_start: str) -> str:
    """The text of one chapter's block: from its heading to the next."""
    parts = re.split(r"^## ", markdown, flags=re.M)
    return next(p for p in parts if p.startswith(heading_start))


def test_one_block_per_chapter_in_the_book_s_order(page):
    assert headings(page) == ["[00. Introduction](chapters/00_intro)", "[01. Not run yet](chapters/01_waiting)",
                              "[02. A slow | chapter](chapters/02_slow)", "03. Planned *(planned)*",
                              "99_removed *(not in the book)*"]
    assert "Not run yet (`make test`)" in block(page, "[01.")


def test_a_block_reads_metric_value_and_ratio_to_each_baseline_of_its_kind(page):
    rows = render(block(page, "[00."))
    assert rows[0] == ["metric", "value", "compared with the baselines (ratio)"]
    fd = next(r for r in rows if r[0] == "fd")
    assert fd[1] == "12.35" and fd[2] == f"{12.3456 / 45.6:.2f}× pca_fd"
    assert next(r for r in rows if r[0] == "acc|top1")[2] == ""  # no accuracy baseline: no ratio
    assert all(len(r) == 3 for r in rows), rows  # escaped pipes did not split a cell


def test_budget_trained_or_loaded_and_bars(page):
    intro, slow, removed = block(page, "[00."), block(page, "[02."), block(page, "99_")
    assert "wall time 12.0 s of a 30 s budget;" in intro and "models loaded from cache" in intro
    assert "of a 10 s budget (**over**)" in slow and "trained in this run" in slow
    assert "wall time 3.0 s;" in removed and "not recorded" in removed  # budgets are for the fast profile only
    assert "✓ every bar the chapter asserts held" in intro
    assert "✓ fd below pca" in slow and "✗ beats blur" in slow
    assert "`n_samples` = 1000" in intro
    assert page.rstrip().endswith("Measured on: x86_64, 2 cpus, torch 2.13.0+cpu.")


def test_the_fd_figure_compares_every_image_model_with_its_baselines(tmp_path, monkeypatch):
    monkeypatch.setenv("GENBOOK_BUILD", str(tmp_path / "build"))
    results = tmp_path / "build" / "results"
    results.mkdir(parents=True)
    for slug, fd in [("00_intro", 60.0), ("02_slow", 300.0)]:
        r = record(slug, 1.0)
        r["metrics"] = {"fd_sampler_a": fd, "fd_sampler_b": fd + 10, "fd_ci": 5.0, "fd_reconstructions": 1.0}
        r["baselines"] = {"fd_real_vs_real": 6.0, "fd_blurred": 72.0, "fd_pca_gaussian": 166.0}
        (results / f"{slug}.json").write_text(json.dumps(r))
    (tmp_path / "book.toml").write_text(BOOK)
    figure = tmp_path / "src" / "results_fd.png"
    markdown = results_page(load_manifest(tmp_path / "book.toml"), figure=figure)
    assert figure.stat().st_size > 5000 and figure.read_bytes()[:4] == b"\x89PNG"
    assert "```{figure} results_fd.png" in markdown
    from genbook.book.build import best_fd

    assert best_fd(json.loads((results / "00_intro.json").read_text())) == ("fd_sampler_a", 60.0)
    assert best_fd(record("00_intro", 1.0)) is None  # no protocol baselines: not an image chapter


def test_no_results_at_all(tmp_path, monkeypatch):
    monkeypatch.setenv("GENBOOK_BUILD", str(tmp_path / "build"))
    (tmp_path / "book.toml").write_text(BOOK)
    figure = tmp_path / "fd.png"
    page = results_page(load_manifest(tmp_path / "book.toml"), figure=figure)
    assert len(headings(page)) == 3 and page.count("Not run yet (`make test`)") == 3
    assert not figure.exists() and "{figure}" not in page


def test_the_book_has_a_block_for_every_written_chapter():
    page = results_page(load_manifest())
    for chapter in load_manifest().written():
        assert f"](chapters/{chapter.slug})" in page
