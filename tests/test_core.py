"""Profiles, devices, seeding and argument checks."""

import pytest
import torch

import genbook
from genbook.validation import check_tensor


def test_profile_defaults_to_fast(monkeypatch):
    monkeypatch.delenv("GENBOOK_PROFILE", raising=False)
    assert genbook.profile_name() == "fast"
    assert genbook.profile(fast={"steps": 3}, full={"steps": 3000}) == {"steps": 3}


def test_profile_full(monkeypatch):
    monkeypatch.setenv("GENBOOK_PROFILE", "full")
    monkeypatch.setenv("GENBOOK_ALLOW_FULL_ON_CPU", "1")  # where there is no GPU
    assert genbook.profile(fast=1, full=2) == 2


def test_unknown_profile_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("GENBOOK_PROFILE", "fsat")
    with pytest.raises(ValueError, match="'fsat' is not a profile; expected one of fast, full"):
        genbook.profile(fast=1, full=2)


def test_profile_needs_both_settings():
    with pytest.raises(TypeError):
        genbook.profile(fast=1)  # a chapter must say what the GPU run uses


def test_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.delenv("GENBOOK_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert genbook.device().type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert genbook.device().type == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert genbook.device().type == "cpu"


def test_device_override(monkeypatch):
    monkeypatch.setenv("GENBOOK_DEVICE", "cpu")
    assert genbook.device() == torch.device("cpu")
    monkeypatch.setenv("GENBOOK_DEVICE", "gpu0")
    with pytest.raises(ValueError, match="GENBOOK_DEVICE='gpu0' is not a torch device"):
        genbook.device()


def test_autocast_is_a_no_op_on_cpu():
    with genbook.autocast("cpu"):
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_autocast_is_bf16_on_cuda():
    with genbook.autocast("cuda"):
        assert torch.ones(2, 2, device="cuda").matmul(torch.ones(2, 2, device="cuda")).dtype == torch.bfloat16


def test_seed_everything_reproduces():
    g1 = genbook.seed_everything(7)
    a = (torch.rand(3), torch.rand(3, generator=g1))
    g2 = genbook.seed_everything(7)
    b = (torch.rand(3), torch.rand(3, generator=g2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        genbook.seed_everything(-1)


def test_check_tensor_messages():
    x = torch.zeros(4, 1, 28, 28)
    assert check_tensor(x, "images", shape=("N", 1, 28, 28), dtype="floating", value_range=(-1, 1)) is x
    with pytest.raises(ValueError, match=r"images must have shape \(N, 1, 28, 28\), got \(4, 28, 28\)"):
        check_tensor(torch.zeros(4, 28, 28), "images", shape=("N", 1, 28, 28))
    with pytest.raises(TypeError, match="uint8 pixels"):
        check_tensor(torch.zeros(4, dtype=torch.uint8), "images", dtype="floating")
    with pytest.raises(ValueError, match=r"must lie in \[-1, 1\].*pixels in 0..255"):
        check_tensor(torch.full((2,), 255.0), "images", value_range=(-1, 1))
    with pytest.raises(ValueError, match="needs at least 10 samples, got 4"):
        check_tensor(x, "samples", min_batch=10)
    with pytest.raises(TypeError, match="must be a torch.Tensor, got list"):
        check_tensor([1, 2], "x")


def test_cpu_threads_sets_and_restores_and_rejects_bad_counts():
    before = torch.get_num_threads()
    with genbook.cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with genbook.cpu_threads(None):  # leaves the setting alone
        assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), genbook.cpu_threads(1):  # restored even when the block raises
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before
    for bad in (0, -2, 1.5, "2", True):
        with pytest.raises(ValueError, match="positive int or None"), genbook.cpu_threads(bad):
            pass
