"""Fashion-MNIST: counts, dtypes, ranges, class balance, cache speed, checksums, helpful errors."""

import gzip
import importlib
import time
import urllib.error

import numpy as np
import pytest
import torch

from genbook.data import CLASS_NAMES, fashion_mnist, load_fashion_mnist

fm = importlib.import_module("genbook.data.fashion_mnist")  # the module, not the function of that name


@pytest.fixture(scope="module")
def test_split():
    """The real test split as numpy arrays, loaded once (from the cache in data/ or Debian's files)."""
    images, labels = load_fashion_mnist("test")
    return images.numpy(), labels.numpy().astype(np.uint8)


def _idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes, as in the official distribution."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def _offline(monkeypatch, tmp_path):
    """A fresh empty cache, no Debian files, and no network."""
    monkeypatch.setenv("GENBOOK_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(fm, "SYSTEM_DIR", tmp_path / "no-such-dir")

    def refuse(url):
        raise urllib.error.URLError("network blocked by the test")

    monkeypatch.setattr(fm, "_fetch", refuse)


@pytest.mark.parametrize("split, count", [("train", 60_000), ("test", 10_000)])
def test_counts_dtypes_and_balanced_classes(split, count):
    images, labels = load_fashion_mnist(split)
    assert images.shape == (count, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (count,) and labels.dtype == torch.int64
    assert images.max() == 255 and images.min() == 0
    assert torch.bincount(labels, minlength=10).tolist() == [count // 10] * 10
    assert len(CLASS_NAMES) == 10 and CLASS_NAMES[9] == "Ankle boot"


def test_scaled_tensors_and_first_n():
    x, y = fashion_mnist("test", n=500)
    assert x.shape == (500, 1, 28, 28) and x.dtype == torch.float32 and y.shape == (500,)
    assert x.min() == -1.0 and x.max() == 1.0
    images, labels = load_fashion_mnist("test")
    torch.testing.assert_close(x[:, 0], images[:500].float() / 127.5 - 1)
    assert torch.equal(y, labels[:500])
    assert torch.bincount(y, minlength=10).min() >= 30  # the files are shuffled: every class shows up


def test_cache_load_is_fast():
    load_fashion_mnist("train")  # make sure the cache exists
    start = time.perf_counter()
    load_fashion_mnist("train")
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("bad", ["val", "Train", ""])
def test_unknown_split_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="must be one of"):
        load_fashion_mnist(bad)


@pytest.mark.parametrize("n", [0, -1, 10_001, 2.5])
def test_bad_n_is_a_clear_error(n):
    with pytest.raises(ValueError, match="n must be"):
        fashion_mnist("test", n=n)


def test_corrupt_cache_raises_and_names_the_file(test_split, monkeypatch, tmp_path):
    _offline(monkeypatch, tmp_path)
    images, labels = test_split
    images = images.copy()
    images[123, 4, 5] ^= 1  # one flipped bit
    cache = tmp_path / "cache" / "fashion-mnist" / "test.npz"
    cache.parent.mkdir(parents=True)
    np.savez(cache, images=images, labels=labels)
    with pytest.raises(RuntimeError, match="checksum mismatch") as error:
        load_fashion_mnist("test")
    assert str(cache) in str(error.value) and "delete" in str(error.value)


def test_unreadable_cache_says_delete(monkeypatch, tmp_path):
    _offline(monkeypatch, tmp_path)
    cache = tmp_path / "cache" / "fashion-mnist" / "test.npz"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(RuntimeError, match="delete"):
        load_fashion_mnist("test")


def test_wrong_system_files_raise(test_split, monkeypatch, tmp_path):
    _offline(monkeypatch, tmp_path)
    images, labels = test_split
    system = tmp_path / "system"
    system.mkdir()
    (system / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(255 - images), 1))
    (system / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(labels), 1))
    monkeypatch.setattr(fm, "SYSTEM_DIR", system)
    with pytest.raises(RuntimeError, match="checksum mismatch.*reinstall"):
        load_fashion_mnist("test")
    assert not (tmp_path / "cache" / "fashion-mnist" / "test.npz").exists()  # nothing bad was cached


def test_no_source_says_how_to_get_it(monkeypatch, tmp_path):
    _offline(monkeypatch, tmp_path)
    with pytest.raises(FileNotFoundError) as error:
        load_fashion_mnist("train")
    message = str(error.value)
    assert "sudo apt-get install dataset-fashion-mnist" in message
    assert "online" in message and "network blocked by the test" in message


def test_download_is_decoded_verified_and_cached(test_split, monkeypatch, tmp_path):
    _offline(monkeypatch, tmp_path)
    images, labels = test_split
    served = {
        "t10k-images-idx3-ubyte.gz": gzip.compress(_idx_bytes(images), 1),
        "t10k-labels-idx1-ubyte.gz": gzip.compress(_idx_bytes(labels), 1),
    }
    requested = []

    def fake_fetch(url):
        requested.append(url)
        if url.startswith(fm.MIRRORS[0]):  # the first mirror is down: the second one is used
            raise urllib.error.URLError("mirror down")
        return served[url.rsplit("/", 1)[1]]

    monkeypatch.setattr(fm, "_fetch", fake_fetch)
    x, y = load_fashion_mnist("test")
    assert np.array_equal(x.numpy(), images) and np.array_equal(y.numpy(), labels)
    assert any(url.startswith(fm.MIRRORS[1]) for url in requested)
    assert (tmp_path / "cache" / "fashion-mnist" / "test.npz").is_file()
    monkeypatch.setattr(fm, "_fetch", lambda url: pytest.fail("the cache should be used"))
    assert torch.equal(load_fashion_mnist("test")[0], x)


def test_plain_idx_files_copied_into_the_cache_folder(test_split, monkeypatch, tmp_path):
    _offline(monkeypatch, tmp_path)
    images, labels = test_split
    folder = tmp_path / "cache" / "fashion-mnist"
    folder.mkdir(parents=True)
    (folder / "t10k-images-idx3-ubyte").write_bytes(_idx_bytes(images))
    (folder / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(labels))
    x, y = load_fashion_mnist("test")
    assert np.array_equal(x.numpy(), images) and np.array_equal(y.numpy(), labels)


def test_truncated_idx_is_a_clear_error():
    with pytest.raises(RuntimeError, match="truncated"):
        fm._decode_idx(_idx_bytes(np.zeros((3, 28, 28), np.uint8))[:-5], "somefile")
    with pytest.raises(RuntimeError, match="magic"):
        fm._decode_idx(b"hello world, not idx", "somefile")
