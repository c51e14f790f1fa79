"""genbook.clip: the encoders, the model and the symmetric contrastive loss."""

import math

import pytest
import torch
import torch.nn.functional as F

from genbook.clip import CLIP, ImageEncoder, TextEncoder, contrastive_loss, positive_pairs
from genbook.exercises.dalle import contrastive_loss_by_loops


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def small_clip(vocab=20, pad=0):
    return CLIP(ImageEncoder(embed_dim=16, width=8), TextEncoder(vocab, 6, pad, embed_dim=16, d_model=16,
                                                                 n_heads=2, n_layers=1))


def test_contrastive_loss_matches_the_naive_loop():
    for groups in (torch.arange(7), torch.tensor([0, 1, 0, 2, 2, 0, 3])):
        logits = torch.randn(7, 7, dtype=torch.float64) * 4
        assert math.isclose(float(contrastive_loss(logits, groups)), contrastive_loss_by_loops(logits, groups),
                            rel_tol=1e-12)


def test_contrastive_loss_without_repeats_is_clips_figure_3():
    logits = torch.randn(5, 5)
    labels = torch.arange(5)
    want = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    assert torch.allclose(contrastive_loss(logits), want, atol=1e-6)
    assert torch.allclose(contrastive_loss(logits, torch.arange(5)), want, atol=1e-6)


def test_repeated_captions_are_positives():
    groups = torch.tensor([0, 0, 1])
    same = positive_pairs(groups)
    assert same.tolist() == [[True, True, False], [True, True, False], [False, False, True]]
    # Two images of one caption, which appears twice: identical columns. Perfect separation between groups
    # drives the loss to 0 with repeats treated as positives; the one-hot loss stays near log 2 on them.
    logits = torch.tensor([[20.0, 20.0, -20.0], [20.0, 20.0, -20.0], [-20.0, -20.0, 20.0]])
    assert contrastive_loss(logits, groups) < 1e-6
    assert contrastive_loss(logits) > 0.4 and math.isclose(float(contrastive_loss(logits)), 2 / 3 * math.log(2),
                                                           rel_tol=1e-4)


def test_contrastive_loss_checks_its_inputs_and_has_gradients():
    with pytest.raises(ValueError, match="logits must have shape"):
        contrastive_loss(torch.randn(3, 4))
    with pytest.raises(ValueError, match="groups must have shape"):
        contrastive_loss(torch.randn(3, 3), torch.arange(4))
    with pytest.raises(TypeError, match="groups must have dtype torch.int64"):
        contrastive_loss(torch.randn(3, 3), torch.zeros(3))
    logits = torch.randn(4, 4, requires_grad=True)
    contrastive_loss(logits, torch.tensor([0, 1, 1, 2])).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_clip_shapes_unit_embeddings_temperature_and_gradients():
    model = small_clip()
    images, ids = torch.rand(4, 3, 32, 32) * 2 - 1, torch.randint(1, 20, (4, 6))
    ids[0, 4:] = 0  # padding
    logits = model(images, ids)
    assert logits.shape == (4, 4)
    assert torch.allclose(model.encode_images(images).norm(dim=-1), torch.ones(4), atol=1e-5)
    assert torch.allclose(model.encode_texts(ids).norm(dim=-1), torch.ones(4), atol=1e-5)
    assert math.isclose(model.scale.item(), 1 / 0.07, rel_tol=1e-5)
    assert logits.abs().max() <= model.scale + 1e-4  # cosines times the scale
    loss = contrastive_loss(logits)
    loss.backward()
    assert model.log_scale.grad is not None
    for name, p in model.named_parameters():
        assert p.grad is not None, name
    with torch.no_grad():
        model.log_scale.fill_(10.0)
    assert math.isclose(model.scale.item(), 100.0, rel_tol=1e-5)  # clipped as in the paper


def test_text_encoder_ignores_padding():
    model = small_clip().eval()
    ids = torch.tensor([[3, 4, 5, 0, 0, 0]])
    other = torch.tensor([[3, 4, 5, 0, 0, 0]])
    assert torch.allclose(model.encode_texts(ids), model.encode_texts(other))
    padded_differently = TextEncoder(20, 6, 0, embed_dim=16, d_model=16, n_heads=2, n_layers=1).eval()
    h = padded_differently(torch.tensor([[3, 4, 5, 0, 0, 0]]))
    with torch.no_grad():
        padded_differently.tokens.weight[0] += 5.0  # changing the padding's embedding changes nothing
    assert torch.allclose(padded_differently(torch.tensor([[3, 4, 5, 0, 0, 0]])), h, atol=1e-5)


def test_bad_inputs_name_the_argument():
    model = small_clip()
    with pytest.raises(ValueError, match="images must have shape"):
        model.encode_images(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="ids must lie in 0..19"):
        model.encode_texts(torch.tensor([[1, 25]]))
    with pytest.raises(ValueError, match="exceed max_len=6"):
        model.encode_texts(torch.ones(1, 7, dtype=torch.long))
    with pytest.raises(ValueError, match="at least one token that is not padding"):
        model.encode_texts(torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="pad_id must lie in 0..19"):
        TextEncoder(20, 6, 20)
    with pytest.raises(ValueError, match="init_temperature"):
        CLIP(ImageEncoder(), TextEncoder(20, 6, 0), init_temperature=0.001)
    with pytest.raises(ValueError, match="image_size must be a multiple of 8"):
        ImageEncoder(image_size=30)
