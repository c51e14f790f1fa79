"""The one switch between a laptop run and a GPU run: ``GENBOOK_PROFILE``.

    cfg = genbook.profile(fast=dict(steps=300, width=32), full=dict(steps=20_000, width=128))

``fast`` (the default) is sized for a 2-core CPU and a few minutes per chapter;
``full`` for one modern GPU and about twenty minutes. Settings are step counts,
never wall-clock budgets, so a run is reproducible.
"""

from __future__ import annotations

import os
from typing import TypeVar

PROFILES = ("fast", "full")
T = TypeVar("T")


def profile_name() -> str:
    """The active profile, from ``GENBOOK_PROFILE`` (``fast`` when unset)."""
    name = os.environ.get("GENBOOK_PROFILE", "fast").strip().lower() or "fast"
    if name not in PROFILES:
        raise ValueError(
            f"GENBOOK_PROFILE={os.environ.get('GENBOOK_PROFILE')!r} is not a profile; "
            f"expected one of {', '.join(PROFILES)} (e.g. `GENBOOK_PROFILE=full make book`)."
        )
    return name


def profile(*, fast: T, full: T) -> T:
    """Return the settings for the active profile: ``fast`` or ``full``."""
    return {"fast": fast, "full": full}[profile_name()]
