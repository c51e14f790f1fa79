"""Collect the chapters (jupytext ``.py`` notebooks) for nbval.

nbval on its own only sees ``.ipynb`` files. Here each ``chapters/NN_slug.py``
is read with jupytext and its code cells become test items
(``chapters/00_preface.py::Cell 3``), executed in one kernel per chapter with:

- the rest of a chapter skipped after its first failing cell (nbval would go on
  running cells that can only fail, sometimes for minutes);
- the cell tags ``skip-execution`` and ``raises-exception`` honoured, the same
  tags nbclient and MyST-NB honour (nbval's own NBVAL_* comments are not used);
- ``--chapter-cache``: a chapter whose cells all passed is stored with its
  outputs in the jupyter-cache that ``make book`` renders from;
- chapters in ``RUN_LAST`` (the capstone, which reads the samples the other
  chapters save) run after every other chapter of a serial session; next to
  other chapters on several xdist workers they are skipped, since the order
  of files across workers is not fixed (``make test`` runs them in a second,
  serial run: ``pytest -n 0 chapters/10_capstone.py``).

Output comparison is off (``--nbval-lax``): chapters carry no outputs, so there
is nothing to compare; chapters check themselves with ``assert`` cells.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from nbval.plugin import IPyNbCell, IPyNbFile

CHAPTERS = Path(__file__).parent / "chapters"
RUN_LAST = ("10_capstone.py",)  # chapters that read what the other chapters save

# Kernels inherit this process's environment: no progress-bar frames in executed
# notebooks, and no MPLBACKEND=Agg (which would leave figure cells without output).
os.environ.setdefault("GENBOOK_PROGRESS", "summary")
os.environ.pop("MPLBACKEND", None)


def is_chapter(path: Path) -> bool:
    return path.suffix == ".py" and path.parent.resolve() == CHAPTERS.resolve() and path.name[:2].isdigit()


def pytest_addoption(parser):
    parser.addoption("--chapter-cache", action="store_true",
                     help="store fully passing chapters with their outputs for `make book`")


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makemodule(module_path, parent):
    # `pytest chapters/01_x.py` would otherwise import the chapter as a test module.
    if is_chapter(module_path):
        return ChapterFile.from_parent(parent, path=module_path)


def pytest_collect_file(file_path, parent):
    # Paths named on the command line go through pytest_pycollect_makemodule instead.
    if is_chapter(file_path) and not parent.session.isinitpath(file_path):
        return ChapterFile.from_parent(parent, path=file_path)


def pytest_collection_modifyitems(session, config, items):
    last = [item for item in items if item.path.name in RUN_LAST and is_chapter(item.path)]
    if not last:
        return
    others = {item.path for item in items if is_chapter(item.path) and item.path.name not in RUN_LAST}
    workers = getattr(config, "workerinput", {}).get("workercount", 1)  # set in xdist's worker processes
    if others and workers > 1:  # no order of files across workers
        reason = (f"{last[0].path.name} reads the samples other chapters save: run it after them, "
                  f"`pytest -n 0 chapters/{last[0].path.name}` (make test does)")
        for item in last:  # skipped in runtest: a skip mark would need a line number in reportinfo
            item.parent.run_last_skip = reason
    else:  # one process: items run in this order, so put these after every other chapter
        items[:] = [item for item in items if item not in last] + last


class ChapterFile(IPyNbFile):
    """A chapter: its code cells, executed in order in one kernel."""

    def collect(self):
        from genbook.book.execution import read_chapter

        self.nb = read_chapter(self.path)
        self.first_failure: str | None = None
        self.started = time.perf_counter()
        self.cells = []
        number = 0
        for cell in self.nb.cells:
            if cell.cell_type != "code":
                continue
            tags = set(cell.metadata.get("tags", []))
            options = {"check": False, "skip": "skip-execution" in tags,
                       "check_exception": "raises-exception" in tags}
            item = ChapterCell.from_parent(self, name=f"Cell {number}", cell_num=number, cell=cell, options=options)
            self.cells.append(item)
            yield item
            number += 1

    def teardown(self):
        super().teardown()
        if self.config.getoption("chapter_cache") and self.first_failure is None and self.cells \
                and all(c.test_outputs is not None or c.options["skip"] for c in self.cells):
            from genbook.book.execution import store_executed

            for count, item in enumerate(self.cells, start=1):
                item.cell.outputs = item.test_outputs or []
                item.cell.execution_count = None if item.options["skip"] else count
                for out in item.cell.outputs:
                    if out.output_type == "execute_result":
                        out.execution_count = count
            store_executed(self.nb, str(self.path), time.perf_counter() - self.started)


class ChapterCell(IPyNbCell):
    def runtest(self):
        if getattr(self.parent, "run_last_skip", None):
            pytest.skip(self.parent.run_last_skip)
        if self.parent.first_failure is not None:
            pytest.skip(f"an earlier cell failed: {self.parent.first_failure}")
        try:
            super().runtest()
        except Exception:  # a failing cell (pytest's skip is not an Exception)
            self.parent.first_failure = self.name
            raise

    def reportinfo(self):
        return self.path, None, self.name  # shown as chapters/01_x.py::Cell 3
