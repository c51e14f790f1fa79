"""Cross-attention in the UNet (context tokens): shapes, gradients, padding, references, bad inputs."""

import pytest
import torch
from torch import nn

from genbook.nn.attention import record_attention
from genbook.nn.unet import CrossAttention2d, UNet


def randomise_zero_inits(model):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model


def test_unet_without_context_keeps_its_parameters():
    """Chapters 05 and 07's checkpoints: a UNet built without context_dim has the same state-dict keys as before."""
    keys = set(UNet(channels=(8, 16), num_classes=3).state_dict())
    assert not any("xattn" in k for k in keys)
    assert any(k.startswith("down.0.") for k in keys) and "mid1.norm1.weight" in keys


@pytest.mark.parametrize("levels", [None, [0], [1]])
def test_shapes_gradients_and_the_context_matters(levels):
    model = randomise_zero_inits(UNet(4, (8, 16), context_dim=12, cross_attention_levels=levels))
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([0.1, 0.7])
    context = torch.randn(2, 5, 12)
    out = model(x, t, context=context)
    assert out.shape == (2, 4, 8, 8)
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing
    assert not torch.allclose(model(x, t, context=context), model(x, t, context=context.flip(0)))
    blocks = [m for m in model.modules() if isinstance(m, CrossAttention2d)]
    expected = {None: 1 + 2 + 1 + 2 + 1, (0,): 1 + 2, (1,): 1 + 1 + 2}[None if levels is None else tuple(levels)]
    assert len(blocks) == expected


def test_new_cross_attention_block_is_the_identity():
    block = CrossAttention2d(8, 6, heads=2)
    x = torch.randn(2, 8, 4, 4)
    assert torch.equal(block(x, torch.randn(2, 3, 6)), x)


def test_cross_attention_matches_torch_multihead_attention_with_copied_weights():
    torch.manual_seed(0)
    block = CrossAttention2d(16, 10, heads=4)
    nn.init.normal_(block.attn.out_proj.weight)
    x, context = torch.randn(2, 16, 3, 3), torch.randn(2, 5, 10)
    padding = torch.tensor([[False] * 5, [False, False, True, True, True]])
    reference = nn.MultiheadAttention(16, 4, kdim=10, vdim=10, batch_first=True)
    w_k, w_v = block.attn.kv_proj.weight.chunk(2)
    b_k, b_v = block.attn.kv_proj.bias.chunk(2)
    with torch.no_grad():
        reference.q_proj_weight.copy_(block.attn.q_proj.weight)
        reference.k_proj_weight.copy_(w_k)
        reference.v_proj_weight.copy_(w_v)
        reference.in_proj_bias.copy_(torch.cat([block.attn.q_proj.bias, b_k, b_v]))
        reference.out_proj.weight.copy_(block.attn.out_proj.weight)
        reference.out_proj.bias.copy_(block.attn.out_proj.bias)
        queries = block.norm(x).flatten(2).transpose(1, 2)
        want, _ = reference(queries, context, context, key_padding_mask=padding)
        got = block(x, context, padding) - x
    assert torch.allclose(got, want.transpose(1, 2).reshape(2, 16, 3, 3), atol=1e-5)


def test_padding_tokens_are_ignored_and_maps_are_recorded():
    model = randomise_zero_inits(UNet(4, (8, 16), context_dim=6)).eval()
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([0.3, 0.3])
    context = torch.randn(2, 4, 6)
    padding = torch.tensor([[False, False, True, True], [False, True, True, True]])
    changed = context.clone()
    changed[padding] = 50.0
    assert torch.allclose(model(x, t, context=context, context_padding_mask=padding),
                          model(x, t, context=changed, context_padding_mask=padding), atol=1e-5)
    with record_attention(model) as maps:
        model(x, t, context=context, context_padding_mask=padding)
    top = maps["down_xattn.0.attn"]
    assert top.shape == (2, 4, 64, 4)  # (B, heads, positions, tokens)
    assert torch.allclose(top.sum(-1), torch.ones(2, 4, 64), atol=1e-5)
    assert top[padding[:, None, None, :].expand_as(top)].abs().max() == 0


def test_existing_calls_are_unchanged():
    model = UNet(channels=(8, 16), num_classes=3)
    x = torch.randn(2, 1, 8, 8)
    assert model(x, torch.tensor([1, 2]), torch.tensor([0, 3])).shape == x.shape


def test_bad_context_inputs_raise_clear_errors():
    model = UNet(4, (8, 16), context_dim=6)
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="pass context"):
        model(x, t)
    with pytest.raises(ValueError, match=r"context must have shape \(2, T, 6\)"):
        model(x, t, context=torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match="context_padding_mask must have shape"):
        model(x, t, context=torch.randn(2, 3, 6), context_padding_mask=torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="context_padding_mask"):
        model(x, t, context=torch.randn(2, 3, 6), context_padding_mask=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="hides every token"):
        model(x, t, context=torch.randn(2, 3, 6), context_padding_mask=torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="no cross-attention"):
        UNet(4, (8, 16))(x, t, context=torch.randn(2, 3, 6))
    with pytest.raises(ValueError, match="context_dim must be None or a positive int"):
        UNet(4, (8, 16), context_dim=0)
    with pytest.raises(ValueError, match="cross_attention_levels must be level indices"):
        UNet(4, (8, 16), context_dim=6, cross_attention_levels=[2])
    with pytest.raises(ValueError, match="but context_dim is None"):
        UNet(4, (8, 16), cross_attention_levels=[0])
