"""Run a block of torch code on a fixed number of CPU threads, then restore the setting."""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def cpu_threads(n: int | None):
    """Use ``n`` intra-op threads inside the block (``None``: leave the setting alone).

    The evaluators train on one thread: their layers are small, so a second
    thread gains little on an idle machine, while on a busy 2-core machine
    (parallel tests, a notebook server) two threads that wait for each other at
    every operation were measured to run 5-10x slower. One thread also fixes the
    order of floating point reductions, so the trained weights do not depend on
    the machine's core count.
    """
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
