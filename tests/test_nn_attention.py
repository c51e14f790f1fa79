"""genbook.nn.attention: masks, multi-head attention against independent references, positional encodings."""

import math

import pytest
import torch
import torch.nn.functional as F

from genbook.nn import (
    LearnedPositionalEncoding,
    MultiHeadAttention,
    SinusoidalPositionalEncoding,
    attention_weights,
    causal_mask,
    naive_attention,
    positional_encoding,
    record_attention,
    sinusoidal_table,
)


def reference_mha(mha: MultiHeadAttention, x, context=None, allowed=None, bias=None):
    """Multi-head attention with a Python loop over heads and explicit softmax (no SDPA).

    bias: (H, T_q, T_k), added to head h's scores."""
    context = x if context is None else context
    q = x @ mha.q_proj.weight.T + mha.q_proj.bias
    kv = context @ mha.kv_proj.weight.T + mha.kv_proj.bias
    k, v = kv[..., :mha.d_model], kv[..., mha.d_model:]
    heads = []
    for h in range(mha.n_heads):
        sl = slice(h * mha.d_head, (h + 1) * mha.d_head)
        scores = q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(mha.d_head)
        if bias is not None:
            scores = scores + bias[h]
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float("-inf"))
        heads.append(torch.softmax(scores, -1) @ v[..., sl])
    return torch.cat(heads, -1) @ mha.out_proj.weight.T + mha.out_proj.bias


@pytest.fixture
def mha():
    torch.manual_seed(0)
    return MultiHeadAttention(32, 4).eval()


def test_causal_mask():
    assert torch.equal(causal_mask(4), torch.ones(4, 4, dtype=torch.bool).tril())
    rect = causal_mask(2, 5)  # the last 2 of 5 positions
    assert rect.tolist() == [[True, True, True, True, False], [True] * 5]
    with pytest.raises(ValueError, match="1 <= T_q <= T_k"):
        causal_mask(5, 2)


def test_naive_attention_matches_sdpa_with_and_without_masks():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 3, 6, 8, generator=g) for _ in range(3))
    pad = torch.tensor([[False] * 4 + [True] * 2, [False] * 6])[:, None, None, :]
    for mask in (None, causal_mask(6), ~pad, ~pad & causal_mask(6)):
        want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        assert (naive_attention(q, k, v, mask) - want).abs().max() < 1e-5
    w = attention_weights(q, k, causal_mask(6))
    assert torch.allclose(w.sum(-1), torch.ones(2, 3, 6)) and (w.triu(1) == 0).all()


def test_mha_shapes_and_cross_attention_width():
    torch.manual_seed(0)
    cross = MultiHeadAttention(32, 4, context_dim=20)
    x, ctx = torch.randn(3, 5, 32), torch.randn(3, 7, 20)
    out = cross(x, ctx)
    assert out.shape == (3, 5, 32)
    assert (out - reference_mha(cross, x, ctx)).abs().max() < 1e-5


@pytest.mark.parametrize("kind", ["none", "causal", "padding", "padding+causal"])
def test_mha_matches_loop_reference(mha, kind):
    x = torch.randn(2, 6, 32)
    padding = torch.tensor([[False] * 6, [False] * 3 + [True] * 3])
    allowed = None
    kwargs = {}
    if "padding" in kind:
        kwargs["key_padding_mask"] = padding
        allowed = (~padding)[:, None, :].expand(2, 6, 6)
    if "causal" in kind:
        kwargs["causal"] = True
        allowed = causal_mask(6) if allowed is None else allowed & causal_mask(6)
    assert (mha(x, **kwargs) - reference_mha(mha, x, allowed=allowed)).abs().max() < 1e-5


@pytest.mark.parametrize("kind", ["bias", "bias+padding", "bias+causal"])
def test_attn_bias_is_added_to_each_heads_scores(mha, kind):
    """A float bias per head (ALiBi-style distance penalty) is added before the softmax, on both paths."""
    x = torch.randn(2, 6, 32)
    distance = (torch.arange(6)[:, None] - torch.arange(6)[None]).abs().float()
    bias = -torch.tensor([1.0, 0.5, 0.25, 0.0])[:, None, None] * distance  # (H, T, T)
    kwargs, allowed = {}, None
    if "padding" in kind:
        padding = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
        kwargs["key_padding_mask"], allowed = padding, (~padding)[:, None, :].expand(2, 6, 6)
    if "causal" in kind:
        kwargs["causal"], allowed = True, causal_mask(6)
    want = reference_mha(mha, x, allowed=allowed, bias=bias)
    assert (mha(x, attn_bias=bias, **kwargs) - want).abs().max() < 1e-5
    with record_attention(mha) as maps:
        assert (mha(x, attn_bias=bias, **kwargs) - want).abs().max() < 1e-5
    if "causal" in kind:
        assert (maps[""].triu(1) == 0).all()
    assert (mha(x, attn_bias=torch.zeros(6, 6)) - mha(x)).abs().max() < 1e-6  # a zero bias changes nothing


def test_attn_bias_is_learnable_and_checked(mha):
    bias = torch.zeros(4, 1, 5, requires_grad=True)  # (H, 1, T_k): one learned score per head and key
    mha(torch.randn(2, 5, 32), attn_bias=bias).square().sum().backward()
    assert bias.grad is not None and bias.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"attn_bias of shape \(3, 5, 5\) does not broadcast to \(B, H, T_q, T_k\)"):
        mha(torch.randn(2, 5, 32), attn_bias=torch.zeros(3, 5, 5))
    with pytest.raises(TypeError, match="attn_bias must be a floating point tensor"):
        mha(torch.randn(2, 5, 32), attn_bias=torch.zeros(5, 5, dtype=torch.long))


def test_naive_attention_adds_a_float_mask_like_sdpa():
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 3, 6, 8, generator=g) for _ in range(3))
    bias = torch.randn(3, 6, 6, generator=g)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    assert (naive_attention(q, k, v, bias) - want).abs().max() < 1e-5


def test_mha_matches_torch_multihead_attention(mha):
    ref = torch.nn.MultiheadAttention(32, 4, batch_first=True).eval()
    with torch.no_grad():
        mha.q_proj.weight.copy_(ref.in_proj_weight[:32])
        mha.q_proj.bias.copy_(ref.in_proj_bias[:32])
        mha.kv_proj.weight.copy_(ref.in_proj_weight[32:])
        mha.kv_proj.bias.copy_(ref.in_proj_bias[32:])
        mha.out_proj.load_state_dict(ref.out_proj.state_dict())
    x = torch.randn(2, 5, 32)
    pad = torch.tensor([[False, False, False, True, True], [False] * 5])
    assert (mha(x, key_padding_mask=pad) - ref(x, x, x, key_padding_mask=pad)[0]).abs().max() < 1e-5
    want = ref(x, x, x, attn_mask=~causal_mask(5), need_weights=False)[0]
    assert (mha(x, causal=True) - want).abs().max() < 1e-5


def test_causal_attention_ignores_the_future(mha):
    x = torch.randn(1, 8, 32)
    y = x.clone()
    y[:, 5:] = torch.randn(1, 3, 32)
    assert torch.allclose(mha(x, causal=True)[:, :5], mha(y, causal=True)[:, :5], atol=1e-6)
    assert not torch.allclose(mha(x)[:, :5], mha(y)[:, :5], atol=1e-3)  # without the mask it sees them


def test_padding_does_not_change_real_positions(mha):
    x = torch.randn(1, 4, 32)
    padded = torch.cat([x, torch.randn(1, 3, 32)], 1)
    mask = torch.tensor([[False] * 4 + [True] * 3])
    assert torch.allclose(mha(padded, key_padding_mask=mask)[:, :4], mha(x), atol=1e-6)


def test_fewer_queries_than_keys_causal_is_bottom_right(mha):
    x = torch.randn(2, 6, 32)
    full = mha(x, causal=True)
    last = mha(x[:, 4:], x, causal=True)  # the last 2 queries against all 6 keys, as with cached keys
    assert torch.allclose(last, full[:, 4:], atol=1e-6)
    with pytest.raises(ValueError, match="at least as many keys"):
        mha(x, x[:, :3], causal=True)


def test_record_attention_returns_weights_and_same_outputs(mha):
    x = torch.randn(2, 5, 32)
    pad = torch.tensor([[False] * 3 + [True] * 2, [False] * 5])
    plain = mha(x, key_padding_mask=pad, causal=True)
    with record_attention(mha) as maps:
        recorded = mha(x, key_padding_mask=pad, causal=True)
    assert torch.allclose(plain, recorded, atol=1e-6)
    w = maps[""]
    assert w.shape == (2, 4, 5, 5)
    assert torch.allclose(w.sum(-1), torch.ones(2, 4, 5))
    assert (w[0, :, :, 3:] == 0).all() and (w.triu(1) == 0).all()
    assert not mha.record and mha.last_weights is None  # switched off afterwards
    with pytest.raises(ValueError, match="no genbook MultiHeadAttention"):
        with record_attention(torch.nn.Linear(2, 2)):
            pass


def test_bad_inputs_raise_clear_errors(mha):
    with pytest.raises(ValueError, match="multiple of n_heads"):
        MultiHeadAttention(30, 4)
    with pytest.raises(ValueError, match=r"x must have shape \(B, T_q, 32\), got \(5, 32\)"):
        mha(torch.randn(5, 32))
    with pytest.raises(ValueError, match=r"x must have shape \(B, T_q, 32\), got \(2, 5, 16\)"):
        mha(torch.randn(2, 5, 16))
    with pytest.raises(ValueError, match=r"context must have shape \(2, T_k, 32\)"):
        mha(torch.randn(2, 5, 32), torch.randn(3, 5, 32))
    with pytest.raises(TypeError, match="key_padding_mask must have dtype torch.bool"):
        mha(torch.randn(2, 5, 32), key_padding_mask=torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape \(2, 5\)"):
        mha(torch.randn(2, 5, 32), key_padding_mask=torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="floating point"):
        mha(torch.ones(2, 5, 32, dtype=torch.long))


def test_sinusoidal_table_follows_the_formula():
    pe = sinusoidal_table(50, 16)
    assert pe.shape == (50, 16)
    pos, i = 7, 3
    assert math.isclose(pe[pos, 2 * i], math.sin(pos / 10000 ** (2 * i / 16)), abs_tol=1e-6)
    assert math.isclose(pe[pos, 2 * i + 1], math.cos(pos / 10000 ** (2 * i / 16)), abs_tol=1e-6)
    assert torch.equal(pe[0, 1::2], torch.ones(8)) and torch.equal(pe[0, 0::2], torch.zeros(8))
    with pytest.raises(ValueError, match="even d_model"):
        sinusoidal_table(10, 7)


def test_positional_encoding_modules():
    x = torch.zeros(2, 10, 16)
    sin = SinusoidalPositionalEncoding(16, max_len=32)
    assert torch.equal(sin(x)[1], sinusoidal_table(32, 16)[:10])
    assert not list(sin.parameters()) and "table" not in sin.state_dict()
    learned = LearnedPositionalEncoding(16, max_len=32)
    assert learned.weight.shape == (32, 16) and torch.equal(learned(x)[0], learned.weight[:10])
    with pytest.raises(ValueError, match="longer than the positional encoding's max_len=32"):
        sin(torch.zeros(1, 33, 16))
    with pytest.raises(ValueError, match="must be one of"):
        positional_encoding("rotary", 16, 32)
    assert isinstance(positional_encoding("learned", 16, 8), LearnedPositionalEncoding)
