"""The one switch between a laptop run and a GPU run: ``GENBOOK_PROFILE``.

    cfg = genbook.profile(fast=dict(steps=300, width=32), full=dict(steps=20_000, width=128))

``fast`` (the default) is sized for a 2-core CPU and a few minutes per chapter;
``full`` for one modern GPU and about twenty minutes. Settings are step counts,
never wall-clock budgets, so a run is reproducible.
"""

from __future__ import annotations

import sys
from typing import TypeVar

from . import switches

PROFILES = ("fast", "full")
T = TypeVar("T")
OPT_IN = "GENBOOK_ALLOW_FULL_ON_CPU"
_warned = False


def profile_name() -> str:
    """The active profile, from ``GENBOOK_PROFILE`` (``fast`` when unset)."""
    name = switches.value("GENBOOK_PROFILE") or "fast"
    if name not in PROFILES:
        raise ValueError(
            f"GENBOOK_PROFILE={switches.raw('GENBOOK_PROFILE')!r} is not a profile; "
            f"expected one of {', '.join(PROFILES)} (e.g. `GENBOOK_PROFILE=full make book`)."
        )
    return name


def _check_full_has_an_accelerator() -> None:
    """The full profile on a machine without CUDA or MPS: refuse unless opted in, and warn either way."""
    global _warned
    from .devices import device

    dev = device()
    if dev.type != "cpu":
        return
    message = (
        f"GENBOOK_PROFILE=full is sized for one modern GPU (about 20 minutes a chapter), but genbook.device() "
        f"is the CPU here. On a CPU the full profile takes days instead: about 140 hours for chapter 05 alone. "
        f"Use the fast profile (unset GENBOOK_PROFILE), or set {OPT_IN}=1 to run it on the CPU anyway."
    )
    if not switches.flag(OPT_IN):
        raise RuntimeError(message)
    if not _warned:
        print(f"genbook: warning: {message} ({OPT_IN}=1 is set: going on.)", file=sys.stderr, flush=True)
        _warned = True


def profile(*, fast: T, full: T) -> T:
    """Return the settings for the active profile: ``fast`` or ``full``.

    The full profile on a machine without a GPU raises an error before any work starts,
    unless ``GENBOOK_ALLOW_FULL_ON_CPU=1`` opts in (then it warns once and goes on).
    """
    name = profile_name()
    if name == "full":
        _check_full_has_an_accelerator()
    return {"fast": fast, "full": full}[name]
