"""Fashion-MNIST: 70,000 grey 28x28 pictures of clothes in 10 classes.

Xiao, Rasul & Vollgraf (2017), "Fashion-MNIST: a Novel Image Dataset for
Benchmarking Machine Learning Algorithms", arXiv:1708.07747. Licence: MIT.
Files: https://github.com/zalandoresearch/fashion-mnist (IDX format, as MNIST).

Offline first. ``load_fashion_mnist`` looks, in order, in

1. the local cache ``data_dir()/fashion-mnist/{train,test}.npz`` (decoded arrays),
2. Debian's ``/usr/share/datasets/fashion-mnist/`` (``apt-get install dataset-fashion-mnist``),
3. the official download (for readers who are online),

and checks a SHA-256 of the *decoded* pixel and label bytes, since Debian's
gzip files differ byte for byte from the official ones while the arrays agree.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import urllib.request
from pathlib import Path

import numpy as np
import torch

from genbook.paths import data_dir

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

SPLITS = ("train", "test")
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
MIRRORS = (
    "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
)
_FILES = {  # split -> (images file, labels file), without ".gz"
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_COUNTS = {"train": 60_000, "test": 10_000}
# SHA-256 of the decoded arrays' bytes (uint8, C order): images (N, 28, 28), labels (N,).
# Computed once from Debian's dataset-fashion-mnist 0.0~git20200523.55506a9-1 with
# hashlib.sha256(gzip.open(f).read()[header:]) where header = 16 (images) or 8 (labels).
SHA256 = {
    "train-images": "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
    "train-labels": "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",
    "test-images": "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
    "test-labels": "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
}

_HOW_TO_GET = (
    "Fashion-MNIST was not found. Get it in one of these ways:\n"
    "  * sudo apt-get install dataset-fashion-mnist   (Debian/Ubuntu; installs {system})\n"
    "  * run once while online: python -c \"import genbook.data as d; d.load_fashion_mnist('train'); "
    "d.load_fashion_mnist('test')\"\n"
    "    (downloads from {mirror} and caches decoded arrays in {cache})\n"
    "  * or copy the four *-ubyte.gz files from that page into {cache}\n"
    "Tried: {tried}"
)


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"Fashion-MNIST split must be one of {SPLITS}, got {split!r}.")
    return split


def _cache_dir() -> Path:
    return data_dir() / "fashion-mnist"


def _verify(array: np.ndarray, key: str, source: str, fix: str) -> None:
    digest = hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
    if digest != SHA256[key]:
        raise RuntimeError(
            f"Fashion-MNIST checksum mismatch for {key} read from {source}: "
            f"SHA-256 of the decoded array is {digest}, expected {SHA256[key]}. {fix}"
        )


def _decode_idx(raw: bytes, source: str) -> np.ndarray:
    """Decode an IDX file (optionally gzipped): big-endian magic, dims, then uint8 data."""
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 8 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise RuntimeError(f"{source} is not an IDX file of unsigned bytes (bad magic number).")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise RuntimeError(f"{source} is truncated: header says {dims}, found {data.size} bytes.")
    return data.reshape(dims)


def _read_idx_dir(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Images and labels from IDX files in ``directory`` (plain or .gz), or None if absent."""
    arrays = []
    for stem in _FILES[split]:
        path = next((p for p in (directory / f"{stem}.gz", directory / stem) if p.is_file()), None)
        if path is None:
            return None
        arrays.append(_decode_idx(path.read_bytes(), str(path)))
    return arrays[0], arrays[1]


def _fetch(url: str) -> bytes:
    """Download one file (the only network access of this module; tests replace it)."""
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def _download(split: str, tried: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    for mirror in MIRRORS:
        try:
            arrays = [_decode_idx(_fetch(mirror + stem + ".gz"), mirror + stem + ".gz") for stem in _FILES[split]]
        except OSError as error:  # URLError, timeouts, HTTP errors are all OSErrors
            tried.append(f"{mirror} ({error})")
            continue
        return arrays[0], arrays[1]
    return None


def _save_cache(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, images=images, labels=labels)  # uncompressed: loads in tens of ms
    os.replace(tmp, path)  # atomic: a reader never sees half a file


def load_fashion_mnist(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Raw Fashion-MNIST: uint8 images (N, 28, 28) in 0..255 and int64 labels (N,) in 0..9.

    N = 60,000 for ``"train"``, 10,000 for ``"test"``. The first call reads the
    Debian files (or downloads) and writes a verified cache; later calls read the
    cache (well under a second).
    """
    _check_split(split)
    cache = _cache_dir() / f"{split}.npz"
    keys = (f"{split}-images", f"{split}-labels")
    if cache.is_file():
        fix = f"The cache is corrupt: delete {cache} and call load_fashion_mnist again to rebuild it."
        try:
            with np.load(cache) as archive:
                images, labels = archive["images"], archive["labels"]
        except Exception as error:  # truncated zip, missing key, ...
            raise RuntimeError(f"Could not read the Fashion-MNIST cache {cache} ({error}). {fix}") from error
        _verify(images, keys[0], str(cache), fix)
        _verify(labels, keys[1], str(cache), fix)
    else:
        tried = [str(cache)]
        arrays, source = None, ""
        for directory in (_cache_dir(), SYSTEM_DIR):  # raw IDX files copied by hand, then Debian's
            arrays = _read_idx_dir(directory, split)
            if arrays is not None:
                source = str(directory)
                break
            tried.append(str(directory))
        if arrays is None:
            arrays = _download(split, tried)
            source = "the official download"
        if arrays is None:
            raise FileNotFoundError(
                _HOW_TO_GET.format(system=SYSTEM_DIR, mirror=MIRRORS[0], cache=_cache_dir(), tried="; ".join(tried))
            )
        images, labels = arrays
        fix = (
            f"The files in {source} are damaged or not Fashion-MNIST: reinstall them "
            "(sudo apt-get install --reinstall dataset-fashion-mnist) or delete them."
        )
        _verify(images, keys[0], source, fix)
        _verify(labels, keys[1], source, fix)
        _save_cache(cache, images, labels)
    assert images.shape == (_COUNTS[split], 28, 28) and labels.shape == (_COUNTS[split],)
    if not images.flags.writeable:  # np.frombuffer views of decoded IDX bytes are read-only
        images = images.copy()
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))


def fashion_mnist(split: str = "train", n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST ready for a model: x float32 (N, 1, 28, 28) in [-1, 1], y int64 (N,).

    ``n`` keeps the first n examples (the files are already shuffled, so the
    first n are a fair sample with roughly balanced classes).
    """
    images, labels = load_fashion_mnist(split)
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(labels):
            raise ValueError(f"n must be an int in 1..{len(labels)} for split {split!r}, got {n!r}.")
        images, labels = images[:n], labels[:n]
    x = images.unsqueeze(1).float() / 127.5 - 1.0  # 0..255 -> [-1, 1]
    return x, labels
