"""Render the online book: ``python -m genbook.book.build`` (what ``make book`` runs).

1. Assemble ``_build/src``: ``index.md`` (title, description, contents from
   book.toml), the written chapters, and ``results.md`` (every chapter's reported
   metrics from ``_build/results/*.json``).
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


def index_page(manifest: Manifest) -> str:
    written = manifest.written()
    lines = [f"# {manifest.title}", "", manifest.description, "", "## Contents", ""]
    for c in manifest.chapters:
        entry = f"[{c.title}](chapters/{c.slug})" if c.status == "written" else f"{c.title} *(planned)*"
        lines.append(f"{c.number:02d}. {entry}")
    lines += ["", "See also the [results of every chapter](results).", ""]
    lines += ["```{toctree}", ":hidden:", ":maxdepth: 2", ""]
    lines += [f"chapters/{c.slug}" for c in written] + ["results", "```", ""]
    return "\n".join(lines)


def results_page(manifest: Manifest) -> str:
    lines = [
        "# Results", "",
        "What every written chapter achieved in its last run: its metrics, the baselines it was "
        "compared with in the same run, the profile, and the wall time against the chapter's budget.", "",
        "| chapter | profile | wall (s) | budget (s) | metrics | baselines |",
        "|---|---|---|---|---|---|",
    ]
    budgets = {c.slug: c.budget_s for c in manifest.chapters}
    for r in load_results():
        fmt = lambda d: "<br>".join(f"{k} = {v:.4g}" for k, v in d.items()) or "–"  # noqa: E731
        budget = budgets.get(r["chapter"])
        lines.append(f"| {r['chapter']} | {r['profile']} | {r['wall_s']:.1f} | "
                     f"{budget:.0f} | {fmt(r['metrics'])} | {fmt(r['baselines'])} |" if budget else
                     f"| {r['chapter']} | {r['profile']} | {r['wall_s']:.1f} | – | "
                     f"{fmt(r['metrics'])} | {fmt(r['baselines'])} |")
    if len(lines) == 6:
        lines.append("| (no results yet: run `make test`) | | | | | |")
    return "\n".join(lines) + "\n"


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


def main() -> int:
    manifest = load_manifest()
    src, out = build_dir() / "src", build_dir() / "html"
    assemble(manifest, src)
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-c", str(REPO_ROOT / "genbook" / "book"),
           "--keep-going", str(src), str(out)]
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
