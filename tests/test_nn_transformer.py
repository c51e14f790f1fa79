"""genbook.nn.transformer: blocks, the encoder–decoder, the GPT, sampling and the attention benchmark."""

import time

import pytest
import torch
import torch.nn.functional as F

from genbook.nn import (
    GPT,
    DecoderBlock,
    EncoderBlock,
    EncoderDecoder,
    bench_attention,
    count_parameters,
    record_attention,
    top_k_filter,
)
from genbook.nn.dalle import TextImageTransformer, modality_logits_mask
from genbook.nn.transformer import KVCache, LayerCache


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("norm_first", [True, False])
def test_encoder_block_shape_and_padding_invariance(norm_first):
    block = EncoderBlock(32, 4, norm_first=norm_first).eval()
    x = torch.randn(2, 5, 32)
    assert block(x).shape == (2, 5, 32)
    padded = torch.cat([x, torch.randn(2, 3, 32)], 1)
    mask = torch.tensor([[False] * 5 + [True] * 3] * 2)
    assert torch.allclose(block(padded, key_padding_mask=mask)[:, :5], block(x), atol=1e-5)


def test_pre_norm_and_post_norm_differ_as_written():
    pre, post = EncoderBlock(16, 2, norm_first=True).eval(), EncoderBlock(16, 2, norm_first=False).eval()
    post.load_state_dict(pre.state_dict())
    x = torch.randn(1, 4, 16) * 3
    with torch.no_grad():
        h = x + pre.self_attn(pre.norm1(x))
        assert torch.allclose(pre(x), h + pre.ff(pre.norm2(h)), atol=1e-5)
        h = post.norm1(x + post.self_attn(x))
        assert torch.allclose(post(x), post.norm2(h + post.ff(h)), atol=1e-5)
    assert post(x).std(-1, unbiased=False).sub(1).abs().max() < 1e-2  # post-norm's output is normalised


def test_decoder_block_is_causal_and_uses_its_context():
    block = DecoderBlock(32, 4, context_dim=24).eval()
    x, ctx = torch.randn(1, 6, 32), torch.randn(1, 9, 24)
    y = x.clone()
    y[:, 4:] += 1.0
    assert torch.allclose(block(x, ctx)[:, :4], block(y, ctx)[:, :4], atol=1e-5)
    assert not torch.allclose(block(x, ctx), block(x, ctx + 1.0), atol=1e-3)
    ctx_mask = torch.tensor([[False] * 7 + [True] * 2])
    noisy = ctx.clone()
    noisy[:, 7:] = 100.0
    assert torch.allclose(block(x, ctx, context_padding_mask=ctx_mask), block(x, noisy, context_padding_mask=ctx_mask),
                          atol=1e-5)
    with pytest.raises(ValueError, match="pass a context exactly when"):
        block(x)
    with pytest.raises(ValueError, match="pass a context exactly when"):
        DecoderBlock(32, 4, cross_attention=False)(x, ctx)


def test_encoder_decoder_shapes_padding_and_attention_maps():
    model = EncoderDecoder(20, 15, d_model=32, n_heads=4, max_len=16).eval()
    src = torch.randint(3, 20, (3, 7))
    tgt_in = torch.randint(3, 15, (3, 5))
    logits = model(src, tgt_in)
    assert logits.shape == (3, 5, 15)
    padded = torch.cat([src, torch.zeros(3, 4, dtype=torch.long)], 1)  # pad_id = 0
    assert torch.allclose(model(padded, tgt_in), logits, atol=1e-5)
    with record_attention(model) as maps:
        model(padded, tgt_in)
    cross = maps["decoder.1.cross_attn"]
    assert cross.shape == (3, 4, 5, 11) and (cross[..., 7:] == 0).all()
    assert set(maps) == {"encoder.0.self_attn", "encoder.1.self_attn", "decoder.0.self_attn", "decoder.0.cross_attn",
                         "decoder.1.self_attn", "decoder.1.cross_attn"}
    with pytest.raises(TypeError, match="src must have dtype torch.int64"):
        model(src.float(), tgt_in)
    with pytest.raises(ValueError, match="longer than the positional encoding's max_len=16"):
        model(torch.randint(3, 20, (1, 17)), tgt_in[:1])


def test_generate_stops_at_the_end_token_and_pads_after_it():
    bos, eos, pad = 1, 2, 0
    model = EncoderDecoder(10, 10, d_model=16, n_heads=2, max_len=32).eval()
    src = torch.randint(3, 10, (4, 6))
    with torch.no_grad():
        model.head.bias.zero_()
        model.head.bias[eos] = 100.0  # always predicts the end token
    assert model.generate(src, bos, eos, 20).tolist() == [[eos]] * 4
    with torch.no_grad():
        model.head.bias[eos] = -100.0
        model.head.bias[5] = 100.0  # never ends
    out = model.generate(src, bos, eos, 12)
    assert out.shape == (4, 12) and (out == 5).all()
    out = EncoderDecoder(10, 10, d_model=16, n_heads=2, max_len=32).eval().generate(src, bos, eos, 20)
    for row in out.tolist():  # whatever a random model says: nothing but padding after the first end token
        if eos in row:
            assert all(t == pad for t in row[row.index(eos) + 1:])
    with pytest.raises(ValueError, match="needs max_len > 40"):
        model.generate(src, bos, eos, 40)


def test_encoder_decoder_learns_to_reverse():
    g = torch.Generator().manual_seed(0)
    model = EncoderDecoder(8, 8, d_model=32, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, max_len=8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        src = torch.randint(3, 8, (32, 4), generator=g)
        tgt = torch.cat([torch.ones(32, 1, dtype=torch.long), src.flip(1), torch.full((32, 1), 2)], 1)
        loss = F.cross_entropy(model(src, tgt[:, :-1]).reshape(-1, 8), tgt[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    src = torch.randint(3, 8, (100, 4), generator=g)
    out = model.generate(src, 1, 2, 6)
    assert (out[:, :4] == src.flip(1)).all(1).float().mean() > 0.8  # chance: 5^-4
    assert (out[:, 4] == 2).float().mean() > 0.9


def test_gpt_is_causal_and_checks_its_input():
    model = GPT(30, block_size=12, d_model=32, n_heads=4, n_layers=2).eval()
    idx = torch.randint(0, 30, (2, 10))
    logits = model(idx)
    assert logits.shape == (2, 10, 30)
    changed = idx.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % 30
    assert torch.allclose(model(changed)[:, :6], logits[:, :6], atol=1e-5)
    assert not torch.allclose(model(changed)[:, 6:], logits[:, 6:], atol=1e-3)
    assert model.head.weight is model.embed.tokens.weight  # tied, counted once
    assert count_parameters(model) == sum(p.numel() for p in set(model.parameters()))
    with pytest.raises(ValueError, match="exceeds block_size=12"):
        model(torch.randint(0, 30, (1, 13)))
    with pytest.raises(ValueError, match=r"idx must have shape \(B, T\)"):
        model(torch.randint(0, 30, (13,)))
    loss = model.loss(idx, idx)
    assert torch.isclose(loss, F.cross_entropy(logits.reshape(-1, 30), idx.reshape(-1)))


def test_gpt_generate_lengths_greedy_and_seeds():
    model = GPT(30, block_size=8, d_model=32, n_heads=4, n_layers=1).eval()
    prompt = torch.randint(0, 30, (3, 5))
    out = model.generate(prompt, 20, generator=torch.Generator().manual_seed(1))
    assert out.shape == (3, 25) and torch.equal(out[:, :5], prompt)  # longer than block_size: context is cropped
    again = model.generate(prompt, 20, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, again)
    greedy = model.generate(prompt, 4, top_k=1)
    idx = prompt
    for _ in range(4):
        idx = torch.cat([idx, model(idx[:, -8:])[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(greedy, idx)
    cold = model.generate(prompt, 4, temperature=1e-4, generator=torch.Generator().manual_seed(2))
    assert torch.equal(cold, greedy)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        model.generate(prompt, 1, temperature=0.0)


def test_top_k_filter():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0], [0.0, -1.0, 5.0, 4.0]])
    out = top_k_filter(logits, 2)
    inf = float("-inf")
    assert out.tolist() == [[inf, 3.0, 2.0, inf], [inf, inf, 5.0, 4.0]]
    assert top_k_filter(logits, None) is logits and torch.equal(top_k_filter(logits, 10), logits)
    samples = torch.multinomial(out.softmax(-1), 1000, replacement=True)
    assert set(samples[0].tolist()) == {1, 2}
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        top_k_filter(logits, 0)


def test_attention_benchmark_runs_and_prints_a_table(capsys):
    rows = bench_attention.run(lengths=(16, 32), batch_size=2, d_model=16, n_heads=2, repeats=1, dev="cpu")
    assert [r["T"] for r in rows] == [16, 32]
    assert all(r["naive_ms"] > 0 and r["genbook_ms"] > 0 and r["ratio"] > 0 for r in rows)
    assert bench_attention.main(["--lengths", "16", "--repeats", "1", "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "naive/genbook" in out and out.strip().splitlines()[-1].split()[0] == "16"


def copy_from_torch(block, layer):
    """Load the weights of torch.nn.Transformer{Encoder,Decoder}Layer into a genbook block."""
    d = block.self_attn.d_model
    attns = [(block.self_attn, layer.self_attn)]
    norms = [(block.norm1, layer.norm1), (block.norm2, layer.norm2)]
    if getattr(block, "cross_attn", None) is not None:
        attns.append((block.cross_attn, layer.multihead_attn))
        norms = [(block.norm1, layer.norm1), (block.norm_cross, layer.norm2), (block.norm2, layer.norm3)]
    with torch.no_grad():
        for mine, theirs in attns:
            mine.q_proj.weight.copy_(theirs.in_proj_weight[:d])
            mine.q_proj.bias.copy_(theirs.in_proj_bias[:d])
            mine.kv_proj.weight.copy_(theirs.in_proj_weight[d:])
            mine.kv_proj.bias.copy_(theirs.in_proj_bias[d:])
            mine.out_proj.load_state_dict(theirs.out_proj.state_dict())
        block.ff[0].load_state_dict(layer.linear1.state_dict())
        block.ff[2].load_state_dict(layer.linear2.state_dict())
        for mine, theirs in norms:
            mine.load_state_dict(theirs.state_dict())


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_blocks_match_torch_transformer_layers(norm_first, activation):
    x, memory = torch.randn(2, 6, 32), torch.randn(2, 9, 32)
    pad = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
    mem_pad = torch.tensor([[False] * 9, [False] * 7 + [True] * 2])
    kw = dict(dropout=0.0, batch_first=True, norm_first=norm_first, activation=activation)
    ref = torch.nn.TransformerEncoderLayer(32, 4, 64, **kw).eval()
    enc = EncoderBlock(32, 4, 64, norm_first=norm_first, activation=activation).eval()
    copy_from_torch(enc, ref)
    assert (enc(x, key_padding_mask=pad) - ref(x, src_key_padding_mask=pad)).abs().max() < 1e-5
    ref = torch.nn.TransformerDecoderLayer(32, 4, 64, **kw).eval()
    dec = DecoderBlock(32, 4, 64, norm_first=norm_first, activation=activation).eval()
    copy_from_torch(dec, ref)
    want = ref(x, memory, tgt_mask=~torch.ones(6, 6, dtype=torch.bool).tril(), memory_key_padding_mask=mem_pad)
    assert (dec(x, memory, context_padding_mask=mem_pad) - want).abs().max() < 1e-5


# ---------------------------------------------------------------- KV cache


def test_cached_forward_matches_the_full_forward_piece_by_piece():
    model = GPT(40, block_size=30, d_model=32, n_heads=4, n_layers=2).eval()
    idx = torch.randint(0, 40, (3, 30))
    cache = model.new_cache(3)
    with torch.no_grad():
        pieces = [model(idx[:, a:b], cache=cache) for a, b in [(0, 10), (10, 25), (25, 26), (26, 30)]]
        assert cache.length == 30 and len(cache) == 2
        assert (torch.cat(pieces, 1) - model(idx)).abs().max() < 1e-5


@pytest.mark.parametrize("positional", ["learned", "sinusoidal"])
@pytest.mark.parametrize("top_k", [None, 5])
def test_generate_with_kv_cache_gives_the_same_tokens(positional, top_k):
    model = GPT(25, block_size=40, d_model=32, n_heads=4, n_layers=2, positional=positional).eval()
    prompt = torch.randint(0, 25, (16, 6))
    for seed in range(3):
        plain = model.generate(prompt, 34, top_k=top_k, generator=torch.Generator().manual_seed(seed))
        cached = model.generate(prompt, 34, top_k=top_k, generator=torch.Generator().manual_seed(seed), kv_cache=True)
        assert torch.equal(plain, cached)
    assert torch.equal(model.generate(prompt, 0, kv_cache=True), prompt)


def test_kv_cache_checks_its_inputs():
    model = GPT(25, block_size=10, d_model=32, n_heads=4, n_layers=2).eval()
    with pytest.raises(ValueError, match="kv_cache=True needs T \\+ max_new_tokens <= block_size=10"):
        model.generate(torch.zeros(1, 4, dtype=torch.long), 7, kv_cache=True)
    with pytest.raises(ValueError, match="max_new_tokens must be an int >= 0"):
        model.generate(torch.zeros(1, 4, dtype=torch.long), -1)
    cache = model.new_cache(2)
    with pytest.raises(ValueError, match="use model.new_cache"):
        model(torch.zeros(3, 4, dtype=torch.long), cache=cache)
    model(torch.zeros(2, 8, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="cache holds 8 positions and 3 more exceed block_size=10"):
        model(torch.zeros(2, 3, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        KVCache(2, 0, 4, 8, 10)
    layer = LayerCache(1, 2, 4, 3)
    layer.append(torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 4))
    with pytest.raises(ValueError, match="3 are filled and 1 more do not fit"):
        layer.append(torch.zeros(1, 2, 1, 4), torch.zeros(1, 2, 1, 4))
    with pytest.raises(ValueError, match="k must have shape"):
        LayerCache(1, 2, 4, 3).append(torch.zeros(1, 3, 1, 4), torch.zeros(1, 3, 1, 4))
    block = DecoderBlock(32, 4, cross_attention=False)
    with pytest.raises(ValueError, match="cache= works with causal self-attention"):
        block(torch.randn(1, 2, 32), causal=False, cache=LayerCache(1, 4, 8, 4))


def test_cached_self_attention_matches_masked_attention_and_is_differentiable():
    block = DecoderBlock(16, 2, cross_attention=False)
    x = torch.randn(2, 7, 16, requires_grad=True)
    cache = LayerCache(2, 2, 8, 7)
    out = torch.cat([block(x[:, :3], cache=cache), block(x[:, 3:], cache=cache)], 1)
    assert out.shape == (2, 7, 16) and (out - block(x)).abs().max() < 1e-5
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_kv_cache_is_faster_for_long_generations():
    model = GPT(30, block_size=96, d_model=32, n_heads=4, n_layers=2).eval()
    prompt = torch.randint(0, 30, (8, 4))
    times = {}
    for kv in (False, True):
        start = time.perf_counter()
        model.generate(prompt, 90, generator=torch.Generator().manual_seed(0), kv_cache=kv)
        times[kv] = time.perf_counter() - start
    assert times[True] < times[False]


# ---------------------------------------------------------------- DALL·E's text-and-image transformer


def test_modality_logits_mask_predicts_the_next_tokens_modality():
    mask = modality_logits_mask(3, 4, 5, 6)  # N = 7 tokens, V = 11
    assert mask.shape == (6, 11) and mask.dtype == torch.bool
    assert mask[:2, :5].all() and not mask[:2, 5:].any()  # positions 0, 1 predict text tokens 1, 2
    assert mask[2:, 5:].all() and not mask[2:, :5].any()  # position 2 (last text token) predicts image token 0
    with pytest.raises(ValueError, match="text_len must be a positive int"):
        modality_logits_mask(0, 4, 5, 6)


def test_text_image_transformer_shapes_masks_causality_and_gradients():
    model = TextImageTransformer(10, 7, text_len=3, grid=(2, 3), d_model=32, n_heads=4, n_layers=2)
    text, image = torch.randint(0, 10, (4, 3)), torch.randint(0, 7, (4, 6))
    tokens = torch.cat([text, image + 10], 1)  # (B, N = 9)
    logits = model(tokens[:, :-1])
    assert logits.shape == (4, 8, 17)
    assert torch.isinf(logits[:, :2, 10:]).all() and torch.isfinite(logits[:, :2, :10]).all()
    assert torch.isinf(logits[:, 2:, :10]).all() and torch.isfinite(logits[:, 2:, 10:]).all()
    changed = tokens.clone()
    changed[:, 5] = 10 + (changed[:, 5] - 10 + 1) % 7
    assert torch.allclose(model(changed[:, :-1])[:, :5], logits[:, :5], atol=1e-5)  # causal
    loss = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:])
    loss.backward()
    for name in ("text_embed.weight", "image_embed.weight", "text_pos", "image_row", "image_col", "head.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert model.positions().shape == (9, 32)


def test_text_image_transformer_cache_and_bad_tokens():
    model = TextImageTransformer(10, 7, text_len=3, grid=(2, 3), d_model=32, n_heads=4, n_layers=2).eval()
    tokens = torch.cat([torch.randint(0, 10, (2, 3)), torch.randint(10, 17, (2, 5))], 1)  # N - 1 = 8 positions
    cache = model.new_cache(2)
    with torch.no_grad():
        pieces = torch.cat([model(tokens[:, :3], cache=cache)] + [model(tokens[:, i:i + 1], cache=cache)
                                                                  for i in range(3, 8)], 1)
        assert torch.allclose(pieces, model(tokens), atol=1e-5)
    with pytest.raises(ValueError, match=r"tokens\[0, 1\] = 12 is at position 1, a text position, so it must lie "
                                         r"in 0..9"):
        model(torch.tensor([[1, 12, 3]]))
    with pytest.raises(ValueError, match="an image position, so it must lie in 10..16"):
        model(torch.tensor([[1, 2, 3, 4]]))
    with pytest.raises(ValueError, match="reads at most N - 1 = 8 positions"):
        model(torch.cat([tokens, tokens[:, -1:]], 1))
    with pytest.raises(ValueError, match="grid must be two positive ints"):
        TextImageTransformer(10, 7, text_len=3, grid=(2, 0))
    with pytest.raises(TypeError, match="tokens must have dtype torch.int64"):
        model(tokens.float())
