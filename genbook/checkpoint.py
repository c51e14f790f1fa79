"""Load-or-train: train a model once, then load it on every later run.

A checkpoint's file is named by chapter, name, profile and a hash of the config,
so changing a setting trains a new model instead of loading a stale one. The file
also records a hash of the code that built and trained the model
(:func:`source_key`: the source of the model's classes and of the training
function, with the functions and classes of the same notebook or module that it
uses); when that code changed, the model is retrained (one line says so) and the
file overwritten. A model trained from another one (fine-tuned from it, or trained
on its outputs) names it with ``parent=``: the file records the parent's
fingerprint (its config, code and own parents), and a changed parent retrains the
child in the same way. Files are written atomically (temporary file, then rename),
with the permissions the umask allows and the same bytes for the same weights,
and read with ``torch.load(weights_only=True)``, which cannot run code hidden in
a file. A corrupt or mismatched file raises an error that names the file;
genbook never silently retrains over it.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import io
import json
import os
import threading
import types
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from . import switches
from .paths import REPO_ROOT, checkpoint_dir
from .profiles import profile_name
from .training import metered

FORMAT = "genbook-checkpoint-1"
RETRAIN_ALL = "all"
RETRAIN_EXTRA_TARGETS = ("metrics",)  # the shared evaluators (genbook.metrics) are cached under this name


class CheckpointError(RuntimeError):
    """A checkpoint file exists but cannot be used (corrupt, or for another config or model)."""


class StaleCheckpointError(CheckpointError):
    """A checkpoint was trained by other code than the code now asking for it."""


class StaleParentError(StaleCheckpointError):
    """A checkpoint was trained from other parent models (see ``load_or_train(parent=...)``) than those now given."""


# --------------------------------------------------------------- what code trained the model


def _source_text(obj) -> str:
    """The source of a function or class; a stable stand-in where there is none (builtins, C code).

    A class of ``__main__`` (a chapter run as a notebook in a kernel, or as a script) is keyed
    by the source of its methods: a kernel cannot give a class's source, only its functions',
    so keying a script's class by its full text would give the two ways of running a chapter
    different keys, and the script would retrain every model the notebook had trained.
    """
    if not (inspect.isclass(obj) and obj.__module__ == "__main__"):
        try:
            return inspect.getsource(obj)
        except (OSError, TypeError):
            pass
    if inspect.isclass(obj):  # a notebook cell's class: its methods still have source
        methods = [_source_text(v) for _, v in sorted(vars(obj).items()) if inspect.isfunction(v)]
        return f"class {obj.__qualname__}\n" + "\n".join(methods)
    code = getattr(obj, "__code__", None)
    if code is not None:
        return code.co_code.hex() + repr(code.co_names)
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):  # nested functions and lambdas
            names |= _code_names(const)
    return names


def _is_own(obj, module: str | None) -> bool:
    """A function or class of ``module`` (the notebook or module being keyed), not a library's."""
    return (inspect.isfunction(obj) or inspect.isclass(obj)) and module is not None and obj.__module__ == module


def _unwrap(fn):
    while True:
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif inspect.ismethod(fn):
            fn = fn.__func__
        else:
            return fn


def _references(obj) -> list:
    """Functions and classes of obj's own module that obj uses (by global name or closure)."""
    module = getattr(obj, "__module__", None)
    functions = [obj] if inspect.isfunction(obj) else []
    if inspect.isclass(obj):
        functions = [v for v in vars(obj).values() if inspect.isfunction(v)]
    found = []
    for fn in functions:
        for name in sorted(_code_names(fn.__code__)):
            value = fn.__globals__.get(name)
            if _is_own(value, module):
                found.append(value)
        for cell in fn.__closure__ or ():
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if _is_own(value, module):
                found.append(value)
    if inspect.isclass(obj):
        found += [base for base in obj.__mro__[1:] if not base.__module__.startswith(("torch", "builtins"))]
    return found


def source_key(model: nn.Module, train: Callable) -> str:
    """A hash of the code that builds and trains ``model``.

    It covers the source of the classes of ``model`` and of its submodules (those
    not from torch), of ``train``, and, followed through global names and closures,
    of the functions and classes of the same notebook or module that they use (a
    loss, a step function, a helper). ``inspect.getsource`` reads functions defined
    in notebook cells too. Code without source (builtins, C extensions) counts by
    its name only. Library code (torch, or genbook when called from a notebook) is
    not followed; names are not hashed, so the same code in another module gives
    the same key.
    """
    roots = [_unwrap(train)]
    if not (inspect.isfunction(roots[0]) or inspect.isclass(roots[0])):
        roots.append(type(roots[0]))  # a callable object: key its class
    classes = {type(m) for m in model.modules()}
    roots += sorted((c for c in classes if not c.__module__.startswith("torch")),
                    key=lambda c: (c is not type(model), c.__qualname__))
    seen: dict[int, str] = {}
    queue = list(roots)
    while queue:
        obj = queue.pop(0)
        if id(obj) in seen:
            continue
        seen[id(obj)] = f"{getattr(obj, '__qualname__', '?')}\n{_source_text(obj)}"
        queue += _references(obj)
    digest = hashlib.sha256()
    for text in sorted(seen.values()):
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()[:16]


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


def save_checkpoint(path: Path, model: nn.Module, config: dict, extra: dict | None = None,
                    source: str | None = None, parents: list[str] | None = None) -> None:
    """Write ``model``'s weights, its config, ``extra`` (plain data), the ``source`` key and the fingerprints of
    the ``parents`` it was trained from (recorded only when there are some) atomically to ``path``.

    The file gets the permissions the umask allows (a shared ``GENBOOK_CHECKPOINTS`` works)
    and the same bytes for the same contents (no temporary name is recorded inside).
    """
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
        "source": source,
    }
    if parents:
        payload["parents"] = list(parents)
    buffer = io.BytesIO()  # in memory: torch.save names a file's records after the file, a temporary name here
    torch.save(payload, buffer)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:  # open() honours the umask, unlike tempfile's 0600
            f.write(buffer.getvalue())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _unreadable_reason(err: Exception) -> str:
    """Why torch could not read a file, without torch's advice to load it with weights_only=False
    (wrong for a corrupt file, and for a malicious one it would run the code inside)."""
    if "weights_only" in str(err) or "Unpickl" in type(err).__name__:
        return "it holds Python objects other than tensors and plain data, which genbook refuses to unpickle"
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {first[:200]}" if first else type(err).__name__


def load_checkpoint(path: Path, model: nn.Module, config: dict, source: str | None = None,
                    parents: list[str] | None = None) -> dict:
    """Load weights saved for ``config`` into ``model``; return the stored ``extra`` dict.

    Raises CheckpointError when the file is corrupt, was saved for another
    config, or does not fit the model's architecture; StaleCheckpointError when
    ``source`` is given and the file was trained by other code (see :func:`source_key`);
    StaleParentError when ``parents`` (fingerprints, ``[]`` for none) is given and the file
    was trained from other parent models.
    """
    path = Path(path)
    fix = f"Delete {path} to retrain, or pass the config it was trained with."
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # truncated zip, pickle with code in it, not a torch file...
        raise CheckpointError(
            f"{path} is not a readable genbook checkpoint ({_unreadable_reason(err)}). "
            f"Delete {path} and run again to retrain; do not load it by other means."
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} file. {fix}")
    wanted = json.loads(json.dumps(config, sort_keys=True))
    if payload["config"] != wanted:
        diff = sorted(k for k in set(wanted) | set(payload["config"]) if wanted.get(k) != payload["config"].get(k))
        raise CheckpointError(f"{path} was trained with another config (differs in {diff}). {fix}")
    if source is not None and payload.get("source") != source:
        raise StaleCheckpointError(f"{path} was trained by other code than the code now given.")
    if parents is not None and payload.get("parents", []) != list(parents):
        raise StaleParentError(f"{path} was trained from other parent models than those now given.")
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not fit this model's architecture: {err}. {fix}") from err
    return payload["extra"]


def retrain_targets() -> tuple[str, ...]:
    """What ``GENBOOK_RETRAIN`` may name: the chapter slugs of book.toml and ``metrics`` (the evaluators)."""
    from .book.manifest import load_manifest

    if not (REPO_ROOT / "book.toml").is_file():  # genbook used outside the book's repository
        return RETRAIN_EXTRA_TARGETS
    return tuple(c.slug for c in load_manifest().chapters) + RETRAIN_EXTRA_TARGETS


def retrain_selection() -> frozenset[str] | str:
    """``GENBOOK_RETRAIN`` parsed: ``"all"``, or the set of slugs named (empty: retrain nothing).

    Accepted (spaces and case do not matter): unset, empty or ``0`` for nothing;
    ``1`` or ``all`` for every model; or a comma-separated list of chapter slugs from
    book.toml and ``metrics`` (the shared evaluators), e.g. ``05_ddpm,07_flow_matching``.
    """
    wanted = switches.value("GENBOOK_RETRAIN")
    if wanted in ("", "0"):
        return frozenset()
    if wanted in ("1", RETRAIN_ALL):
        return RETRAIN_ALL
    parts = [p.strip() for p in wanted.split(",")]
    targets = retrain_targets()
    unknown = [p for p in parts if p not in targets]
    if unknown or not parts:
        raise switches.invalid(
            "GENBOOK_RETRAIN",
            "0 or empty (retrain nothing), 1 or all (retrain every model), or a comma-separated list of "
            f"these: {', '.join(targets)}" + (f"; not known: {', '.join(map(repr, unknown))}" if unknown else ""),
        )
    return frozenset(parts)


def retrain_requested(chapter: str) -> bool:
    """Whether ``GENBOOK_RETRAIN`` asks to retrain the models of ``chapter``."""
    selection = retrain_selection()
    return selection == RETRAIN_ALL or chapter in selection


def parent_fingerprints(parent) -> list[str]:
    """The fingerprints of ``parent``: None, one ``info`` dict returned by :func:`load_or_train`, or a list of them."""
    if parent is None:
        return []
    parents = [parent] if isinstance(parent, dict) else parent
    if not isinstance(parents, (list, tuple)):
        raise TypeError(f"parent must be the info dict that load_or_train returned for the parent model, or a list "
                        f"of them, got {type(parent).__name__}.")
    fingerprints = []
    for k, info in enumerate(parents):
        where = "parent" if isinstance(parent, dict) else f"parent[{k}]"
        if not isinstance(info, dict):
            raise TypeError(f"{where} must be the info dict that load_or_train returned for the parent model, "
                            f"got {type(info).__name__}.")
        value = info.get("fingerprint")
        if not (isinstance(value, str) and value):
            raise ValueError(f"{where} has no 'fingerprint': pass the info dict that load_or_train returned for the "
                             f"parent model (model, info = genbook.load_or_train(...)), not its config; got keys "
                             f"{sorted(info)[:8]}.")
        fingerprints.append(value)
    return fingerprints


def fingerprint(chapter: str, name: str, config: dict, source: str, parents: list[str],
                profile: str | None = None) -> str:
    """A stable hash that names a trained model: chapter, name, profile, config key, source key and the
    fingerprints of its parents (so it changes when any model upstream of it changes)."""
    text = json.dumps({"chapter": chapter, "name": name, "profile": profile or profile_name(),
                       "config": config_key(config), "source": source, "parents": list(parents)})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_or_train(
    model: nn.Module,
    train: Callable[[nn.Module], dict | None],
    *,
    chapter: str,
    name: str,
    config: dict,
    retrain: bool = False,
    parent: dict | list[dict] | None = None,
) -> tuple[nn.Module, dict]:
    """Return ``(model, info)``: loaded from the cache if present, else trained by ``train(model)``.

    ``train`` may return a dict of plain data (e.g. ``{"losses": [...]}``) that is
    saved with the weights and handed back on later loads. ``info`` holds that
    dict plus ``cached`` (bool), ``path``, ``fingerprint`` (see ``parent``) and ``training``: the cost of
    training measured when it ran (``fit`` steps, seconds, ms_per_step, parameters, device; see
    :func:`genbook.training.metered`), kept in the checkpoint so a loaded model still reports it.
    The model comes back in eval mode whether it was loaded or trained (dropout off, BatchNorm on its
    running statistics), so a cached run computes what a training run does; call ``.train()`` to train it further.
    ``retrain=True`` trains again and overwrites the file; so does ``GENBOOK_RETRAIN=1`` (every model) or
    ``GENBOOK_RETRAIN=05_ddpm,07_flow_matching`` (the models of those chapters).

    A cached model is used only if the code that built and trained it is unchanged
    (:func:`source_key`: the model's classes, ``train`` and the functions and classes
    of the same notebook it uses); after an edit the model is retrained and one line
    says so.

    ``parent``: for a model trained from other models (fine-tuned from one, or trained on its outputs or codes),
    the ``info`` dict that load_or_train returned for that parent, or a list of them. ``info["fingerprint"]``
    names a model by its chapter, name, profile, config, code and its own parents; the child's file records its
    parents' fingerprints, and when a parent's config or code changed (or one of its parents did) the child is
    retrained and one line says so. The child's file is named by its own config only and holds one version: going
    back to an earlier parent retrains the child again (give a child of another parent its own name). E.g.::

        base, base_info = genbook.load_or_train(new_unet(), train_base, chapter=..., name="base", config=cfg)
        tuned, _ = genbook.load_or_train(new_unet(), fine_tune, chapter=..., name="tuned", config=tune_cfg,
                                         parent=base_info)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    parents = parent_fingerprints(parent)
    path = checkpoint_path(chapter, name, config)
    source = source_key(model, train)
    named = {"path": str(path), "fingerprint": fingerprint(chapter, name, config, source, parents)}
    retrain = retrain or retrain_requested(chapter)
    if path.exists() and not retrain:
        try:
            extra = load_checkpoint(path, model, config, source=source, parents=parents)
            return model.eval(), {**extra, "cached": True, **named}
        except StaleParentError:
            print(f"{chapter}/{name}: a model it was trained from (parent=) changed since {path.name} "
                  "was saved: retraining.", flush=True)
        except StaleCheckpointError:
            print(f"{chapter}/{name}: the code of the model or of its training changed since {path.name} "
                  "was saved: retraining.", flush=True)
    with metered() as meter:
        extra = train(model) or {}
    if not isinstance(extra, dict):
        raise TypeError(f"train(model) must return a dict or None, got {type(extra).__name__}.")
    extra = {**extra, "training": extra.get("training", meter.summary(model))}
    save_checkpoint(path, model, config, extra, source=source, parents=parents)
    return model.eval(), {**json.loads(json.dumps(extra)), "cached": False, **named}
