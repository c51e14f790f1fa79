"""genbook: the small, GPU-ready package behind the chapters of the book.

The names a chapter needs most are available at the top level::

    import genbook
    cfg = genbook.profile(fast=dict(steps=300), full=dict(steps=20_000))
    dev = genbook.device()
    genbook.seed_everything(0)
"""

from . import switches
from .checkpoint import CheckpointError, load_or_train
from .devices import autocast, cpu_threads, device
from .plotting import image_grid, plot_losses, show_images
from .profiles import profile, profile_name
from .progress import progress
from .report import report
from .seeding import seed_everything
from .training import EMA, History, adam, batches, fit, warmup_constant, warmup_cosine
from .validation import check_tensor

__version__ = "0.1.0"

switches.check_all()  # a misspelt GENBOOK_* switch fails here, even when every model is cached

__all__ = [
    "EMA", "CheckpointError", "History", "adam", "autocast", "batches", "check_tensor", "cpu_threads", "device",
    "fit", "image_grid", "load_or_train", "plot_losses", "profile", "profile_name", "progress", "report",
    "seed_everything", "show_images", "warmup_constant", "warmup_cosine",
]
