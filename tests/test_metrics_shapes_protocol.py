"""The shapes protocol: features, FD against the reference, baselines, evaluate_shapes, bad inputs."""

import pytest
import torch

from genbook.metrics import (
    evaluate_shapes,
    gaussian_blur,
    real_shapes,
    shapes_baselines,
    shapes_evaluator,
    shapes_fd,
    shapes_features,
    shapes_reference,
)
from genbook.metrics.shapes_protocol import FEATURE_DIM

N = 1000


@pytest.fixture(scope="module")
def evaluator():
    return shapes_evaluator("cpu")


def test_features_are_the_per_cell_logits(evaluator):
    images = real_shapes(N).images[:8]
    features = shapes_features(images, evaluator=evaluator)
    assert features.shape == (8, FEATURE_DIM) == (8, 126)
    logits = evaluator(images)
    assert torch.allclose(features[:, :2], logits["occupied"][:, 0], atol=1e-5)  # cell 0's occupied logits first
    assert torch.allclose(shapes_features(images, evaluator=evaluator, batch_size=3), features, atol=1e-5)


def test_reference_and_real_draws_differ_and_are_deterministic():
    ref, real = shapes_reference(N), real_shapes(N)
    assert ref.images.shape == (N, 3, 32, 32) and len(ref.captions) == N
    assert not torch.equal(ref.images, real.images)
    assert torch.equal(shapes_reference(N).images, ref.images)


def test_baselines_are_ordered(evaluator):
    b = shapes_baselines(N, evaluator=evaluator)
    assert set(b) == {"fd_real_vs_real", "fd_blurred", "fd_pca_gaussian", "adherence_real", "adherence_shuffled"}
    assert b["fd_real_vs_real"] < b["fd_blurred"] < b["fd_pca_gaussian"], b
    assert b["adherence_real"] > 0.95 > 0.6 > b["adherence_shuffled"], b


def test_evaluate_shapes_numbers(evaluator):
    real = real_shapes(N)
    out = evaluate_shapes(real.images, real.captions, n=N, evaluator=evaluator, n_boot=10)
    assert out["fd"] == pytest.approx(shapes_fd(real.images, shapes_reference(N).images, evaluator=evaluator))
    assert out["fd_low"] <= out["fd"] <= out["fd_high"]
    assert out["adherence"] > 0.95 and 0 <= out["exact"] <= 1
    assert out["precision"] > 0.5 and out["recall"] > 0.5
    blurred = gaussian_blur(real.images, 1.5).clamp(-1, 1)
    worse = evaluate_shapes(blurred, real.labels, n=N, evaluator=evaluator, n_boot=10)
    assert worse["fd"] > out["fd"] and "adherence" in worse
    assert "adherence" not in evaluate_shapes(real.images, n=N, evaluator=evaluator, n_boot=2)


def test_bad_inputs_raise_clear_errors(evaluator):
    real = real_shapes(N)
    with pytest.raises(ValueError, match="n must be an int in 1000"):
        evaluate_shapes(real.images, n=500, evaluator=evaluator)
    with pytest.raises(ValueError, match="samples has 999 images"):
        evaluate_shapes(real.images[:999], n=N, evaluator=evaluator)
    with pytest.raises(ValueError, match=r"samples must have shape \(N, 3, 32, 32\)"):
        evaluate_shapes(torch.zeros(N, 1, 28, 28), n=N, evaluator=evaluator)
    with pytest.raises(ValueError, match="captions has 10 entries"):
        evaluate_shapes(real.images, real.captions[:10], n=N, evaluator=evaluator)
    with pytest.raises(ValueError, match="reference has 10 images; shapes FD needs at least 1000"):
        shapes_fd(real.images, real.images[:10], evaluator=evaluator)
    with pytest.raises(ValueError, match="n must be an int in 1..20000"):
        shapes_reference(0)
    with pytest.raises(ValueError, match=r"images must lie in \[-1.0, 1.0\]"):
        shapes_features(real.images[:4] * 3, evaluator=evaluator)


def test_caption_agreement_per_image_counts_sum_to_its_totals(evaluator):
    from genbook.metrics import caption_agreement

    batch = real_shapes(N)
    images, captions = batch.images[:200], batch.captions[:200]
    mixed = captions[:100] + captions[101:200] + captions[100:101]  # half true, half another image's caption
    plain = caption_agreement(images, mixed, evaluator=evaluator)
    assert set(plain) == {"adherence", "exact"}  # the default result is unchanged
    out = caption_agreement(images, mixed, evaluator=evaluator, per_image=True)
    assert out["adherence"] == plain["adherence"] and out["exact"] == plain["exact"]
    agreed, stated = out["agreed"], out["stated"]
    assert agreed.shape == stated.shape == (200,) and agreed.dtype == stated.dtype == torch.int64
    assert bool((agreed >= 0).all() and (agreed <= stated).all() and (stated >= 1).all())
    assert agreed.sum().item() / stated.sum().item() == pytest.approx(out["adherence"], abs=1e-12)
    assert (agreed == stated).double().mean().item() == pytest.approx(out["exact"], abs=1e-12)
    assert agreed[100:].sum() < agreed[:100].sum()  # the wrong captions agree less
    with pytest.raises(TypeError, match="per_image"):
        caption_agreement(images, mixed, evaluator=evaluator, per_image="yes")
