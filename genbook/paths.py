"""Where genbook keeps things: the repository root, the data cache, build outputs.

Every path can be moved with an environment variable, so a reader can point the
data cache at a shared disk and CI can build in a scratch directory.
"""

from __future__ import annotations

from pathlib import Path

from . import switches

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """Local data cache: ``$GENBOOK_DATA`` or ``<repo>/data``. Created on demand."""
    path = Path(switches.path_value("GENBOOK_DATA") or REPO_ROOT / "data")
    path.mkdir(parents=True, exist_ok=True)
    return path


def build_dir() -> Path:
    """Build outputs (results, the rendered book): ``$GENBOOK_BUILD`` or ``<repo>/_build``."""
    path = Path(switches.path_value("GENBOOK_BUILD") or REPO_ROOT / "_build")
    path.mkdir(parents=True, exist_ok=True)
    return path


def checkpoint_dir() -> Path:
    """Trained models (load-or-train cache): ``$GENBOOK_CHECKPOINTS`` or ``<repo>/data/checkpoints``."""
    path = Path(switches.path_value("GENBOOK_CHECKPOINTS") or data_dir() / "checkpoints")
    path.mkdir(parents=True, exist_ok=True)
    return path


def repo_relative(path) -> str:
    """``path`` as a reader should see it printed: relative to the repository (``data/checkpoints/x.pt``).

    Pages of the book must not show the build machine's folders. A path outside the
    repository (a moved ``GENBOOK_CHECKPOINTS``) is shown relative to the home folder
    (``~/...``), else by its name alone.
    """
    path = Path(path).resolve()
    for base, prefix in ((REPO_ROOT, ""), (Path.home().resolve(), "~/")):
        try:
            return prefix + path.relative_to(base).as_posix()
        except ValueError:
            continue
    return path.name
