"""Render the online book: ``python -m genbook.book.build`` (what ``make book`` runs).

1. Assemble ``_build/src``: ``index.md`` (title, description, contents from
   book.toml, with a table of downloads), the written chapters, ``results.md`` (every
   chapter's reported metrics from ``_build/results/*.json``), and ``_extra/downloads/``:
   each chapter as ``.ipynb`` in both editions (instructor: the chapter itself;
   student: solutions replaced by stubs, see genbook/book/student.py), served at
   ``downloads/`` next to the chapter's ``.py`` source in ``_sources/``.
2. Run Sphinx with the configuration in ``genbook/book/conf.py`` into ``_build/html``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from ..paths import REPO_ROOT, build_dir
from ..report import load_results
from .manifest import Manifest, load_manifest

DOWNLOADS = "_extra/downloads"  # under _build/src; conf.py copies _extra/ to the root of the site


def downloads(slug: str) -> dict[str, str]:
    """What a reader can download for a chapter: label -> URL relative to the site's root."""
    return {
        ".ipynb": f"downloads/{slug}.ipynb",
        ".ipynb (student edition)": f"downloads/{slug}-student.ipynb",
        ".py": f"_sources/chapters/{slug}.py",
    }


def index_page(manifest: Manifest) -> str:
    written = manifest.written()
    lines = [f"# {manifest.title}", "", manifest.description, "", "## Contents", ""]
    for c in manifest.chapters:
        entry = f"[{c.title}](chapters/{c.slug})" if c.status == "written" else f"{c.title} *(planned)*"
        lines.append(f"{c.number:02d}. {entry}")
    lines += ["", "See also the [results of every chapter](results).", ""]
    if written:
        lines += [
            "## Downloads", "",
            "Every chapter as a notebook to run yourself: the chapter itself with the exercises' solutions "
            "(`.ipynb`), the student edition for course labs, in which each solution is a stub and the checks "
            "stay (`.ipynb (student edition)`), and the chapter's source, a jupytext percent file (`.py`). "
            "Each chapter's page offers the same downloads under its download button.", "",
            "| chapter | " + " | ".join(downloads("x")) + " |",
            "|---" * (1 + len(downloads("x"))) + "|",
        ]
        for c in written:
            links = " | ".join(f'<a href="{url}" download>{url.rsplit("/", 1)[-1]}</a>'
                               for url in downloads(c.slug).values())
            lines.append(f"| {c.number:02d}. {c.title} | {links} |")
        lines.append("")
    lines += ["```{toctree}", ":hidden:", ":maxdepth: 2", ""]
    lines += [f"chapters/{c.slug}" for c in written] + ["results", "```", ""]
    return "\n".join(lines)


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _numbers(values: dict | None) -> str:
    if not values:
        return "–"
    return "<br>".join(f"`{_cell(k)}` = {_value(v)}" for k, v in values.items())


def _value(v) -> str:
    return f"{v:.4g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else _cell(v)


STANDARD_KEYS = {"chapter", "profile", "wall_s", "metrics", "baselines", "timings", "device", "torch", "machine",
                 "finished"}


def results_page(manifest: Manifest) -> str:
    """The book's results page: one row per chapter from ``_build/results/*.json``, in the book's order.

    Written chapters without a result yet get a row that says so; results of chapters the manifest does
    not list (renamed, removed) come last, marked. Wall times are compared with the fast-profile budget.
    """
    results = {r.get("chapter", "?"): r for r in load_results()}
    known = {c.slug: c for c in manifest.chapters}
    lines = [
        "# Results", "",
        "What every written chapter achieved in its last run: the metrics it reports, the baselines it was "
        "compared with in the same run and on the same data, its wall time against its budget (with the "
        "speeds it measured, which depend on the machine, under it; budgets are "
        "for the `fast` profile on a 2-core CPU), and the profile and device it ran with. The numbers come "
        "from `_build/results/<chapter>.json`, which each chapter writes with `genbook.report` when it runs "
        "(`make test`, `make bench`).", "",
        "| chapter | metrics | baselines | wall / budget (s) | run |",
        "|---|---|---|---|---|",
    ]
    slugs = [c.slug for c in manifest.written()]
    slugs += [s for s in results if s not in slugs]
    for slug in slugs:
        chapter = known.get(slug)
        if chapter is None:
            name = f"{_cell(slug)} *(not in the book)*"
        elif chapter.status == "written":
            name = f"[{chapter.number:02d}. {_cell(chapter.title)}](chapters/{slug})"
        else:
            name = f"{chapter.number:02d}. {_cell(chapter.title)} *(planned)*"
        r = results.get(slug)
        if r is None:
            lines.append(f"| {name} | *not run yet (`make test`)* | | | |")
            continue
        wall, profile = r.get("wall_s"), r.get("profile", "?")
        budget = chapter.budget_s if chapter and profile == "fast" else None
        wall_text = "–" if wall is None else f"{wall:.1f}"
        if wall is not None and budget is not None and wall > budget:
            wall_text = f"**{wall_text}** (over)"
        wall_text += " / –" if budget is None else f" / {budget:.0f}"
        if r.get("timings"):  # machine-dependent speeds, kept apart from the reproducible metrics
            wall_text += "<br>" + _numbers(r["timings"])
        run = [f"`{_cell(profile)}`", _cell(r.get("device", "?")), _cell(str(r.get("finished", "")).replace("T", " "))]
        run += [f"{_cell(k)} = {_value(v)}" for k, v in r.items() if k not in STANDARD_KEYS]
        lines.append(f"| {name} | {_numbers(r.get('metrics'))} | {_numbers(r.get('baselines'))} | {wall_text} | "
                     f"{'<br>'.join(x for x in run if x)} |")
    if not slugs:
        lines.append("| (no chapters written yet) | | | | |")
    machines = sorted({f"{r.get('machine', '?')}, torch {r.get('torch', '?')}" for r in results.values()})
    if machines:
        lines += ["", "Measured on: " + "; ".join(_cell(m) for m in machines) + "."]
    return "\n".join(lines) + "\n"


def write_downloads(manifest: Manifest, src: Path) -> None:
    """Both editions of every written chapter as .ipynb, served at ``downloads/`` (the .py is in ``_sources``)."""
    from .student import instructor_notebook, student_notebook, write_notebook

    folder = src / DOWNLOADS
    for chapter in manifest.written():
        write_notebook(instructor_notebook(chapter.path), folder / f"{chapter.slug}.ipynb")
        write_notebook(student_notebook(chapter.path, chapter.title), folder / f"{chapter.slug}-student.ipynb")


def assemble(manifest: Manifest, src: Path) -> None:
    if src.exists():
        shutil.rmtree(src)
    (src / "chapters").mkdir(parents=True)
    (src / "index.md").write_text(index_page(manifest))
    (src / "results.md").write_text(results_page(manifest))
    for chapter in manifest.written():
        if not chapter.path.exists():
            raise FileNotFoundError(f"book.toml marks {chapter.slug} as written but {chapter.path} does not exist.")
        shutil.copy2(chapter.path, src / "chapters" / chapter.path.name)
    write_downloads(manifest, src)


def main() -> int:
    manifest = load_manifest()
    src, out = build_dir() / "src", build_dir() / "html"
    assemble(manifest, src)
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-c", str(REPO_ROOT / "genbook" / "book"),
           "--keep-going", str(src), str(out)]
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
