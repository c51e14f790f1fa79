"""A progress bar that is live for a person and quiet in CI.

``GENBOOK_PROGRESS`` decides, in this one place:

- ``live``    a tqdm bar (the default for a person in a terminal or JupyterLab);
- ``summary`` no bar, one line when the loop ends (what ``make test``/``make book``
              set, so executed notebooks hold no ``\\r`` frames or frozen widgets);
- ``off``     nothing at all.

When unset, ``summary`` is used if the ``CI`` environment variable is set.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator

from . import switches

MODES = ("live", "summary", "off")


def progress_mode() -> str:
    mode = switches.value("GENBOOK_PROGRESS") or ("summary" if switches.path_value("CI") else "live")
    if mode not in MODES:
        raise ValueError(f"GENBOOK_PROGRESS={switches.raw('GENBOOK_PROGRESS')!r} is not a mode; "
                         f"expected one of {', '.join(MODES)}.")
    return mode


class Progress:
    """Iterate over ``iterable`` while reporting progress; ``set_postfix(loss=...)`` adds numbers."""

    def __init__(self, iterable: Iterable, total: int | None = None, desc: str = "", file=None):
        self.iterable = iterable
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.desc = desc
        self.mode = progress_mode()
        self.file = file or sys.stdout
        self.postfix: dict[str, object] = {}
        self.count = 0
        self._bar = None
        if self.mode == "live":
            from tqdm.std import tqdm  # text bar: no ipywidgets needed, no frozen widget

            self._bar = tqdm(total=self.total, desc=desc, file=sys.stderr, dynamic_ncols=True)

    def set_postfix(self, **values) -> None:
        self.postfix.update(values)
        if self._bar is not None:
            self._bar.set_postfix({k: _fmt(v) for k, v in values.items()}, refresh=False)

    def __iter__(self) -> Iterator:
        start = time.perf_counter()
        try:
            for item in self.iterable:
                yield item
                self.count += 1
                if self._bar is not None:
                    self._bar.update(1)
        finally:
            if self._bar is not None:
                self._bar.close()
            if self.mode == "summary":
                self.file.write(self.summary(time.perf_counter() - start) + "\n")
                self.file.flush()

    def summary(self, seconds: float) -> str:
        rate = self.count / seconds if seconds > 0 else float("inf")
        extra = "".join(f", {k}={_fmt(v)}" for k, v in self.postfix.items())
        name = f"{self.desc}: " if self.desc else ""
        return f"{name}{self.count} it in {seconds:.1f} s ({rate:.1f} it/s){extra}"


def progress(iterable: Iterable, total: int | None = None, desc: str = "") -> Progress:
    """Wrap ``iterable`` in genbook's progress reporting (see the module docstring)."""
    return Progress(iterable, total=total, desc=desc)


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
