"""Every ``GENBOOK_*`` environment variable, read the same way and checked early.

A switch's value is read with surrounding spaces removed and, for switches with a
fixed set of values, in lower case (``GENBOOK_PROFILE=" Full "`` means ``full``).
An empty value means "unset". A value a switch does not know is an error that
names the variable and lists what it accepts; ``import genbook`` checks them all
(:func:`check_all`), so a typo fails at once, even when every model is cached.

Switches (documented in the README):

- ``GENBOOK_PROFILE``            ``fast`` (default) or ``full``
- ``GENBOOK_DEVICE``             ``cpu``, ``cuda``, ``cuda:N``, ``mps`` (default: the best available)
- ``GENBOOK_PROGRESS``           ``live``, ``summary`` or ``off``
- ``GENBOOK_RETRAIN``            ``0``/empty (none), ``1`` or ``all``, or chapter slugs and ``metrics``, comma-separated
- ``GENBOOK_ALLOW_FULL_ON_CPU``  ``1`` to run the full profile without a GPU (``0``/empty: refuse)
- ``GENBOOK_DATA``, ``GENBOOK_BUILD``, ``GENBOOK_CHECKPOINTS``, ``GENBOOK_CHROMIUM``   paths
"""

from __future__ import annotations

import os

SWITCHES = (
    "GENBOOK_PROFILE", "GENBOOK_DEVICE", "GENBOOK_PROGRESS", "GENBOOK_RETRAIN", "GENBOOK_ALLOW_FULL_ON_CPU",
    "GENBOOK_DATA", "GENBOOK_BUILD", "GENBOOK_CHECKPOINTS", "GENBOOK_CHROMIUM",
)


def raw(name: str) -> str | None:
    """The variable as set (None when unset), for error messages."""
    return os.environ.get(name)


def value(name: str) -> str:
    """The switch's value: stripped and lower-cased; ``""`` when unset or blank."""
    return (os.environ.get(name) or "").strip().lower()


def path_value(name: str) -> str:
    """A path switch: stripped of surrounding spaces (case kept); ``""`` when unset or blank."""
    return (os.environ.get(name) or "").strip()


def invalid(name: str, expected: str) -> ValueError:
    """The one error for a switch whose value is not understood."""
    return ValueError(f"{name}={raw(name)!r} is not understood; expected {expected}.")


def choice(name: str, choices: tuple[str, ...], default: str) -> str:
    """A switch with a fixed set of values; unset or blank gives ``default``."""
    got = value(name) or default
    if got not in choices:
        raise invalid(name, "one of " + ", ".join(choices))
    return got


def flag(name: str) -> bool:
    """An on/off switch: ``1`` is on; ``0``, blank or unset is off; anything else is an error."""
    got = value(name)
    if got not in ("", "0", "1"):
        raise invalid(name, "1 (on) or 0 (off)")
    return got == "1"


def check_all() -> None:
    """Parse every switch now, so a bad value fails at import rather than deep inside a run."""
    from .checkpoint import retrain_selection
    from .devices import parse_device
    from .profiles import profile_name
    from .progress import progress_mode

    profile_name()
    progress_mode()
    retrain_selection()
    parse_device()
    flag("GENBOOK_ALLOW_FULL_ON_CPU")
