"""``make bench``: run each written chapter afresh and print what it costs and achieves.

    python -m genbook.bench [--repeat N] [--chapters 00_preface 05_ddpm] [--no-selfcheck] [--no-micro]

Each chapter is executed in a new kernel (two CPU threads on a 2-core machine),
in the book's order (so the capstone, chapter 10, compares the samples that the
chapters before it saved in the same bench run), ``--repeat`` times, retraining
its models (shared evaluators stay cached); the table shows the median wall time
against the chapter's budget in book.toml, and the metrics, baselines and timings
the chapter reported with ``genbook.report``. The evaluation self-check (``genbook.metrics.selfcheck``),
when present, is run first and shown as its own row. Then the micro-benchmarks
run: genbook's fused attention against the naive version
(``genbook.nn.bench_attention``), reported as a ratio per sequence length.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

from .book.execution import read_chapter
from .book.manifest import load_manifest
from .profiles import profile_name
from .report import results_dir


def run_chapter(path) -> float:
    """Execute a chapter in a fresh kernel; return its wall time in seconds (raises on a failing cell)."""
    from nbclient import NotebookClient

    nb = read_chapter(path)
    os.environ["GENBOOK_RETRAIN"] = path.stem  # time the training too, not a checkpoint load
    client = NotebookClient(nb, timeout=3600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


def fmt(values: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in values.items()) or "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs per chapter; the median is shown")
    parser.add_argument("--chapters", nargs="*", help="slugs to run (default: every written chapter)")
    parser.add_argument("--no-selfcheck", action="store_true", help="skip the evaluation self-check")
    parser.add_argument("--no-micro", action="store_true", help="skip the micro-benchmarks (attention)")
    args = parser.parse_args(argv)
    os.environ.setdefault("GENBOOK_PROGRESS", "summary")
    os.environ.pop("MPLBACKEND", None)
    manifest = load_manifest()
    unknown = [s for s in args.chapters or () if s not in {c.slug for c in manifest.chapters}]
    if unknown:
        parser.error(f"--chapters: no chapter {', '.join(map(repr, unknown))} in book.toml; "
                     f"known: {', '.join(c.slug for c in manifest.chapters)}")
    # In the book's order, whatever order --chapters names them in: the capstone (10) reads the samples the
    # chapters before it save, so it must run after them.
    chapters = [c for c in manifest.chapters if c.slug in args.chapters] if args.chapters else manifest.written()
    rows, failed = [], False

    if not args.no_selfcheck and importlib.util.find_spec("genbook.metrics.selfcheck"):
        start = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", "genbook.metrics.selfcheck"])
        rows.append(("evaluation", time.perf_counter() - start, None, "evaluation", code != 0))
        failed |= code != 0

    if not args.no_micro:
        print()  # the attention micro-benchmark prints its own table: naive / genbook per sequence length
        code = subprocess.call([sys.executable, "-m", "genbook.nn.bench_attention"])
        failed |= code != 0

    for chapter in chapters:
        times, error = [], False
        for _ in range(args.repeat):
            try:
                times.append(run_chapter(chapter.path))
            except Exception as err:  # a failing cell: report it and go on with the others
                print(f"{chapter.slug}: FAILED: {type(err).__name__}: {str(err)[-500:]}", file=sys.stderr)
                error = True
                break
        failed |= error
        rows.append((chapter.slug, statistics.median(times) if times else float("nan"), chapter.budget_s,
                     chapter.slug, error))

    print(f"\nprofile: {profile_name()}    (wall: median of {args.repeat} run(s), fresh kernel each)\n")
    header = f"{'chapter':<22} {'wall s':>8} {'budget s':>9}  {'ok':<6} {'metrics':<48} {'baselines':<40} timings"
    print(header)
    print("-" * len(header))
    for name, wall, budget, slug, error in rows:
        path = results_dir() / f"{slug}.json"
        record = json.loads(path.read_text()) if path.exists() and not error else {}
        status = "FAILED" if error else ("over" if budget and wall > budget else "ok")
        budget_text = f"{budget:.0f}" if budget else "-"
        print(f"{name:<22} {wall:>8.1f} {budget_text:>9}  {status:<6} {fmt(record.get('metrics', {})):<48} "
              f"{fmt(record.get('baselines', {})):<40} {fmt(record.get('timings', {}))}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
