"""Load-or-train: train a model once, then load it on every later run.

A checkpoint is keyed by chapter, name, profile and a hash of the config, so
changing a setting trains a new model instead of loading a stale one. Files are
written atomically (temporary file, then rename) and read with
``torch.load(weights_only=True)``, which cannot run code hidden in a file. A
corrupt or mismatched file raises an error that names the file; genbook never
silently retrains over it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .paths import checkpoint_dir
from .profiles import profile_name

FORMAT = "genbook-checkpoint-1"


class CheckpointError(RuntimeError):
    """A checkpoint file exists but cannot be used (corrupt, or for another config or model)."""


def config_key(config: dict) -> str:
    """A short stable hash of a JSON-serialisable config."""
    try:
        text = json.dumps(config, sort_keys=True)
    except TypeError as err:
        raise TypeError(f"config must be JSON-serialisable (numbers, strings, lists, dicts): {err}") from err
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def checkpoint_path(chapter: str, name: str, config: dict, profile: str | None = None) -> Path:
    """Where the checkpoint of ``name`` in ``chapter`` for this profile and config lives."""
    for label, value in (("chapter", chapter), ("name", name)):
        if not value or not all(c.isalnum() or c in "_-" for c in value):
            raise ValueError(f"{label} must be a non-empty slug of letters, digits, '_' or '-', got {value!r}.")
    profile = profile or profile_name()
    return checkpoint_dir() / chapter / f"{name}-{profile}-{config_key(config)}.pt"


def save_checkpoint(path: Path, model: nn.Module, config: dict, extra: dict | None = None) -> None:
    """Write ``model``'s weights, its config and ``extra`` (plain data) atomically to ``path``."""
    path = Path(path)
    try:  # plain data only, so that weights_only loading can read it back
        extra = json.loads(json.dumps(extra or {}))
    except TypeError as err:
        raise TypeError(f"extra must hold plain data (numbers, strings, lists, dicts): {err}") from err
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "config": json.loads(json.dumps(config, sort_keys=True)),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": extra,
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_checkpoint(path: Path, model: nn.Module, config: dict) -> dict:
    """Load weights saved for ``config`` into ``model``; return the stored ``extra`` dict.

    Raises CheckpointError when the file is corrupt, was saved for another
    config, or does not fit the model's architecture.
    """
    path = Path(path)
    fix = f"Delete {path} to retrain, or pass the config it was trained with."
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # truncated zip, pickle with code in it, not a torch file...
        reason = f"{type(err).__name__}: {err}"
        raise CheckpointError(f"{path} is not a readable genbook checkpoint ({reason}). {fix}") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} file. {fix}")
    wanted = json.loads(json.dumps(config, sort_keys=True))
    if payload["config"] != wanted:
        diff = sorted(k for k in set(wanted) | set(payload["config"]) if wanted.get(k) != payload["config"].get(k))
        raise CheckpointError(f"{path} was trained with another config (differs in {diff}). {fix}")
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not fit this model's architecture: {err}. {fix}") from err
    return payload["extra"]


def retrain_requested(chapter: str) -> bool:
    """Whether ``GENBOOK_RETRAIN`` asks to retrain the models of ``chapter``."""
    wanted = [w.strip() for w in os.environ.get("GENBOOK_RETRAIN", "").split(",") if w.strip()]
    return "1" in wanted or "all" in wanted or chapter in wanted


def load_or_train(
    model: nn.Module,
    train: Callable[[nn.Module], dict | None],
    *,
    chapter: str,
    name: str,
    config: dict,
    retrain: bool = False,
) -> tuple[nn.Module, dict]:
    """Return ``(model, info)``: loaded from the cache if present, else trained by ``train(model)``.

    ``train`` may return a dict of plain data (e.g. ``{"losses": [...]}``) that is
    saved with the weights and handed back on later loads. ``info`` holds that
    dict plus ``cached`` (bool) and ``path``. ``retrain=True`` trains again and
    overwrites the file; so does ``GENBOOK_RETRAIN=1`` (every model) or
    ``GENBOOK_RETRAIN=05_ddpm,07_flow_matching`` (the models of those chapters).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    path = checkpoint_path(chapter, name, config)
    retrain = retrain or retrain_requested(chapter)
    if path.exists() and not retrain:
        extra = load_checkpoint(path, model, config)
        return model, {**extra, "cached": True, "path": str(path)}
    extra = train(model) or {}
    if not isinstance(extra, dict):
        raise TypeError(f"train(model) must return a dict or None, got {type(extra).__name__}.")
    save_checkpoint(path, model, config, extra)
    return model, {**json.loads(json.dumps(extra)), "cached": False, "path": str(path)}
