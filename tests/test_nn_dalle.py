"""TextImageTransformer's shortcuts: logits_by_modality (training) and next_image_logits (sampling) match forward."""

import pytest
import torch

from genbook.nn.dalle import TextImageTransformer


def test_logits_by_modality_match_the_masked_logits():
    torch.manual_seed(0)
    text_vocab, image_vocab, text_len, grid = 11, 7, 5, (2, 3)
    model = TextImageTransformer(text_vocab, image_vocab, text_len, grid, d_model=16, n_heads=2, n_layers=2).eval()
    tokens = torch.cat([torch.randint(0, text_vocab, (3, text_len)),
                        torch.randint(0, image_vocab, (3, 6)) + text_vocab], dim=1)[:, :-1]  # (B, N - 1)
    text_logits, image_logits = model.logits_by_modality(tokens)
    assert text_logits.shape == (3, text_len - 1, text_vocab) and image_logits.shape == (3, 6, image_vocab)
    masked = model(tokens)  # (B, N - 1, V), -inf outside each position's vocabulary
    expect_text = masked[:, :text_len - 1, :text_vocab].log_softmax(-1)
    expect_image = masked[:, text_len - 1:, text_vocab:].log_softmax(-1)
    assert torch.allclose(text_logits.log_softmax(-1), expect_text, atol=1e-5)
    assert torch.allclose(image_logits.log_softmax(-1), expect_image, atol=1e-5)
    assert torch.allclose(masked[:, :text_len - 1].logsumexp(-1), text_logits.logsumexp(-1), atol=1e-5)  # no mass lost
    loss = image_logits.logsumexp(-1).sum() + text_logits.logsumexp(-1).sum()
    loss.backward()  # gradients reach the shared head and the embeddings
    assert model.head.weight.grad.abs().sum() > 0 and model.image_embed.weight.grad.abs().sum() > 0


def test_logits_by_modality_wants_whole_sequences():
    model = TextImageTransformer(11, 7, 5, (2, 3), d_model=16, n_heads=2, n_layers=1)
    with pytest.raises(ValueError, match="tokens must have shape"):
        model.logits_by_modality(torch.zeros(2, 4, dtype=torch.long))


def test_next_image_logits_are_forwards_last_image_entries():
    """The sampler's shortcut: forward's last-position image logits, with and without a cache."""
    torch.manual_seed(0)
    text_vocab, image_vocab, text_len, grid = 11, 7, 5, (2, 3)
    model = TextImageTransformer(text_vocab, image_vocab, text_len, grid, d_model=16, n_heads=2, n_layers=2).eval()
    tokens = torch.cat([torch.randint(0, text_vocab, (3, text_len)),
                        torch.randint(0, image_vocab, (3, 5)) + text_vocab], dim=1)  # (B, N - 1)
    with torch.no_grad():
        for end in range(text_len, tokens.shape[1] + 1):  # every image position the sampler asks about
            expect = model(tokens[:, :end])[:, -1, text_vocab:]  # (B, V_i)
            assert torch.allclose(model.next_image_logits(tokens[:, :end]), expect, atol=1e-5)
        cache = model.new_cache(3)
        cached = [model.next_image_logits(tokens[:, :text_len], cache=cache)]  # the caption, then one token a step
        cached += [model.next_image_logits(tokens[:, end - 1:end], cache=cache) for end in range(text_len + 1, 11)]
        assert torch.allclose(torch.stack(cached, 1), model(tokens)[:, text_len - 1:, text_vocab:], atol=1e-5)
    with pytest.raises(ValueError, match="an image token needs"):
        model.next_image_logits(tokens[:, :text_len - 1])  # predicts a text token
    with pytest.raises(ValueError, match="use new_cache"):
        model.next_image_logits(tokens[:, :text_len], cache=model.new_cache(2))
