"""One protocol for every Fashion-MNIST chapter: the same n, the same metrics, the same cost clock.

A chapter's image numbers are comparable with another chapter's only if both
measure alike. Every image chapter therefore

1. draws its samples with ``timed_sampling`` (ms per image and NFE, the clock
   covering sampling only, never evaluation);
2. measures them with ``evaluate_fashion`` at ``n_eval()`` images against
   ``reference_images(n)``: FD with a bootstrap uncertainty, precision and
   recall (Kynkäänniemi et al. 2019) and, for conditional models, conditional
   accuracy; next to ``image_baselines(n)`` (real vs real, blurred, PCA-Gaussian);
3. saves its final samples and their cost with ``save_samples``, so that the
   capstone can ``load_samples`` every family and evaluate them with one evaluator.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

from genbook.devices import device as default_device
from genbook.metrics.baselines import N_TEST, reference_images
from genbook.metrics.fashion_evaluator import (
    MIN_IMAGES_FD,
    N_CLASSES,
    FashionEvaluator,
    check_fashion_images,
    conditional_accuracy,
    fashion_evaluator,
)
from genbook.metrics.frechet import frechet_distance_bootstrap
from genbook.metrics.precision_recall import precision_recall
from genbook.paths import build_dir
from genbook.profiles import profile, profile_name
from genbook.validation import check_tensor

N_EVAL_FAST = 1000
N_EVAL_FULL = 5000
SAMPLES_FORMAT = 1  # version of the saved-samples file layout
_STAMP = "%Y-%m-%dT%H:%M:%S"  # local time to the second, as genbook.report writes "finished"


def n_eval() -> int:
    """Images every Fashion-MNIST chapter evaluates: ``N_EVAL_FAST`` or ``N_EVAL_FULL`` by profile."""
    return profile(fast=N_EVAL_FAST, full=N_EVAL_FULL)


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return value


def evaluate_fashion(
    samples: torch.Tensor,
    *,
    n: int | None = None,
    evaluator: FashionEvaluator | None = None,
    labels: torch.Tensor | None = None,
    n_boot: int = 100,
) -> dict[str, float]:
    """The protocol's numbers for ``samples`` (N, 1, 28, 28) in [-1, 1]; the first ``n`` are used.

    ``n`` defaults to ``n_eval()``; the reference is ``reference_images(n)``. The
    evaluator's features are computed once per set and reused. Returns floats:
    ``fd``, ``fd_low``, ``fd_high`` (bootstrap interval, see ``frechet_distance_bootstrap``),
    ``fd_ci`` (its half-width), ``precision``, ``recall`` (k = 3), and ``accuracy``
    (conditional accuracy) when ``labels`` (N,), the requested classes, are given.
    """
    check_fashion_images(samples, "samples")
    n = n_eval() if n is None else n
    if isinstance(n, bool) or not isinstance(n, int) or not MIN_IMAGES_FD <= n <= N_TEST:
        raise ValueError(f"n must be an int in {MIN_IMAGES_FD}..{N_TEST} (FD is biased below {MIN_IMAGES_FD}), "
                         f"got {n!r}.")
    if len(samples) < n:
        raise ValueError(f"samples has {len(samples)} images; the protocol evaluates n={n}. Draw at least n "
                         f"(n_eval() is {N_EVAL_FAST} in the fast profile, {N_EVAL_FULL} in the full one).")
    if labels is not None:
        check_tensor(labels, "labels", shape=(len(samples),), dtype=torch.int64, value_range=(0, N_CLASSES - 1))
    ev = evaluator if evaluator is not None else fashion_evaluator()
    fake = ev.features(samples[:n])  # (n, 128)
    real = ev.features(reference_images(n))  # (n, 128)
    fd = frechet_distance_bootstrap(fake, real, n_boot=n_boot)
    out = {"fd": fd["fd"], "fd_low": fd["low"], "fd_high": fd["high"], "fd_ci": (fd["high"] - fd["low"]) / 2}
    out.update(precision_recall(real, fake))
    if labels is not None:
        out["accuracy"] = conditional_accuracy(samples[:n], labels[:n], evaluator=ev)
    return out


def _synchronize(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    elif dev.type == "mps":
        torch.mps.synchronize()


def timed_sampling(
    sample_batch: Callable[[int, torch.Generator], torch.Tensor],
    n: int,
    *,
    batch_size: int,
    nfe: float,
    device: torch.device | str | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, dict]:
    """Draw ``n`` images with ``sample_batch(b, generator)`` and time the sampling alone.

    ``sample_batch`` returns a tensor (b, ...) of b new images; it is called with
    b = ``batch_size`` (the last call: the remainder) and one generator on
    ``device`` (default ``genbook.device()``) seeded with ``seed``, so the result
    is reproducible. It runs under ``torch.no_grad()``. The clock starts and stops
    after synchronising the device and excludes the copy to the CPU.
    ``nfe``: network evaluations per image, stated by the caller (the sampler knows).

    Returns ``(images on the CPU, cost)`` with
    ``cost = {"ms_per_image", "nfe", "n", "batch_size", "seconds", "device"}``.
    """
    if not callable(sample_batch):
        raise TypeError(f"sample_batch must be a function (b, generator) -> tensor, got {type(sample_batch).__name__}.")
    n, batch_size = _positive_int(n, "n"), _positive_int(batch_size, "batch_size")
    if isinstance(nfe, bool) or not isinstance(nfe, (int, float)) or not (math.isfinite(nfe) and nfe > 0):
        raise ValueError(f"nfe must be a positive number (network evaluations per image), got {nfe!r}.")
    dev = torch.device(device) if device is not None else default_device()
    generator = torch.Generator(device=dev).manual_seed(seed)
    batches = []
    _synchronize(dev)
    start = time.perf_counter()
    with torch.no_grad():
        for done in range(0, n, batch_size):
            b = min(batch_size, n - done)
            batch = sample_batch(b, generator)
            if not isinstance(batch, torch.Tensor) or batch.dim() == 0 or batch.shape[0] != b:
                got = tuple(batch.shape) if isinstance(batch, torch.Tensor) else type(batch).__name__
                raise ValueError(f"sample_batch({b}, generator) must return a tensor of {b} images, got {got}.")
            batches.append(batch)
    _synchronize(dev)
    seconds = time.perf_counter() - start
    images = torch.cat(batches).cpu()
    cost = {"ms_per_image": 1000 * seconds / n, "nfe": nfe, "n": n, "batch_size": batch_size, "seconds": seconds,
            "device": str(dev)}
    return images, cost


def _check_slug(value, name: str) -> str:
    if not isinstance(value, str) or not value or not all(c.isalnum() or c in "_-" for c in value):
        raise ValueError(f"{name} must be a slug of letters, digits, '_' and '-' (such as '05_ddpm'), got {value!r}.")
    return value


def samples_path(chapter: str, name: str) -> Path:
    """``<build>/samples/<chapter>/<name>-<profile>.pt`` for the active profile."""
    chapter, name = _check_slug(chapter, "chapter"), _check_slug(name, "name")
    return build_dir() / "samples" / chapter / f"{name}-{profile_name()}.pt"


def save_samples(
    chapter: str, name: str, images: torch.Tensor, *, cost: dict, labels: torch.Tensor | None = None,
    training: dict | list[dict] | None = None, **notes
) -> Path:
    """Save a chapter's final samples (N, C, H, W) in [-1, 1] and their sampling cost; return the path.

    Images are stored quantised to uint8 (256 levels, as the data itself), so
    ``load_samples`` returns them within 1/255 of what was saved. ``cost`` is the
    dict of ``timed_sampling`` (at least ``ms_per_image`` and ``nfe``); ``labels``
    (N,) int64 are the requested classes of a conditional model; ``training`` is the
    training cost ``load_or_train`` reports as ``info["training"]`` (a list of them for a
    model trained in stages, e.g. a prior on a tokenizer); ``notes`` are
    JSON-serialisable facts (steps, sampler, ...). One file per chapter, name and
    profile, written atomically.
    """
    path = samples_path(chapter, name)
    check_tensor(images, "images", shape=("N", "C", "H", "W"), dtype="floating", min_batch=1)
    if not torch.isfinite(images).all():
        raise ValueError("images contains NaN or infinite values.")
    check_tensor(images, "images", value_range=(-1.0, 1.0))
    if labels is not None:
        check_tensor(labels, "labels", shape=(len(images),), dtype=torch.int64)
        labels = labels.detach().cpu()
    if not isinstance(cost, dict):
        raise TypeError(f"cost must be a dict such as timed_sampling returns, got {type(cost).__name__}.")
    for key in ("ms_per_image", "nfe"):
        value = cost.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value >= 0):
            raise ValueError(f"cost[{key!r}] must be a finite number >= 0 (timed_sampling measures it), got {value!r}.")
    stages = [training] if isinstance(training, dict) else training
    if stages is not None and not (isinstance(stages, list) and all(isinstance(t, dict) for t in stages)):
        raise TypeError("training must be the dict load_or_train reports as info['training'] (or a list of "
                        f"them), got {type(training).__name__}.")
    for stage in stages or []:
        if not isinstance(stage.get("steps"), int) or not isinstance(stage.get("seconds"), (int, float)):
            raise ValueError("each training record needs int 'steps' and numeric 'seconds' (as "
                             f"load_or_train's info['training'] has), got {stage!r}.")
    try:
        cost, notes = json.loads(json.dumps(cost)), json.loads(json.dumps(notes))
    except (TypeError, ValueError) as err:
        raise ValueError(f"cost and notes must be JSON-serialisable: {err}") from err
    pixels = ((images.detach().cpu().float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    info = {"chapter": chapter, "name": name, "profile": profile_name(), "n": len(images),
            "shape": list(images.shape[1:]), "stored_as": "uint8", "cost": cost, "training": stages, "notes": notes,
            "saved": time.strftime(_STAMP)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"format": SAMPLES_FORMAT, "images": pixels, "labels": labels, "info": info}, tmp)
    os.replace(tmp, path)
    return path


def _read(path: Path) -> tuple[torch.Tensor, dict]:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != SAMPLES_FORMAT:
        raise ValueError(f"{path} is not a genbook samples file of format {SAMPLES_FORMAT}; rerun its chapter.")
    info = dict(payload["info"], path=str(path))
    if payload["labels"] is not None:
        info["labels"] = payload["labels"]
    return payload["images"].float() / 127.5 - 1, info


def load_samples(chapter: str, name: str) -> tuple[torch.Tensor, dict]:
    """Samples saved by ``save_samples`` in the active profile: (images float in [-1, 1], info).

    ``info`` holds chapter, name, profile, n, shape, cost, training (None if not given), notes, saved, path and
    ``labels`` (N,) when labels were saved.
    """
    path = samples_path(chapter, name)
    if not path.exists():
        raise FileNotFoundError(
            f"No samples named {name!r} saved by chapter {chapter!r} in the {profile_name()} profile ({path}). "
            f"Run that chapter first: `make test` runs every chapter, or execute chapters/{chapter}.py "
            f"(with GENBOOK_PROFILE={profile_name()})."
        )
    return _read(path)


def _last_run_started(results_file: Path, profile: str) -> float | None:
    """When the run of a chapter recorded in ``results_file`` started (epoch seconds), if it ran in ``profile``."""
    try:
        record = json.loads(results_file.read_text())
        if record.get("profile") != profile:
            return None
        return time.mktime(time.strptime(record["finished"], _STAMP)) - float(record["wall_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def saved_samples() -> list[dict]:
    """Info dicts (as ``load_samples`` returns them) of every saved sample set, all profiles, sorted by path.

    Each has ``stale``: True when the set was saved before the start of its chapter's latest recorded run
    (``genbook.report``'s results file) in the same profile, which did not save it again: a set that the
    chapter's present code no longer draws (a renamed sampler, say), kept from an older run.
    """
    sets, started_at = [], {}  # (chapter, profile) -> start of its latest run: each results file read once
    for path in sorted((build_dir() / "samples").glob("*/*.pt")):
        info = _read(path)[1]
        run = (info["chapter"], info["profile"])
        if run not in started_at:
            started_at[run] = _last_run_started(build_dir() / "results" / f"{run[0]}.json", run[1])
        started = started_at[run]
        saved = time.mktime(time.strptime(info["saved"], _STAMP))
        info["stale"] = started is not None and saved < started - 1  # timestamps are whole seconds
        sets.append(info)
    return sets
