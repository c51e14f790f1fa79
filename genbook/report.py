"""Record what a chapter achieved: ``_build/results/<slug>.json``.

The benchmark table (``make bench``) and the book's results page read these
files, so every number a chapter claims is stored next to the baselines it
was compared with, the profile it ran in and how long it took.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path

import torch

from .devices import device
from .paths import build_dir, repo_relative
from .profiles import profile_name

_STARTED = time.perf_counter()  # genbook is imported in a chapter's first cell


def results_dir() -> Path:
    path = build_dir() / "results"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _number(name: str, value) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a single number, got a tensor of shape {tuple(value.shape)}.")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}.")
    if not math.isfinite(value):
        raise ValueError(f"{name} is {value}; a reported result must be finite.")
    return float(value)


class Record(dict):
    """The dict ``report`` writes, shown as one summary line (a notebook cell or ``print`` shows that line).

    ``record["metrics"]`` and the other keys are as in the JSON file; ``json.dumps(record)`` works as for a dict.
    """

    def summary(self) -> str:
        """``05_ddpm (fast, cpu, 123 s): fd_ddim_20 = 63.1, ...; baselines: pca_fd = 166; written to ...``."""
        numbers = lambda values: ", ".join(f"{k} = {v:.4g}" for k, v in values.items())  # noqa: E731
        parts = [f"{self.get('chapter')} ({self.get('profile')}, {self.get('device')}, {self.get('wall_s', 0):.0f} s)"
                 f": {numbers(self.get('metrics', {}))}"]
        if self.get("baselines"):
            parts.append(f"baselines: {numbers(self['baselines'])}")
        parts.append(f"recorded in {repo_relative(results_dir() / (str(self.get('chapter')) + '.json'))}")
        return "; ".join(parts)

    def __repr__(self) -> str:
        return self.summary()

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython's display of a cell's last value
        printer.text(self.summary())


def report(chapter: str, metrics: dict, baselines: dict | None = None, wall_s: float | None = None, *,
           timings: dict | None = None, **notes) -> Record:
    """Write ``_build/results/<chapter>.json`` and return the record (a dict shown as one summary line).

    metrics / baselines: name -> number (floats, ints or 0-d tensors); with fixed seeds
        these are the same, bit for bit, on every run on one machine.
    timings: name -> number for what depends on the machine's speed and load
        (``ms_per_step``, ``samples_per_second``); kept apart, in ``record["timings"]``,
        so that metrics stay reproducible.
    wall_s: seconds the chapter took; defaults to the time since genbook was imported.
    notes: extra JSON-serialisable facts (e.g. ``n_samples=1000``).
    """
    if not chapter or not all(c.isalnum() or c in "_-" for c in chapter):
        raise ValueError(f"chapter must be a slug such as '05_ddpm', got {chapter!r}.")
    if not isinstance(metrics, dict) or not metrics:
        raise ValueError("metrics must be a non-empty dict of name -> number.")
    record = {
        "chapter": chapter,
        "profile": profile_name(),
        "wall_s": round(_number("wall_s", wall_s if wall_s is not None else time.perf_counter() - _STARTED), 2),
        "metrics": {k: _number(f"metrics[{k!r}]", v) for k, v in metrics.items()},
        "baselines": {k: _number(f"baselines[{k!r}]", v) for k, v in (baselines or {}).items()},
        "timings": {k: _number(f"timings[{k!r}]", v) for k, v in (timings or {}).items()},
        "device": str(device()),
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **json.loads(json.dumps(notes)),
    }
    path = results_dir() / f"{chapter}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)
    return Record(record)


def load_results() -> list[dict]:
    """All recorded results, sorted by chapter slug."""
    return [json.loads(p.read_text()) for p in sorted(results_dir().glob("*.json"))]
