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
                 "finished", "retrained", "bars"}
FD_BASELINES = ("fd_real_vs_real", "fd_blurred", "fd_pca_gaussian")  # the protocol's rungs, best to worst
FIGURE = "results_fd.png"  # under _build/src, next to results.md
_FAMILIES = ("nll", "bpd", "accuracy", "adherence", "exact_match", "mmd", "w2", "recon_nmse", "usage", "perplexity",
             "bits_per_code")


def _family(name: str) -> str | None:
    """What a number measures, so that a metric is compared only with baselines of the same kind."""
    parts = name.lower().split("_")
    if "fd" in parts and not {"ci", "minus"} & set(parts):
        return "fd"
    joined = "_" + name.lower()
    return next((f for f in _FAMILIES if f"_{f}" in joined), None)


def _ratios(metric: str, value: float, baselines: dict) -> str:
    family = _family(metric)
    if family is None:
        return ""
    pairs = [(b, v) for b, v in baselines.items() if _family(b) == family and v]
    return "<br>".join(f"{value / v:.2f}× `{_cell(b)}`" for b, v in pairs)


def trained_or_loaded(record: dict) -> str:
    """"trained", "loaded from cache" or "not recorded", from the record's ``retrained`` note."""
    if "retrained" not in record:
        return "trained or loaded: not recorded"
    return "trained in this run" if record["retrained"] else "models loaded from cache (wall time excludes training)"


def best_fd(record: dict) -> tuple[str, float] | None:
    """The chapter's best image FD (name, value), if it reports one next to the protocol's baselines."""
    if not any(b in record.get("baselines", {}) for b in FD_BASELINES):
        return None
    fds = [(k, v) for k, v in record.get("metrics", {}).items() if _family(k) == "fd" and "recon" not in k]
    return min(fds, key=lambda kv: kv[1]) if fds else None


def chapter_block(name: str, record: dict | None, budget: float | None) -> list[str]:
    """One chapter's results, as a person reads them: how it ran, then each metric with its ratio to baselines."""
    lines = [f"## {name}", ""]
    if record is None:
        return lines + ["*Not run yet (`make test`).*", ""]
    profile, wall = record.get("profile", "?"), record.get("wall_s")
    budget = budget if profile == "fast" else None
    wall_text = "–" if wall is None else f"{wall:.1f} s"
    if wall is not None and budget is not None:
        wall_text += f" of a {budget:.0f} s budget" + (" (**over**)" if wall > budget else "")
    when = str(record.get("finished", "")).replace("T", " ")
    lines += [f"Profile `{_cell(profile)}` on {_cell(record.get('device', '?'))}, {trained_or_loaded(record)}; "
              f"wall time {wall_text}; finished {when}.", ""]
    baselines = record.get("baselines") or {}
    lines += ["| metric | value | compared with the baselines (ratio) |", "|---|---|---|"]
    for k, v in (record.get("metrics") or {}).items():
        lines.append(f"| `{_cell(k)}` | {_value(v)} | {_ratios(k, v, baselines)} |")
    if baselines:
        lines += ["", "Baselines, computed in the same run on the same data: "
                  + "; ".join(f"`{_cell(k)}` = {_value(v)}" for k, v in baselines.items()) + "."]
    bars = record.get("bars")
    if isinstance(bars, dict) and bars:
        lines += ["", "Bars: " + "; ".join(f"{'✓' if ok is True else '✗'} {_cell(k)}" for k, ok in bars.items()) + "."]
    else:
        lines += ["", "Bars: ✓ every bar the chapter asserts held (a chapter that misses one stops with an error "
                  "before it reports)."]
    if record.get("timings"):
        lines += ["", "Speeds measured in this run (they depend on the machine): "
                  + "; ".join(f"`{_cell(k)}` = {_value(v)}" for k, v in record["timings"].items()) + "."]
    notes = [f"`{_cell(k)}` = {_value(v)}" for k, v in record.items() if k not in STANDARD_KEYS]
    if notes:
        lines += ["", "Notes: " + "; ".join(notes) + "."]
    return lines + [""]


def fd_figure(results: dict[str, dict], path: Path, titles: dict[str, str]) -> bool:
    """A PNG: each image chapter's best FD next to its baselines (log scale). False when no chapter has FD."""
    rows = [(slug, r, best_fd(r)) for slug, r in results.items() if best_fd(r) is not None]
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.55 * len(rows) + 1.2), dpi=110)
    markers = {"fd_real_vs_real": ("|", "real vs real (floor)"), "fd_blurred": ("x", "blurred data"),
               "fd_pca_gaussian": ("s", "PCA-Gaussian")}
    for y, (_, record, (_, value)) in enumerate(rows):
        for b, (marker, label) in markers.items():
            if b in record["baselines"]:
                ax.scatter(record["baselines"][b], y, marker=marker, s=70, color="0.45",
                           label=label if y == 0 else None)
        ax.scatter(value, y, marker="o", s=70, color="C3", zorder=3, label="the chapter's model" if y == 0 else None)
        ax.annotate(f"{value:.0f}", (value, y), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
    ax.set_yticks(range(len(rows)), [titles.get(slug, slug) for slug, _, _ in rows])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("FD in the chapter's evaluator feature space (lower is better, log scale)")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4, fontsize=8, frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return True


def results_page(manifest: Manifest, figure: Path | None = None) -> str:
    """The book's results page: one block per chapter from ``_build/results/*.json``, in the book's order.

    Written chapters without a result yet get a block that says so; results of chapters the manifest does
    not list (renamed, removed) come last, marked. Wall times are compared with the fast-profile budget.
    ``figure``: where to draw the FD comparison (a PNG next to the page); None draws nothing.
    """
    results = {r.get("chapter", "?"): r for r in load_results()}
    known = {c.slug: c for c in manifest.chapters}
    lines = [
        "# Results", "",
        "What every written chapter achieved in its last run: the metrics it reports, each compared with the "
        "baselines of the same kind computed in the same run and on the same data (the ratio metric / baseline), "
        "whether its models were trained in that run or loaded from the checkpoint cache, and its wall time against "
        "its budget (budgets are for the `fast` profile on a 2-core CPU). The numbers come from "
        "`_build/results/<chapter>.json`, which each chapter writes with `genbook.report` when it runs "
        "(`make test`, `make bench`). FD is the Fréchet distance in the feature space of genbook's own evaluator, "
        "not Inception FID.", "",
    ]
    slugs = [c.slug for c in manifest.written()]
    slugs += [s for s in results if s not in slugs]
    titles = {}
    for slug in slugs:
        chapter = known.get(slug)
        if chapter is None:
            titles[slug] = slug
        else:
            titles[slug] = f"{chapter.number:02d}. {chapter.title}"
    if figure is not None and fd_figure({s: results[s] for s in slugs if s in results}, figure, titles):
        lines += ["```{figure} " + figure.name, ":alt: FD of each image chapter's model next to its baselines", "",
                  "Each image chapter's best FD of generated samples (red) next to the baselines of the same run: "
                  "real data against real data (the floor), blurred training images, and a Gaussian fitted to PCA "
                  "features. Each chapter measures in its own evaluator's feature space (Fashion-MNIST, or the "
                  "shapes evaluator for captioned shapes), so compare a model with its own row's baselines.", "```", ""]
    if not slugs:
        lines.append("*No chapters written yet.*")
    for slug in slugs:
        chapter = known.get(slug)
        if chapter is None:
            name = f"{_cell(slug)} *(not in the book)*"
        elif chapter.status == "written":
            name = f"[{chapter.number:02d}. {chapter.title}](chapters/{slug})"
        else:
            name = f"{chapter.number:02d}. {chapter.title} *(planned)*"
        lines += chapter_block(name, results.get(slug), chapter.budget_s if chapter else None)
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
    (src / "results.md").write_text(results_page(manifest, figure=src / FIGURE))
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
