"""The browser check opens every page of the rendered book in headless Chromium and catches what readers would see:
console errors, untypeset formulas, broken images, dead internal links, requests to the network.

The negative tests run the checker on small synthetic sites, one fault per page (part of `make test`). The tests
of the real book are marked `book`: `make check-book` runs them after `make book` (CI does), and they fail when
`_build/html` is missing or older than the chapters and the renderer. Without Chromium or playwright the tests
skip, except in CI (`CI` set), where they fail: CI installs Chromium to run them.
"""

import importlib
import os
import shutil
from pathlib import Path

import nbformat
import pytest

from genbook.book.browser import browser_available, check_site, main
from genbook.book.build import downloads
from genbook.book.manifest import load_manifest
from genbook.paths import REPO_ROOT, build_dir

AVAILABLE, WHY = browser_available()
if not AVAILABLE:
    if os.environ.get("CI"):
        raise RuntimeError(f"CI must run the browser check, but {WHY}")  # fail loudly at collection
    pytest.skip(f"browser check cannot run here: {WHY}", allow_module_level=True)



def mathjax_dir() -> Path:
    """The offline MathJax that sphinx-mathjax-offline ships (the same files the book uses)."""
    package = importlib.import_module("sphinx-mathjax-offline")  # the package's folder name has hyphens
    root = Path(package.__file__).parent
    found = sorted(root.rglob("tex-chtml.js"))
    assert found, f"no tex-chtml.js under {root}"
    return found[0].parent


PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title}</title>{head}</head>
<body><h1 id="top">{title}</h1>{body}</body></html>"""

PNG_1x1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201a5d3c1a40000000049454e44ae426082"
)


# A 600 px text column, as the book's theme has one (about 690 px at a 1280 px window).
COLUMN = "<style>main { width: 600px; margin: 0 auto; }</style>"
MACHINE_ROOT = "/home/builder/src/genbook"  # an absolute path of a "build machine" the pages must not show


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A tiny site: one good page and one page per fault the checker must catch."""
    site = tmp_path_factory.mktemp("site")
    shutil.copytree(mathjax_dir(), site / "mathjax")
    (site / "dot.png").write_bytes(PNG_1x1)
    mathjax = ('<script>window.MathJax = {options: {processHtmlClass: "math"}}</script>'
               '<script defer src="mathjax/tex-chtml.js"></script>')
    pages = {
        "index.html": ("Good", mathjax,
                       '<p>Inline <span class="math">\\(\\sum_k \\pi_k\\)</span>.</p>'
                       '<div class="math">\\[p(x) = \\frac{1}{Z} e^{-E(x)}\\]</div>'
                       '<img src="dot.png" alt="dot"> <a href="other.html#section">other</a> '
                       '<a href="#top">top</a> <a href="https://example.org/">outside</a>'),
        "other.html": ("Other", "", '<h2 id="section">Section</h2><a href="index.html">home</a>'),
        "broken_image.html": ("Broken image", "", '<img src="missing.png" alt="missing">'),
        "dead_link.html": ("Dead links", "", '<a href="nowhere.html">a</a> <a href="other.html#no-such-id">b</a>'),
        "console_error.html": ("Console error", "", '<script>console.error("boom from the page")</script>'),
        "uncaught.html": ("Uncaught", "", '<script>null.property</script>'),
        "untypeset.html": ("Untypeset", "", '<p>No MathJax here: <span class="math">\\(x^2\\)</span></p>'),
        "raw_tex.html": ("Raw TeX", mathjax, "<p>A formula MyST did not parse: $\\alpha + \\beta$.</p>"),
        "tex_error.html": ("TeX error", mathjax, '<p><span class="math">\\(\\frac{1}\\)</span></p>'),
        "undefined_macro.html": ("Undefined macro", mathjax, '<p><span class="math">\\(\\notamacro{x}\\)</span></p>'),
        "remote.html": ("Remote", "", '<img src="https://example.org/logo.png" alt="remote">'),
        "wide.html": ("Wide", "", COLUMN + '<main><table><tr><td><span style="display: inline-block; '
                      'width: 900px">a wide cell</span></td></tr></table></main>'),
        "cut_off.html": ("Cut off", "", COLUMN + '<main><div style="overflow: hidden"><pre style="width: 1000px">'
                         'a long code line</pre></div></main>'),
        "scrolls.html": ("Scrolls", "", COLUMN + '<main><div style="overflow-x: auto"><div style="width: 1200px">'
                         'a wide equation that scrolls inside the column</div></div><p>fits</p></main>'),
        "table_scrolls.html": ("Table scrolls", "", COLUMN + '<main><div style="overflow-x: auto"><table><tr><td>'
                               '<span style="display: inline-block; width: 900px">run</span></td></tr></table></div>'
                               '</main>'),
        "machine_path.html": ("Machine path", "", '<pre>trained -> {root}/data/checkpoints/00_preface.pt</pre>'),
    }
    for name, (title, head, body) in pages.items():
        (site / name).write_text(PAGE.format(title=title, head=head, body=body.replace("{root}", MACHINE_ROOT)))
    # screenshots: see test_summary_and_exit_status
    report = check_site(site, screenshot_dir=None, timeout_s=20, machine_paths=[MACHINE_ROOT])
    return site, report


def test_a_good_page_passes(synthetic):
    _, report = synthetic
    good = report.page("index.html")
    assert good.problems == [], good.problems
    assert good.formulas == 2 and good.images == 1
    assert report.page("other.html").problems == []


@pytest.mark.parametrize("page, expected", [
    ("broken_image.html", ["image does not load: missing.png"]),
    ("dead_link.html", ["dead link 'nowhere.html'", "dead link 'other.html#no-such-id': no id 'no-such-id'"]),
    ("console_error.html", ["console error: boom from the page"]),
    ("uncaught.html", ["uncaught JavaScript error"]),
    ("untypeset.html", ["formula left untypeset: '\\\\(x^2\\\\)'"]),
    ("raw_tex.html", ["raw TeX in the text"]),
    ("tex_error.html", ["MathJax error: 'Missing argument for \\\\frac'"]),
    ("undefined_macro.html", ["undefined TeX macro: '\\\\notamacro'"]),
    ("remote.html", ["asks the network for https://example.org/logo.png", "image does not load"]),
    ("wide.html", ["overflow: table is wider than its column: "]),
    ("cut_off.html", ["overflow: pre is cut off (wider than its column)"]),
    ("table_scrolls.html", ["overflow: table must scroll sideways: 9"]),
    ("machine_path.html", ["absolute path of the build machine in the page: "
                           "'/home/builder/src/genbook/data/checkpoints/00_preface.pt'"]),
])
def test_each_fault_is_caught(synthetic, page, expected):
    _, report = synthetic
    problems = report.page(page).problems
    for text in expected:
        assert any(text in p for p in problems), f"{page}: expected {text!r} among {problems}"


def test_content_that_scrolls_inside_the_column_passes(synthetic):
    _, report = synthetic
    assert report.page("scrolls.html").problems == []
    assert len(report.page("wide.html").problems) == 1  # the outermost offender only, not each cell inside it


@pytest.mark.parametrize("text, found", [
    ("saved -> /home/builder/src/genbook/data/x.pt.", ["/home/builder/src/genbook/data/x.pt"]),
    ("see file:///tmp/book/index.html; then", ["file:///tmp/book/index.html"]),
    ("saved -> data/checkpoints/x.pt", []),
    ("/home/builder/src/genbookish/x", []),  # another folder that merely starts the same way
])
def test_absolute_path_detection(text, found):
    from genbook.book.browser import absolute_paths

    assert absolute_paths(text, [MACHINE_ROOT]) == found


def test_summary_and_exit_status(synthetic, tmp_path, capsys):
    _, report = synthetic
    assert not report.ok and report.summary().startswith("browser check: 16 pages, 4 formulas, 3 images, ")
    assert report.summary().endswith(f"{len(report.problems)} problems")
    site = tmp_path / "html"
    site.mkdir()
    (site / "index.html").write_text(PAGE.format(title="Home", head="", body='<a href="gone.html">gone</a>'))
    (site / "here.html").write_text(PAGE.format(title="Here", head="", body='<a href="index.html#top">home</a>'))
    assert main(["--html", str(site), "--screenshots", str(tmp_path / "shots")]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("ok   here.html") and out[1].startswith("FAIL index.html")
    assert "dead link 'gone.html'" in out[2]
    assert out[-1].startswith("browser check: 2 pages, 0 formulas, 0 images, 2 internal links checked in ")
    assert out[-1].endswith(": 1 problem")
    assert sorted(p.name for p in (tmp_path / "shots").iterdir()) == ["here.png", "index.png"]
    assert min(p.stat().st_size for p in (tmp_path / "shots").iterdir()) > 1000
    assert main(["--html", str(tmp_path / "no-such-book")]) == 2


# --- the real book ---------------------------------------------------------------------------------------------

def book_inputs() -> list[Path]:
    """What the rendered book is made of: a newer file means _build/html is stale."""
    chapters = [c.path for c in load_manifest().written()]
    renderer = [REPO_ROOT / "book.toml"] + [REPO_ROOT / "genbook" / "book" / f"{name}.py" for name in
                                           ("build", "conf", "execution", "manifest", "student")]
    renderer.append(REPO_ROOT / "genbook" / "book" / "static" / "genbook.css")
    return chapters + renderer


@pytest.fixture(scope="module")
def book():
    html = build_dir() / "html"
    index = html / "index.html"
    if not index.exists():
        pytest.fail("no rendered book in _build/html: run `make book` first (`make check-book` runs these tests)")
    stale = [p.name for p in book_inputs() if p.stat().st_mtime > index.stat().st_mtime]
    if stale:
        pytest.fail(f"_build/html is older than {stale}: run `make book` again")
    return html


@pytest.fixture(scope="module")
def book_report(book):
    return check_site(book, screenshot_dir=build_dir() / "screenshots")


@pytest.mark.book
def test_the_rendered_book_passes(book, book_report):
    assert book_report.ok, "\n".join(book_report.problems)
    pages = {p.page for p in book_report.pages}
    expected = {"index.html", "results.html"} | {f"chapters/{c.slug}.html" for c in load_manifest().written()}
    assert expected <= pages, f"pages missing from the check: {expected - pages}"
    assert book_report.links_checked > 10
    for page in book_report.pages:
        assert page.screenshot is not None and page.screenshot.exists(), page.page


@pytest.mark.book
def test_no_page_is_wider_than_its_column_or_shows_a_machine_path(book, book_report):
    """Issue 22's bars, stated on their own (test_the_rendered_book_passes also fails on them)."""
    wide = [p for p in book_report.problems if ": overflow: " in p]
    assert not wide, "\n".join(wide)
    shown = [p for p in book_report.problems if "absolute path of the build machine" in p]
    assert not shown, "\n".join(shown)
    from genbook.book.browser import absolute_paths, default_machine_paths

    leaks = {page.relative_to(book).as_posix(): absolute_paths(page.read_text(errors="replace"),
                                                               default_machine_paths(book))
             for page in book.rglob("*.html")}
    assert not {k: v for k, v in leaks.items() if v}, leaks


@pytest.mark.book
def test_the_preface_has_typeset_math_and_its_figure(book_report):
    preface = book_report.page("chapters/00_preface.html")
    assert preface.formulas >= 5, "the preface's formulas were not typeset"
    assert preface.images >= 1, "the preface's figure is missing"


@pytest.mark.book
def test_the_results_page_has_a_row_for_every_chapter(book, book_report):
    results = book_report.page("results.html")
    hrefs = {raw for raw, _ in results.links}
    html = (book / "results.html").read_text()
    assert "<table" in html and "results_fd.png" in html  # per-chapter blocks and the FD figure
    for chapter in load_manifest().written():
        assert f"chapters/{chapter.slug}.html" in hrefs, f"results.html has no row for {chapter.slug}"


@pytest.mark.book
def test_every_chapter_page_offers_both_notebooks_and_the_source(book, book_report):
    index = book_report.page("index.html")
    for chapter in load_manifest().written():
        page = book_report.page(f"chapters/{chapter.slug}.html")
        hrefs = {raw for raw, _ in page.links}
        index_hrefs = {raw for raw, _ in index.links}
        for url in downloads(chapter.slug).values():
            assert f"../{url}" in hrefs, f"{page.page} lacks a download link to {url}"
            assert url in index_hrefs, f"the index lacks a download link to {url}"
            assert (book / url).is_file(), f"{url} is not in the built book"
        student = nbformat.read(book / downloads(chapter.slug)[".ipynb (student edition)"], as_version=4)
        instructor = nbformat.read(book / downloads(chapter.slug)[".ipynb"], as_version=4)
        assert student.metadata["genbook"]["edition"] == "student"
        assert "BEGIN SOLUTION" not in "".join(c.source for c in student.cells if c.cell_type == "code")
        if any("BEGIN SOLUTION" in c.source for c in instructor.cells):
            assert "raise NotImplementedError(" in "".join(c.source for c in student.cells)
