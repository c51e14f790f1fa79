"""Print the exact versions installed in this environment as a pip constraints file.

``make lock`` re-pins what CI installs after a deliberate upgrade.
"""

from __future__ import annotations

import importlib.metadata as md
import sys


def pinned() -> dict[str, str]:
    """name -> version of every installed distribution except genbook itself and pip's own tools."""
    skip = {"genbook", "pip", "setuptools", "wheel"}
    pins = {}
    for dist in md.distributions():
        name = dist.metadata["Name"]
        if name and name.lower() not in skip:
            pins[name.lower().replace("_", "-")] = dist.version.split("+")[0]
    return dict(sorted(pins.items()))


def kept_pins() -> dict[str, str]:
    """Pins of constraints.txt for packages this environment lacks on purpose: the extra ``ci`` (nbgrader and
    what it needs) installs only in CI's own tools virtualenv, so ``make lock`` keeps those pins."""
    from ..paths import REPO_ROOT

    path = REPO_ROOT / "constraints.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    pins = dict(line.split("==", 1) for line in lines if "==" in line and not line.startswith("#"))
    installed = set(pinned())
    return {name: version for name, version in pins.items() if name not in installed}


def main() -> None:
    print("# Exact versions CI installs: pip install -c constraints.txt -e '.[dev,docs]'.")
    print("# Regenerate with `make lock` after a deliberate upgrade.")
    print(f"# Python {sys.version_info.major}.{sys.version_info.minor}.")
    for name, version in sorted({**kept_pins(), **pinned()}.items()):
        print(f"{name}=={version}")


if __name__ == "__main__":
    main()
