"""One place that decides where tensors live and which precision they compute in."""

from __future__ import annotations

import contextlib
import os

import torch


def device() -> torch.device:
    """CUDA if available, then Apple's MPS, then the CPU.

    ``GENBOOK_DEVICE=cpu`` (or ``cuda:1``, ...) overrides the choice.
    """
    override = os.environ.get("GENBOOK_DEVICE")
    if override:
        try:
            return torch.device(override)
        except RuntimeError as err:
            raise ValueError(f"GENBOOK_DEVICE={override!r} is not a torch device (try cpu, cuda, mps).") from err
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
