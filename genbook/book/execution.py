"""One execution serves both the tests and the book.

``make test`` executes each chapter through nbval; when every cell of a chapter
passes, the conftest stores the captured outputs in the jupyter-cache that
MyST-NB reads, so ``make book`` renders them without running anything again.

jupyter-cache keys a notebook by its code cells and kernelspec only, not by the
environment or the code it imports. So the cache lives in a directory named
after the profile and a hash of genbook's source: change either and the book
executes afresh instead of showing outputs from other code.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import jupytext
import nbformat

from ..paths import REPO_ROOT, build_dir
from ..profiles import profile_name

# How chapters are read everywhere (conftest, Sphinx, student editions): jupytext percent format.
CHAPTER_FORMAT = {"fmt": "py:percent"}


def read_chapter(path: Path) -> nbformat.NotebookNode:
    """Read ``chapters/NN_slug.py`` as a notebook, exactly as MyST-NB reads it."""
    return jupytext.reads(Path(path).read_text(encoding="utf8"), **CHAPTER_FORMAT)


# Files that only render the book: editing them must not invalidate executed chapters.
RENDER_ONLY = tuple(f"genbook/book/{name}.py" for name in ("conf", "build", "student", "browser", "lab", "lock"))


def source_hash() -> str:
    """A short hash of what a chapter's outputs depend on besides its own cells.

    Every file of the genbook package (except the renderer's own files) and book.toml
    (the preface prints the contents from it).
    """
    digest = hashlib.sha256()
    files = sorted((REPO_ROOT / "genbook").rglob("*.py")) + [REPO_ROOT / "book.toml"]
    for path in files:
        if str(path.relative_to(REPO_ROOT)) in RENDER_ONLY:
            continue
        digest.update(str(path.relative_to(REPO_ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def cache_path() -> Path:
    """``_build/jupyter_cache/<profile>-<genbook source hash>``."""
    return build_dir() / "jupyter_cache" / f"{profile_name()}-{source_hash()}"


def store_executed(nb: nbformat.NotebookNode, uri: str, seconds: float, attempts: int = 20) -> None:
    """Put an executed notebook into the cache MyST-NB reads (retrying while xdist workers hold the lock)."""
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn
    from sqlalchemy.exc import OperationalError

    current = cache_path()
    for attempt in range(attempts):
        try:
            get_cache(str(current)).cache_notebook_bundle(
                CacheBundleIn(nb, uri, data={"execution_seconds": seconds}), check_validity=False, overwrite=True
            )
            break
        except OperationalError:  # "database is locked": another worker is writing
            if attempt == attempts - 1:
                raise
            time.sleep(0.5)
    for stale in current.parent.glob(f"{profile_name()}-*"):  # outputs of older genbook sources
        if stale != current:
            shutil.rmtree(stale, ignore_errors=True)
