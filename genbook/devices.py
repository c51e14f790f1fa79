"""One place that decides where tensors live and which precision they compute in."""

from __future__ import annotations

import contextlib

import torch

from . import switches


def parse_device() -> torch.device | None:
    """``GENBOOK_DEVICE`` as a torch device (None when unset); a value torch cannot parse is an error."""
    override = switches.value("GENBOOK_DEVICE")
    if not override:
        return None
    try:
        return torch.device(override)
    except RuntimeError as err:
        raise ValueError(f"GENBOOK_DEVICE={switches.raw('GENBOOK_DEVICE')!r} is not a torch device "
                         "(try cpu, cuda, cuda:1, mps).") from err


def available_devices() -> list[str]:
    """The devices this machine has, as ``GENBOOK_DEVICE`` would name them: cpu, cuda:0.., mps."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found


def _check_available(dev: torch.device) -> torch.device:
    present = available_devices()
    if dev.type == "cpu":
        return dev
    ok = (dev.type == "mps" and "mps" in present) or (
        dev.type == "cuda" and any(p.startswith("cuda:") for p in present)
        and (dev.index is None or f"cuda:{dev.index}" in present))
    if not ok:
        raise ValueError(f"GENBOOK_DEVICE={switches.raw('GENBOOK_DEVICE')!r}: that device is not available on "
                         f"this machine; available: {', '.join(present)} (or unset GENBOOK_DEVICE to pick the best).")
    return dev


def device() -> torch.device:
    """CUDA if available, then Apple's MPS, then the CPU.

    ``GENBOOK_DEVICE=cpu`` (or ``cuda:1``, ...) overrides the choice; a device this
    machine does not have is an error that lists the ones it has.
    """
    override = parse_device()
    if override is not None:
        return _check_available(override)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast(dev: torch.device | str | None = None, enabled: bool = True):
    """bf16 autocast on CUDA; a no-op elsewhere (CPU bf16 is slower than fp32 on small models)."""
    dev = torch.device(dev) if dev is not None else device()
    if enabled and dev.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def cpu_threads(n: int | None):
    """Use ``n`` intra-op CPU threads inside the block, then restore the setting (``None``: leave it alone).

    Small networks (the evaluators, 2D MLPs) gain little from a second thread on an
    idle machine, while on a busy 2-core machine (parallel tests, a notebook server)
    two threads that wait for each other at every operation were measured to run
    5-10x slower. One thread also fixes the order of floating point reductions, so
    trained weights do not depend on the machine's core count.
    """
    if n is None:
        yield
        return
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"cpu_threads: n must be a positive int or None, got {n!r}.")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
