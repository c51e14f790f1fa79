"""``make lab``: JupyterLab in which every chapter (a jupytext ``.py`` file) opens as a notebook.

JupyterLab 4 typesets math with its bundled MathJax, so formulas render offline.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..paths import REPO_ROOT

# Make "Jupytext Notebook" the default viewer of .py files (JupyterLab settings overrides).
OVERRIDES = {"@jupyterlab/docmanager-extension:plugin": {"defaultViewers": {"python": "Jupytext Notebook"}}}


def install_overrides(prefix: Path = Path(sys.prefix)) -> Path:
    path = prefix / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update(OVERRIDES)
    path.write_text(json.dumps(current, indent=2) + "\n")
    return path


def lab_command(extra: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "jupyterlab", f"--notebook-dir={REPO_ROOT}",
           "--ServerApp.default_url=/lab/tree/chapters"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # JupyterLab refuses to start as root without it
    return cmd + extra


def main() -> None:
    install_overrides()
    os.environ.pop("MPLBACKEND", None)
    os.execv(sys.executable, lab_command(sys.argv[1:]))


if __name__ == "__main__":
    main()
