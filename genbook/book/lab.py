"""``make lab``: JupyterLab in which every chapter (a jupytext ``.py`` file) opens as a notebook.

- jupytext (>= 1.16) registers itself as a Jupyter server extension: its contents
  manager serves ``chapters/NN_slug.py`` as a notebook and saves edits back to the
  ``.py`` file (outputs are not saved: chapters carry none);
- the settings overrides below make "Jupytext Notebook" the default viewer of
  ``.py`` files, so a double click opens a chapter as a notebook, and keep
  JupyterLab from asking to fetch news over the network;
- JupyterLab 4 typesets math with the MathJax 3 it bundles: formulas render offline.

    python -m genbook.book.lab [extra JupyterLab options, e.g. --no-browser --port 8890]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..paths import REPO_ROOT

OVERRIDES = {
    # A double click on a .py file opens it as a notebook (jupytext's viewer), not in the text editor.
    "@jupyterlab/docmanager-extension:plugin": {"defaultViewers": {"python": "Jupytext Notebook"}},
    # Offline first: no "Would you like to get notified about official Jupyter news?" and no fetch.
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
}


def settings_dir(prefix: Path = Path(sys.prefix)) -> Path:
    """Where JupyterLab reads ``overrides.json`` for this environment (its application settings directory)."""
    return prefix / "share" / "jupyter" / "lab" / "settings"


def install_overrides(prefix: Path = Path(sys.prefix)) -> Path:
    """Merge OVERRIDES into ``<prefix>/share/jupyter/lab/settings/overrides.json``; return its path."""
    path = settings_dir(prefix) / "overrides.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(path.read_text()) if path.exists() else {}
    for plugin, values in OVERRIDES.items():
        current.setdefault(plugin, {}).update(values)
    path.write_text(json.dumps(current, indent=2) + "\n")
    return path


def lab_command(extra: list[str]) -> list[str]:
    """The JupyterLab command line: the repository as root folder, opening on ``chapters/``."""
    cmd = [sys.executable, "-m", "jupyterlab", f"--notebook-dir={REPO_ROOT}",
           "--ServerApp.default_url=/lab/tree/chapters"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # JupyterLab refuses to start as root without it
    return cmd + extra


def main() -> None:
    install_overrides()
    os.environ.pop("MPLBACKEND", None)  # Agg would leave figure cells without output
    os.execv(sys.executable, lab_command(sys.argv[1:]))


if __name__ == "__main__":
    main()
