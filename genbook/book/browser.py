"""Check the rendered book in a real browser: ``python -m genbook.book.browser``.

Every page of ``_build/html`` is opened from ``file://`` in headless Chromium
(Debian's ``chromium``, driven by the PyPI package ``playwright``; no browser is
downloaded), each in a fresh browser context, as a first-time reader sees it.
A page fails when

- it logs a console error or throws an uncaught exception, or a file it needs
  (script, style sheet, font, image) does not load;
- it asks for anything on the network: the book must work offline;
- a formula is left untypeset: a math element without MathJax output, raw TeX
  (``$$``, ``\\(``, ``\\[``, ``\\begin{``, ``$...\\cmd...$``) in the visible text, or
  a MathJax error (``mjx-merror``), or an undefined macro (drawn in red by MathJax);
- an image does not load (``complete`` with a ``naturalWidth`` of 0);
- an element is wider than the text column (it spills out, or an ancestor cuts it off;
  an element that scrolls sideways inside a container that fits is fine);
- the visible text shows an absolute path of the build machine (the repository, the
  home folder, the book's build folder) or a ``file://`` URL;
- an internal link leads nowhere: the file does not exist, the ``#anchor`` is not
  an id on the target page, or the link leaves the book's folder.

A screenshot of each page is saved under ``_build/screenshots/``. The last line
printed is a summary (pages, formulas, images, links, seconds); the exit status
is 0 when the book is clean, 1 when it has problems (listed above the summary),
2 when the check could not run (no book, no Chromium, no playwright).

Chromium is looked for in ``$GENBOOK_CHROMIUM``, then ``/usr/bin/chromium``, then
the PATH (``sudo apt-get install chromium`` on Debian and Ubuntu).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..paths import REPO_ROOT, build_dir

# Without these flags Chromium keeps trying to reach Google's servers (see TOOLCHAIN-NOTES).
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 900}
REMOTE = re.compile(r"^(https?|wss?|ftp)://", re.I)


class BrowserUnavailable(RuntimeError):
    """Chromium or playwright is missing: the check cannot run (as opposed to finding problems)."""


def find_chromium() -> str | None:
    """Path of a Chromium executable, or None."""
    for candidate in (os.environ.get("GENBOOK_CHROMIUM"), "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium") or shutil.which("chromium-browser")


def browser_available() -> tuple[bool, str]:
    """(True, "") when the check can run here, else (False, why not and how to fix it)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False, ("the Python package playwright is missing: pip install -e '.[dev]' "
                       "(no `playwright install`: it drives the system's Chromium)")
    if find_chromium() is None:
        return False, "Chromium is missing: sudo apt-get install chromium (or set GENBOOK_CHROMIUM to its path)"
    return True, ""


# Runs in the page after its load event: waits for lazy images and MathJax, then reports what it finds.
INSPECT_JS = r"""
async (timeoutMs) => {
  const within = (promise) => Promise.race([promise, new Promise((r) => setTimeout(() => r("timed out"), timeoutMs))]);
  const images = Array.from(document.images);
  images.forEach((img) => { img.loading = "eager"; });
  await within(Promise.all(images.map((img) => img.decode().catch(() => null))));

  const mathElements = Array.from(document.querySelectorAll(".math, .MathJax_Preview, script[type^='math/tex']"));
  const mj = window.MathJax;
  let mathjax = mj === undefined ? "absent" : "present";
  if (mj && mj.startup && mj.startup.promise) {
    mathjax = (await within(mj.startup.promise.then(() => "ready", (e) => "failed: " + e))) || "ready";
  } else if (mj) {
    mathjax = "not started (window.MathJax is only a configuration)";
  }

  const snippet = (s) => s.replace(/\s+/g, " ").trim().slice(0, 80);
  const untypeset = mathElements.filter((el) => !el.querySelector("mjx-container"))
    .map((el) => snippet(el.textContent));
  const rawTex = [];
  const skip = "pre, code, script, style, textarea, kbd, samp, mjx-container, .highlight, [aria-hidden='true']";
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const tex = /\$\$|\\\(|\\\[|\\begin\{|\$[^$\s][^$]*?\\[A-Za-z]+[^$]*?\$/;
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!parent || parent.closest(skip) || !tex.test(node.textContent)) continue;
    if (parent.closest(".math")) continue;  // reported above when MathJax left it alone
    rawTex.push(snippet(node.textContent));
  }
  const errors = Array.from(document.querySelectorAll("mjx-merror")).map(
    (el) => el.getAttribute("data-mjx-error") || snippet(el.textContent));
  // MathJax's noundefined package draws an unknown macro as red text instead of failing.
  const undefinedMacros = Array.from(document.querySelectorAll("mjx-container mtext[mathcolor='red']")).map(
    (el) => el.textContent.trim()).filter((text) => /^\\[A-Za-z]+$/.test(text));  // (in the assistive MathML)

  // Elements wider than the text column: they spill out of it, or are cut off by an ancestor that clips.
  // An element inside a sideways scroller (overflow-x auto/scroll) that fits the column is fine.
  const column = ["article.bd-article", ".bd-article", "main", "body"].map((q) => document.querySelector(q))
    .find((el) => el);
  const columnRect = column.getBoundingClientRect();
  const overflows = [];
  const describe = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
    (el.classList.length ? "." + Array.from(el.classList).slice(0, 2).join(".") : "");
  const ignore = "aside, .margin, .sidebar, .marginnote, .headerlink, script, style, mjx-assistive-mml, " +
    ".visually-hidden";
  for (const el of column.querySelectorAll("*")) {
    if (el.closest(ignore)) continue;
    const rect = el.getBoundingClientRect();
    if (rect.width === 0 || rect.height === 0 || rect.right <= columnRect.right + 1) continue;
    const style = getComputedStyle(el);
    if (style.position === "fixed" || style.visibility === "hidden") continue;
    let verdict = "is wider than its column";
    for (let up = el.parentElement; up && up !== column; up = up.parentElement) {
      const o = getComputedStyle(up).overflowX;
      if (o === "auto" || o === "scroll") { verdict = null; break; }  // scrolls inside its container
      if (o === "hidden" || o === "clip") { verdict = "is cut off (wider than its column)"; break; }
    }
    if (verdict === null) continue;
    if (overflows.some((o) => o.el.contains(el))) continue;  // report the outermost offender only
    overflows.push({el, text: `${describe(el)} ${verdict}: ${Math.round(rect.width)} px wide, ends ` +
      `${Math.round(rect.right - columnRect.right)} px right of the ${Math.round(columnRect.width)} px column ` +
      `(${snippet(el.textContent || el.getAttribute("src") || "")})`});
  }

  // A table read sideways hides its last columns from the reader: a table must fit, even inside a scroller.
  for (const table of column.querySelectorAll("table")) {
    if (table.closest(ignore) || overflows.some((o) => o.el.contains(table))) continue;
    const width = table.getBoundingClientRect().width;
    let box = table.parentElement;
    while (box && box !== column && !["auto", "scroll"].includes(getComputedStyle(box).overflowX)) {
      box = box.parentElement;
    }
    if (box && box !== column && box.scrollWidth > box.clientWidth + 1) {
      overflows.push({el: table, text: `table must scroll sideways: ${Math.round(width)} px wide in a ` +
        `${box.clientWidth} px column (${snippet(table.textContent)})`});
    }
  }

  return {
    title: document.title,
    overflows: overflows.map((o) => o.text),
    text: document.body.innerText,
    mathjax,
    mathElements: mathElements.length,
    formulas: document.querySelectorAll("mjx-container").length,
    untypeset, rawTex, mathErrors: errors, undefinedMacros,
    images: images.map((img) => ({src: img.currentSrc || img.src || img.getAttribute("src") || "",
                                   complete: img.complete, width: img.naturalWidth})),
    links: Array.from(document.querySelectorAll("a[href]")).map((a) => ({raw: a.getAttribute("href"), url: a.href})),
    ids: Array.from(document.querySelectorAll("[id], a[name]")).map((el) => el.id || el.getAttribute("name")),
  };
}
"""


def default_machine_paths(html_dir: Path | None = None) -> list[str]:
    """Folders whose absolute paths must not appear in a page: the repository, the home folder, the book's folder."""
    candidates = [REPO_ROOT, Path.home()] + ([Path(html_dir).resolve().parent] if html_dir is not None else [])
    return sorted({str(p) for p in candidates if len(p.parts) > 1}, key=len, reverse=True)


def absolute_paths(text: str, machine_paths: list[str] | None = None) -> list[str]:
    """Absolute paths of the build machine in a page's visible text (each once, in order of appearance).

    A path counts when it starts with one of ``machine_paths`` (default: :func:`default_machine_paths`) followed by
    the end of the text or a character that cannot end a folder name, so ``/work/main`` does not match
    ``/work/mainframe``. Also caught: ``file://`` URLs.
    """
    roots = default_machine_paths() if machine_paths is None else machine_paths
    found: list[str] = []
    patterns = [re.escape(root.rstrip("/")) + r"(?![\w.-])[^\s'\"<>)\],]*" for root in roots if root.strip("/")]
    patterns.append(r"file://[^\s'\"<>)\],]+")
    for match in re.finditer("|".join(f"(?:{p})" for p in patterns), text):
        path = match.group(0).rstrip(".;:!?")
        if path not in found:
            found.append(path)
    return found


@dataclass
class PageResult:
    page: str  # path relative to the book's folder, e.g. "chapters/00_preface.html"
    problems: list[str] = field(default_factory=list)
    formulas: int = 0
    images: int = 0
    links: list[tuple[str, str]] = field(default_factory=list)  # (href as written, resolved URL)
    ids: set[str] = field(default_factory=set)
    screenshot: Path | None = None
    seconds: float = 0.0


@dataclass
class CheckReport:
    html_dir: Path
    pages: list[PageResult]
    seconds: float
    links_checked: int = 0

    def page(self, name: str) -> PageResult:
        for p in self.pages:
            if p.page == name:
                return p
        raise KeyError(f"{name} was not checked; pages: {[p.page for p in self.pages]}")

    @property
    def problems(self) -> list[str]:
        return [f"{p.page}: {problem}" for p in self.pages for problem in p.problems]

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        n = len(self.problems)
        counts = [_plural(len(self.pages), "page"), _plural(sum(p.formulas for p in self.pages), "formula"),
                  _plural(sum(p.images for p in self.pages), "image"),
                  _plural(self.links_checked, "internal link")]
        verdict = "no problems" if n == 0 else _plural(n, "problem")
        return f"browser check: {', '.join(counts)} checked in {self.seconds:.1f} s: {verdict}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def html_pages(html_dir: Path) -> list[Path]:
    """Every page of the book: the .html files outside Sphinx's own folders (``_static``, ``_sources``, ...)."""
    pages = []
    for path in sorted(html_dir.rglob("*.html")):
        rel = path.relative_to(html_dir)
        if not any(part.startswith(("_", ".")) for part in rel.parts):
            pages.append(path)
    return pages


def screenshot_name(rel: str) -> str:
    return rel.replace("/", "__").removesuffix(".html") + ".png"


def static_ids(path: Path) -> set[str]:
    """Ids of a page that was not opened in the browser (read from its HTML)."""
    text = path.read_text(encoding="utf8", errors="replace")
    return set(re.findall(r"""\s(?:id|name)=["']([^"']+)["']""", text))


def check_links(report: CheckReport) -> None:
    """Every link to a file:// URL must point inside the book, at an existing file, and at an existing id."""
    root = report.html_dir.resolve()
    ids = {(root / p.page).resolve(): p.ids for p in report.pages}
    checked = 0
    for page in report.pages:
        seen = set()
        for raw, url in page.links:
            parts = urlsplit(url)
            if parts.scheme != "file" or (raw, url) in seen:
                continue  # external links (https, mailto) are not followed: the check runs offline
            seen.add((raw, url))
            checked += 1
            target = Path(unquote(parts.path))
            if target.is_dir():
                target = target / "index.html"
            try:
                target.resolve().relative_to(root)
            except ValueError:
                page.problems.append(f"link {raw!r} leads outside the book ({target})")
                continue
            if not target.exists():
                page.problems.append(f"dead link {raw!r}: {target.relative_to(root)} does not exist")
                continue
            anchor = unquote(parts.fragment)
            if anchor and target.suffix == ".html":
                known = ids.get(target.resolve())
                if known is None:
                    known = ids.setdefault(target.resolve(), static_ids(target))
                if anchor not in known:
                    page.problems.append(f"dead link {raw!r}: no id {anchor!r} on {target.relative_to(root)}")
    report.links_checked = checked


async def check_page(browser, path: Path, html_dir: Path, screenshot_dir: Path | None, timeout_s: float,
                     full_page: bool, machine_paths: list[str] | None = None) -> PageResult:
    """Open one page in a fresh context (no localStorage or cache from other pages) and inspect it."""
    rel = path.relative_to(html_dir).as_posix()
    result = PageResult(rel)
    started = time.perf_counter()
    context = await browser.new_context(viewport=VIEWPORT, service_workers="block")
    await context.route(REMOTE, lambda route: route.abort())  # offline: fail fast, reported by on_request
    page = await context.new_page()
    root = html_dir.resolve().as_uri() + "/"

    def on_console(msg):
        if msg.type == "error":
            where = msg.location.get("url", "") if isinstance(msg.location, dict) else ""
            where = f" ({where.removeprefix(root)})" if where else ""
            result.problems.append(f"console error: {msg.text}{where}")

    def on_request(request):
        if REMOTE.match(request.url):
            result.problems.append(f"asks the network for {request.url} (the book must work offline)")

    def on_failed(request):
        if not REMOTE.match(request.url):
            result.problems.append(f"could not load {request.url.removeprefix(root)}: {request.failure}")

    page.on("console", on_console)
    page.on("pageerror", lambda err: result.problems.append(f"uncaught JavaScript error: {err}"))
    page.on("request", on_request)
    page.on("requestfailed", on_failed)
    try:
        await page.goto(path.resolve().as_uri(), wait_until="load", timeout=timeout_s * 1000)
        found = await page.evaluate(INSPECT_JS, timeout_s * 1000 / 2)
        if screenshot_dir is not None:
            result.screenshot = screenshot_dir / screenshot_name(rel)
            await page.screenshot(path=str(result.screenshot), full_page=full_page)
    except Exception as err:  # a timeout or a crashed page is a problem of this page, not of the checker
        result.problems.append(f"did not load: {type(err).__name__}: {str(err).splitlines()[0]}")
        return result
    finally:
        await context.close()
        result.seconds = time.perf_counter() - started

    result.formulas = found["formulas"]
    result.images = len(found["images"])
    result.links = [(link["raw"], link["url"]) for link in found["links"]]
    result.ids = set(found["ids"])
    if found["mathElements"] and found["mathjax"] != "ready":
        result.problems.append(f"{found['mathElements']} math elements but MathJax is {found['mathjax']}")
    for text in found["untypeset"][:5]:
        result.problems.append(f"formula left untypeset: {text!r}")
    for text in found["rawTex"][:5]:
        result.problems.append(f"raw TeX in the text: {text!r}")
    for text in found["mathErrors"][:5]:
        result.problems.append(f"MathJax error: {text!r}")
    for text in found["undefinedMacros"][:5]:
        result.problems.append(f"undefined TeX macro: {text!r}")
    for text in found["overflows"][:5]:
        result.problems.append(f"overflow: {text}")
    if len(found["overflows"]) > 5:
        result.problems.append(f"overflow: {len(found['overflows']) - 5} more elements wider than the column")
    for path in absolute_paths(found["text"], machine_paths)[:5]:
        result.problems.append(f"absolute path of the build machine in the page: {path!r}")
    for img in found["images"]:
        if not img["complete"] or img["width"] == 0:
            result.problems.append(f"image does not load: {img['src'].removeprefix(root) or '(no src)'}")
    return result


async def _check_pages(pages: list[Path], html_dir: Path, screenshot_dir: Path | None, timeout_s: float,
                       full_page: bool, workers: int, machine_paths: list[str] | None = None) -> list[PageResult]:
    from playwright.async_api import async_playwright

    slots = asyncio.Semaphore(workers)

    async def one(browser, path):
        async with slots:
            return await check_page(browser, path, html_dir, screenshot_dir, timeout_s, full_page, machine_paths)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=find_chromium(), headless=True, args=CHROMIUM_ARGS)
        try:
            return list(await asyncio.gather(*(one(browser, path) for path in pages)))
        finally:
            await browser.close()


def check_site(html_dir: Path, screenshot_dir: Path | None = None, pages: list[Path] | None = None,
               timeout_s: float = 30.0, full_page: bool = True, workers: int = 2,
               machine_paths: list[str] | None = None) -> CheckReport:
    """Open every page of ``html_dir`` in headless Chromium and collect its problems.

    ``machine_paths``: folders of the build machine no page may show (default: :func:`default_machine_paths`).

    ``workers`` pages are open at a time, each in its own browser context.
    Raises BrowserUnavailable when Chromium or playwright is missing.
    """
    available, why = browser_available()
    if not available:
        raise BrowserUnavailable(why)
    html_dir = Path(html_dir)
    pages = html_pages(html_dir) if pages is None else pages
    if not pages:
        raise FileNotFoundError(f"no HTML pages under {html_dir}: build the book first (make book)")
    if screenshot_dir is not None:
        shutil.rmtree(screenshot_dir, ignore_errors=True)
        screenshot_dir.mkdir(parents=True)
    started = time.perf_counter()
    machine_paths = default_machine_paths(html_dir) if machine_paths is None else machine_paths
    results = asyncio.run(_check_pages(pages, html_dir, screenshot_dir, timeout_s, full_page, workers,
                                       machine_paths))
    report = CheckReport(html_dir, results, 0.0)
    check_links(report)
    report.seconds = time.perf_counter() - started
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check every page of the rendered book in headless Chromium.")
    parser.add_argument("--html", type=Path, default=None, help="the rendered book (default: _build/html)")
    parser.add_argument("--screenshots", type=Path, default=None, help="where to save screenshots "
                        "(default: _build/screenshots)")
    parser.add_argument("--no-screenshots", action="store_true")
    parser.add_argument("--viewport-only", action="store_true", help="screenshot the first screen, not the page")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds a page may take to load and typeset")
    parser.add_argument("--workers", type=int, default=2, help="pages open at a time")
    args = parser.parse_args(argv)
    html_dir = args.html or build_dir() / "html"
    shots = None if args.no_screenshots else (args.screenshots or build_dir() / "screenshots")
    if not (html_dir / "index.html").exists():
        print(f"browser check: {html_dir}/index.html is missing: build the book first (make book)", file=sys.stderr)
        return 2
    try:
        report = check_site(html_dir, shots, timeout_s=args.timeout, full_page=not args.viewport_only,
                            workers=args.workers)
    except BrowserUnavailable as err:
        print(f"browser check: cannot run: {err}", file=sys.stderr)
        return 2
    for page in report.pages:
        status = "ok  " if not page.problems else "FAIL"
        print(f"{status} {page.page:<40} {page.formulas:>4} formulas {page.images:>3} images "
              f"{len(page.links):>4} links  {page.seconds:4.1f} s")
        for problem in page.problems:
            print(f"       - {problem}")
    if shots is not None:
        print(f"screenshots: {shots}")
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
