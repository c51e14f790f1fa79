# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Attention and the transformer
#
# Every model in this book that reads or writes a sequence is built from the
# parts of this chapter. BERT and the Vision Transformer (chapter 02) are stacks
# of its encoder block; the prior over VQ-VAE codes (03) and DALL·E (09) are its
# decoder-only GPT; latent diffusion (08) conditions on text with its
# cross-attention. So we build those parts once, carefully, and check each one.
#
# The plan follows "Attention Is All You Need" (Vaswani et al., 2017):
#
# 1. **tokens and embeddings**: what a model reads, and how its size is counted;
# 2. **scaled dot-product attention** with padding and causal masks, written from
#    scratch and checked against PyTorch; then **multi-head attention**;
# 3. **positional encodings**, sinusoidal and learned;
# 4. the **encoder block**, the **decoder block** and the **encoder–decoder**;
# 5. an experiment you can *see*: a transformer that normalises written dates,
#    with its cross-attention drawn and measured;
# 6. the same task for a **recurrent network** trained alongside: recurrence versus attention;
# 7. a **decoder-only GPT**, written out, trained on Shakespeare, sampled with
#    temperature and top-k, and measured against n-gram baselines;
# 8. encoder-only, decoder-only and encoder–decoder models: what each is for;
# 9. what each model of the chapter cost to train.
#
# The settings of the whole chapter live in one place. `fast` runs on a 2-core
# CPU within the budget the preface lists for this chapter; `full` is the same
# chapter for one GPU.

# %%
import datetime
import math
import re
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

import genbook
from genbook.data import CharTokenizer, dates, shakespeare_text, train_bpe
from genbook.metrics.text import bigram_baseline, unigram_baseline
from genbook.ngram import KneserNey
from genbook.nn import GPT, DecoderBlock, EncoderBlock, EncoderDecoder, MultiHeadAttention, record_attention

cfg = genbook.profile(
    fast=dict(
        dates=dict(n_train=40_000, n_heldout=1000, n_dates=[1, 1], d_model=64, n_heads=4, layers=2, d_ff=128,
                   steps=800, batch_size=64, lr=3e-3, warmup=80),
        gru=dict(d_embed=64, d_hidden=128),
        gpt=dict(block_size=64, d_model=96, n_heads=4, n_layers=2, steps=500, batch_size=32, lr=6e-3, warmup=25,
                 val_chars=131_072),
    ),
    full=dict(
        dates=dict(n_train=400_000, n_heldout=4000, n_dates=[1, 3], d_model=128, n_heads=4, layers=3, d_ff=512,
                   steps=12_000, batch_size=128, lr=1e-3, warmup=500),
        gru=dict(d_embed=128, d_hidden=384),
        gpt=dict(block_size=256, d_model=384, n_heads=6, n_layers=6, steps=5000, batch_size=64, lr=1e-3, warmup=200,
                 val_chars=472_000),
    ),
)
device = genbook.device()
print("profile:", genbook.profile_name(), "| device:", device)

# %% [markdown]
# ## 1. Tokens and embeddings
#
# A neural network computes with vectors, so text must become vectors. First it
# is cut into **tokens**, the units the model reads one at a time, and each
# token gets an integer id from a fixed **vocabulary**. The simplest tokenizer
# takes single characters: a tiny vocabulary, but long sequences. **Subword**
# tokenizers such as byte-pair encoding (BPE; Sennrich et al., 2016) start from
# characters (or bytes, as in GPT-2) and repeatedly merge the most frequent
# adjacent pair into a new token, so that frequent words become one token and
# rare ones split into pieces. The book's text is Shakespeare, split *by work*
# into training and held-out works (plays and poems), so held-out text is truly
# unseen. The character vocabulary is built from both parts, so that no held-out
# character is unknown; a model still learns nothing about a character it never
# reads in training.

# %%
train_text, val_text = shakespeare_text("train"), shakespeare_text("val")
chars = CharTokenizer(train_text + val_text)
bpe = train_bpe(train_text[:500_000], vocab_size=512)  # a small byte-level BPE, trained on 0.5 M characters
line = val_text[1000:1080]
sample_chars = val_text[:100_000]
print(f"training text {len(train_text):,} characters, held-out text {len(val_text):,} characters")
print(f"character vocabulary: {chars.vocab_size} tokens; BPE vocabulary: {bpe.vocab_size} tokens\n")
print("characters:", [chars.decode([i]) for i in chars.encode(line)][:24])
print("BPE       :", [bpe.decode([i]) for i in bpe.encode(line)][:24])
print(f"\nBPE tokens per character on held-out text: {len(bpe.encode(sample_chars)) / len(sample_chars):.2f}")

# %% [markdown]
# BPE shortens the sequence, which makes attention cheaper (its cost grows with
# the square of the length) at the price of a bigger vocabulary and therefore a
# bigger embedding table and output layer. This chapter's language model reads
# characters, which keeps the vocabulary tiny and its loss directly comparable
# with character n-gram baselines; subword tokenizers return with BERT
# (WordPiece) and DALL·E (BPE).
#
# **Why vectors.** An id is just a name: id 40 is not "closer" to 41 than to 3.
# A model could take a one-hot vector $e_i \in \{0, 1\}^V$, but its first linear
# layer would then select one row of a weight matrix. That is all an embedding
# layer is: a learned table $W_E \in \mathbb{R}^{V \times d}$, and token $i$
# becomes row $e_i^\top W_E$. Training moves the rows so that tokens used alike
# end up close, which we measure on the trained GPT in section 7.

# %%
embed = nn.Embedding(chars.vocab_size, 8)
ids = torch.tensor(chars.encode("To be"))  # (T,)
one_hot = F.one_hot(ids, chars.vocab_size).float()  # (T, V)
assert torch.allclose(one_hot @ embed.weight, embed(ids))  # e_i^T W_E is a row lookup
print("ids:", ids.tolist(), "-> vectors of shape", tuple(embed(ids).shape))

# %% [markdown]
# **Parameters and training tokens.** Two numbers size a model run: the number
# of parameters $N$ (mostly the weight matrices of the blocks, plus $V \times d$
# for the embeddings) and the number of training tokens $D$ it reads. Training
# costs about $6ND$ floating point operations (Kaplan et al., 2020, sec. 2.1):
# each token passes once through every weight, a multiply and an add ($2N$) in
# the forward pass and twice that in the backward pass ($4N$), where $N$ counts
# the weights of matrix products (an embedding lookup costs no arithmetic) and
# the attention scores themselves, small for short contexts, are left out. For a
# fixed compute budget the best language models use roughly 20 tokens per
# parameter (Hoffmann et al., 2022). We count both for every model of this
# chapter and put them side by side in section 9.
#
# ## 2. Scaled dot-product attention
#
# Attention is a soft dictionary lookup. Each position asks a **query** $q$; every
# position offers a **key** $k$ and a **value** $v$. The answer is an average of
# the values, weighted by how well the query matches each key. Stacking queries,
# keys and values as rows of matrices $Q \in \mathbb{R}^{T_q \times d_k}$,
# $K \in \mathbb{R}^{T_k \times d_k}$, $V \in \mathbb{R}^{T_k \times d_v}$
# (Vaswani et al., 2017, eq. 1):
#
# $$
# \operatorname{Attention}(Q, K, V) = \operatorname{softmax}\!\Big(\frac{Q K^\top}{\sqrt{d_k}}\Big) V .
# $$
#
# Each row of the softmax sums to one. Two **masks** remove keys a query must not
# see, by setting their scores to $-\infty$ before the softmax:
#
# - a **padding mask** hides the filler tokens that make sequences of different
#   lengths fit into one rectangular batch;
# - a **causal mask** hides the future: position $i$ sees only positions $j \le i$,
#   which is what lets a model be trained to predict every next token at once.

# %%
def attention(q, k, v, mask=None):
    """Vaswani et al. (2017) eq. 1. q: (..., T_q, d_k), k: (..., T_k, d_k), v: (..., T_k, d_v).

    mask: bool, broadcastable to (..., T_q, T_k), True where a query may attend to a key.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # Q K^T / sqrt(d_k), (..., T_q, T_k)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))  # masked keys get weight exp(-inf) = 0
    weights = scores.softmax(dim=-1)  # each row sums to 1
    return weights @ v  # (..., T_q, d_v)


def causal(t):
    """(T, T) bool: position i may attend to positions j <= i."""
    return torch.ones(t, t, dtype=torch.bool).tril()


print(causal(5).int())

# %% [markdown]
# Before using it we check it against an independent implementation, PyTorch's
# `torch.nn.functional.scaled_dot_product_attention`, on random inputs of shape
# (batch B, heads H, length T, width d): without a mask, with the causal mask,
# and with a padding mask where the second sequence has only 5 real tokens.

# %%
gen = genbook.seed_everything(0)
B, H, T, d_k = 2, 4, 7, 16
q, k, v = (torch.randn(B, H, T, d_k, generator=gen) for _ in range(3))
lengths = torch.tensor([7, 5])
padding = torch.arange(T)[None, :] >= lengths[:, None]  # (B, T), True at padding
keep = ~padding[:, None, None, :]  # (B, 1, 1, T): broadcast over heads and queries

errors = {}
for name, mask in [("no mask", None), ("causal mask", causal(T)), ("padding mask", keep)]:
    ours = attention(q, k, v, mask)
    torch_says = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    errors[name] = (ours - torch_says).abs().max().item()
    print(f"{name:<13} max |ours - PyTorch| = {errors[name]:.1e}")
attention_max_abs_error = max(errors.values())
assert attention_max_abs_error < 1e-5, errors

# %% [markdown]
# **Why divide by $\sqrt{d_k}$.** If the entries of $q$ and $k$ are independent
# with mean 0 and variance 1, the dot product $q \cdot k = \sum_{i=1}^{d_k} q_i k_i$
# has variance $d_k$. Without the scaling, wide heads would produce huge scores,
# the softmax would put almost all its weight on one key, and its gradient would
# vanish (Vaswani et al., 2017, sec. 3.2.1). The scaling keeps the scores at unit
# variance whatever the width:

# %%
for width in (16, 64, 256):
    queries, keys = torch.randn(10_000, 1, width, generator=gen), torch.randn(10_000, 8, width, generator=gen)
    dots = (queries * keys).sum(-1)  # (10000, 8): one query against 8 keys, 10000 times
    largest = lambda s: s.softmax(-1).max(-1).values.mean().item()  # the weight of the winning key
    print(f"d_k={width:>3}: std of q.k {dots.std():5.1f}, of q.k/sqrt(d_k) {(dots / math.sqrt(width)).std():.2f}; "
          f"largest softmax weight {largest(dots):.2f} unscaled, {largest(dots / math.sqrt(width)):.2f} scaled")

# %% [markdown]
# ### Multi-head attention
#
# One attention computes one weighted average per position. **Multi-head
# attention** runs $h$ of them in parallel, each in its own learned
# $d_k = d_\text{model} / h$-dimensional projection, so that different heads can
# look for different things (the previous character, the matching bracket, the
# subject of the verb), and mixes their results (sec. 3.2.2):
#
# $$
# \operatorname{MultiHead}(X, C) = \operatorname{Concat}(\text{head}_1, \dots, \text{head}_h)\, W^O,
# \qquad \text{head}_i = \operatorname{Attention}(X W_i^Q,\; C W_i^K,\; C W_i^V).
# $$
#
# In **self-attention** the queries and the keys come from the same sequence
# ($C = X$); in **cross-attention** the queries come from one sequence and the
# keys and values from another (a decoder reading its encoder's output, or an
# image model reading a caption). All heads are computed at once by projecting
# to $d_\text{model}$ and splitting the last dimension into $h$ heads.

# %%
class MultiHead(nn.Module):
    """Multi-head attention from scratch. x: (B, T, C), context: (B, S, C) -> (B, T, C)."""

    def __init__(self, d_model, n_heads):
        super().__init__()
        self.h, self.d_k = n_heads, d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model)  # W^Q of all heads side by side
        self.kv_proj = nn.Linear(d_model, 2 * d_model)  # W^K and W^V of all heads
        self.out_proj = nn.Linear(d_model, d_model)  # W^O

    def forward(self, x, context=None, mask=None):
        context = x if context is None else context
        B, T, C = x.shape
        q = self.q_proj(x).view(B, T, self.h, self.d_k).transpose(1, 2)  # (B, h, T, d_k)
        kv = self.kv_proj(context).view(B, -1, 2, self.h, self.d_k)  # (B, S, 2, h, d_k)
        k, v = kv.permute(2, 0, 3, 1, 4)  # each (B, h, S, d_k)
        heads = attention(q, k, v, mask)  # eq. 1 in every head at once, (B, h, T, d_k)
        return self.out_proj(heads.transpose(1, 2).reshape(B, T, C))  # Concat(head_1..h) W^O


# %% [markdown]
# genbook's `MultiHeadAttention` computes the same thing with
# `scaled_dot_product_attention`, which on a GPU runs fused kernels such as
# FlashAttention that never store the $T \times T$ weight matrix (`make bench`
# times it against the naive version). It has the same parameters, so we can
# load our weights into it, and into PyTorch's independent
# `nn.MultiheadAttention`, and compare: self-attention with padding, causal
# self-attention, and cross-attention to a longer context.

# %%
ours = MultiHead(32, 4)
theirs = MultiHeadAttention(32, 4)  # genbook's
theirs.load_state_dict(ours.state_dict())
x, context = torch.randn(2, 6, 32, generator=gen), torch.randn(2, 9, 32, generator=gen)
pad = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])  # (B, T), True = padding
torch_mha = nn.MultiheadAttention(32, 4, batch_first=True)  # PyTorch's own: an independent implementation
with torch.no_grad():
    torch_mha.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.kv_proj.weight]))  # [W^Q; W^K; W^V]
    torch_mha.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.kv_proj.bias]))
    torch_mha.out_proj.load_state_dict(ours.out_proj.state_dict())
checks = {  # name: (ours, genbook's, PyTorch's)
    "padded self-attention": (ours(x, mask=~pad[:, None, None, :]), theirs(x, key_padding_mask=pad),
                              torch_mha(x, x, x, key_padding_mask=pad, need_weights=False)[0]),
    "causal self-attention": (ours(x, mask=causal(6)), theirs(x, causal=True),
                              torch_mha(x, x, x, attn_mask=~causal(6), need_weights=False)[0]),  # True = hidden
    "cross-attention": (ours(x, context), theirs(x, context), torch_mha(x, context, context, need_weights=False)[0]),
}
for name, (a, b, c) in checks.items():
    print(f"{name:<22} output {tuple(b.shape)}, max |ours - genbook| = {(a - b).abs().max().item():.1e}, "
          f"max |ours - nn.MultiheadAttention| = {(a - c).abs().max().item():.1e}")
    assert (a - b).abs().max() < 1e-5 and (a - c).abs().max() < 1e-5
try:
    theirs(torch.randn(2, 6, 16))
except ValueError as err:
    print("a wrong width is caught:", err)
else:
    raise AssertionError("MultiHeadAttention accepted an input of the wrong width")

# %% [markdown]
# ## 3. Positional encoding
#
# Attention treats its input as a *set*: permute the tokens and the outputs are
# permuted the same way, nothing else changes. Word order is lost.

# %%
perm = torch.randperm(6, generator=gen)
with torch.no_grad():
    permutation_error = (theirs(x[:, perm]) - theirs(x)[:, perm]).abs().max().item()
print(f"permuting the input permutes the output: max difference {permutation_error:.1e}")
assert permutation_error < 1e-5

# %% [markdown]
# So position is added to each token's embedding. The transformer adds fixed
# sinusoids of geometrically spaced frequencies (sec. 3.5):
#
# $$
# PE_{(pos,\, 2i)} = \sin\!\big(pos / 10000^{2i/d_\text{model}}\big), \qquad
# PE_{(pos,\, 2i+1)} = \cos\!\big(pos / 10000^{2i/d_\text{model}}\big).
# $$
#
# Each pair of dimensions is a clock hand turning at its own speed: the fast
# ones tell neighbours apart, the slow ones tell the beginning from the end.
# Because a shift by $k$ rotates every hand by a fixed angle, $PE_{pos+k}$ is a
# linear function of $PE_{pos}$, which the paper hoped would make relative
# positions easy to use (you prove it in exercise 1.3). The alternative, used
# by GPT and BERT, is a **learned** table with one vector per position: more
# flexible, but it knows nothing about positions it never saw in training.

# %%
def sinusoidal(max_len, d_model):
    """(max_len, d_model) table of sec. 3.5."""
    pos = torch.arange(max_len)[:, None]  # (T, 1)
    freq = 10000 ** (-torch.arange(0, d_model, 2) / d_model)  # 1 / 10000^(2i/d_model), (d_model/2,)
    pe = torch.zeros(max_len, d_model)
    pe[:, 0::2] = torch.sin(pos * freq)  # PE(pos, 2i)
    pe[:, 1::2] = torch.cos(pos * freq)  # PE(pos, 2i+1)
    return pe


pe = sinusoidal(128, 64)
# An independent check: sin a sin b + cos a cos b = cos(a - b), so PE_i . PE_j = sum_m cos((i - j) w_m)
# depends only on the offset i - j. Compare the table's dot products with that closed form, in float64.
omega = 10000 ** (-torch.arange(0, 64, 2, dtype=torch.float64) / 64)  # w_m, (32,)
offsets = torch.arange(128, dtype=torch.float64)
closed_form = torch.cos((offsets[:, None, None] - offsets[None, :, None]) * omega).sum(-1)  # (128, 128)
pe_dot_error = (pe.double() @ pe.double().T - closed_form).abs().max().item()
print(f"max |PE PE^T - sum_m cos((i-j) w_m)| = {pe_dot_error:.1e} (the dot products are up to {pe.shape[1] // 2})")
assert pe_dot_error < 1e-3
assert torch.allclose(pe, genbook.nn.sinusoidal_table(128, 64), atol=1e-5)  # consistency: genbook's table is ours

fig, (ax_pe, ax_sim) = plt.subplots(1, 2, figsize=(10, 3.4))
ax_pe.imshow(pe.T, aspect="auto", cmap="RdBu", origin="lower")
ax_pe.set(xlabel="position", ylabel="dimension", title="sinusoidal positional encoding")
ax_sim.imshow(pe @ pe.T, cmap="viridis")
ax_sim.set(xlabel="position", ylabel="position", title=r"$PE_{pos} \cdot PE_{pos'}$: depends on the distance")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. The transformer blocks
#
# A transformer is a stack of identical **blocks**. Each block has two or three
# **sublayers** (attention, and a position-wise feed-forward network), each
# wrapped in a residual connection and a layer normalisation. The feed-forward
# network is applied to every position separately (eq. 2):
#
# $$
# \operatorname{FFN}(x) = \max(0,\, x W_1 + b_1)\, W_2 + b_2 .
# $$
#
# A **residual connection** (He et al., 2016) adds a sublayer's output to its
# input, $x + \operatorname{Sublayer}(x)$. Each block then only has to learn a
# correction to the vector that flows past it (the *residual stream*), and in the
# backward pass the gradient reaches every earlier block through the identity
# path undiminished, so that a deep stack trains about as easily as a shallow one.
# **Layer normalisation** (Ba et al., 2016) keeps the scale of that stream under
# control: each position's vector $x \in \mathbb{R}^d$ is shifted and scaled to
# zero mean and unit variance over its $d$ features, then given a learned scale
# $\gamma$ and shift $\beta$ per feature,
#
# $$
# \operatorname{LN}(x) = \gamma \odot \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta, \qquad
# \mu = \frac1d \sum_{i=1}^d x_i, \quad \sigma^2 = \frac1d \sum_{i=1}^d (x_i - \mu)^2 .
# $$
#
# Unlike batch normalisation it uses no statistics of other examples, so it works
# the same in training and in generation, one token at a time.

# %%
def layer_norm(x, gamma, beta, eps=1e-5):
    """LN over the last dimension (Ba et al., 2016). x: (..., d); gamma, beta: (d,)."""
    mu = x.mean(-1, keepdim=True)  # μ
    var = ((x - mu) ** 2).mean(-1, keepdim=True)  # σ² (the biased variance, 1/d)
    return gamma * (x - mu) / torch.sqrt(var + eps) + beta


x_ln = torch.randn(4, 7, 32, generator=gen) * 3 + 1  # (B, T, d), far from zero mean and unit variance
gamma, beta = torch.randn(32, generator=gen), torch.randn(32, generator=gen)
layer_norm_error = (layer_norm(x_ln, gamma, beta) - F.layer_norm(x_ln, (32,), gamma, beta)).abs().max().item()
print(f"max |ours - F.layer_norm| = {layer_norm_error:.1e}")
assert layer_norm_error < 1e-5

# %% [markdown]
# Where the normalisation goes matters. The original transformer normalises
# *after* the residual sum (**post-norm**); GPT-2 and most models since normalise
# the *input* of each sublayer and leave the residual path untouched (**pre-norm**),
# which trains stably without a learning-rate warm-up (Xiong et al., 2020):
#
# $$
# \text{post-norm: } x \leftarrow \operatorname{LN}\big(x + \operatorname{Sublayer}(x)\big), \qquad
# \text{pre-norm: } x \leftarrow x + \operatorname{Sublayer}\big(\operatorname{LN}(x)\big).
# $$
#
# The **encoder block** is bidirectional self-attention (every token sees every
# token, except padding) and a feed-forward network:

# %%
class Encoder(nn.Module):
    """One encoder block from scratch, pre- or post-norm. x: (B, S, C) -> (B, S, C)."""

    def __init__(self, d_model, n_heads, d_ff, norm_first):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHead(d_model, n_heads)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.ReLU(), nn.Linear(d_ff, d_model))  # eq. 2

    def forward(self, x, mask=None):
        attend = lambda h: self.self_attn(h, mask=mask)
        if self.norm_first:  # pre-norm: x + Sublayer(LN(x))
            x = x + attend(self.norm1(x))
            return x + self.ff(self.norm2(x))
        x = self.norm1(x + attend(x))  # post-norm: LN(x + Sublayer(x))
        return self.norm2(x + self.ff(x))


# %% [markdown]
# The **decoder block** adds a sublayer between the two: masked (causal)
# self-attention over what has been generated so far, then **cross-attention**
# whose queries come from the decoder and whose keys and values are the
# encoder's output (its `memory`), then the feed-forward network. Without the
# cross-attention sublayer it is the block of GPT.

# %%
class Decoder(nn.Module):
    """One decoder block from scratch, pre- or post-norm. x: (B, T, C), memory: (B, S, C) -> (B, T, C).

    memory_mask: bool, broadcastable to (B, h, T, S), True where a query may read a source position.
    With cross=False there is no memory: the block of GPT.
    """

    def __init__(self, d_model, n_heads, d_ff, norm_first, cross=True, activation=nn.ReLU):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn, self.norm1 = MultiHead(d_model, n_heads), nn.LayerNorm(d_model)
        self.cross_attn = MultiHead(d_model, n_heads) if cross else None
        self.norm_cross = nn.LayerNorm(d_model) if cross else None
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), activation(), nn.Linear(d_ff, d_model))  # eq. 2
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x, memory=None, memory_mask=None):
        sublayers = [(lambda h: self.self_attn(h, mask=causal(h.shape[1]).to(h.device)), self.norm1)]  # masked
        if self.cross_attn is not None:  # queries from the decoder, keys and values from the encoder
            sublayers.append((lambda h: self.cross_attn(h, memory, mask=memory_mask), self.norm_cross))
        sublayers.append((self.ff, self.norm2))
        for sublayer, norm in sublayers:
            if self.norm_first:
                x = x + sublayer(norm(x))  # pre-norm: x + Sublayer(LN(x))
            else:
                x = norm(x + sublayer(x))  # post-norm: LN(x + Sublayer(x))
        return x


# %% [markdown]
# genbook's `EncoderBlock` and `DecoderBlock` implement the same blocks (with
# optional cross-attention and a context of another width, which latent
# diffusion needs). We check ours and genbook's against PyTorch's own
# `nn.TransformerEncoderLayer` and `nn.TransformerDecoderLayer`, in both norm
# placements, by copying the weights across; the decoders also get a source
# padding mask (the second source has 3 padding positions).

# %%
def load_torch_layer(block, layer):
    """Copy the weights of a torch.nn.Transformer{Encoder,Decoder}Layer into a genbook block."""
    d = block.self_attn.d_model
    attns = [(block.self_attn, layer.self_attn)]
    if getattr(block, "cross_attn", None) is not None:
        attns.append((block.cross_attn, layer.multihead_attn))
    with torch.no_grad():
        for mine, torch_attn in attns:
            mine.q_proj.weight.copy_(torch_attn.in_proj_weight[:d])
            mine.q_proj.bias.copy_(torch_attn.in_proj_bias[:d])
            mine.kv_proj.weight.copy_(torch_attn.in_proj_weight[d:])
            mine.kv_proj.bias.copy_(torch_attn.in_proj_bias[d:])
            mine.out_proj.load_state_dict(torch_attn.out_proj.state_dict())
        block.ff[0].load_state_dict(layer.linear1.state_dict())
        block.ff[2].load_state_dict(layer.linear2.state_dict())
        pairs = [(block.norm1, layer.norm1), (block.norm2, layer.norm2)]  # encoder: attention, feed-forward
        if len(attns) == 2:  # decoder: self-attention, cross-attention, feed-forward
            pairs = [(block.norm1, layer.norm1), (block.norm_cross, layer.norm2), (block.norm2, layer.norm3)]
        for mine, theirs_norm in pairs:
            mine.load_state_dict(theirs_norm.state_dict())


x, memory = torch.randn(2, 6, 32, generator=gen), torch.randn(2, 9, 32, generator=gen)
memory_pad = torch.tensor([[False] * 9, [False] * 6 + [True] * 3])  # (B, S), True = padding
block_errors = {}
for norm_first in (False, True):
    kind = "pre-norm " if norm_first else "post-norm"
    reference = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True, norm_first=norm_first).eval()
    block = EncoderBlock(32, 4, 64, norm_first=norm_first, activation="relu").eval()
    load_torch_layer(block, reference)
    scratch = Encoder(32, 4, 64, norm_first)
    scratch.load_state_dict(block.state_dict())  # the same parameter names
    want = reference(x, src_key_padding_mask=pad)
    err_genbook = (block(x, key_padding_mask=pad) - want).abs().max().item()
    err_scratch = (scratch(x, mask=~pad[:, None, None, :]) - want).abs().max().item()

    reference = nn.TransformerDecoderLayer(32, 4, 64, dropout=0.0, batch_first=True, norm_first=norm_first).eval()
    dec = DecoderBlock(32, 4, 64, norm_first=norm_first, activation="relu").eval()
    load_torch_layer(dec, reference)
    scratch_dec = Decoder(32, 4, 64, norm_first)
    scratch_dec.load_state_dict(dec.state_dict())  # the same parameter names
    # torch's masks say the opposite of ours: True = hidden
    want = reference(x, memory, tgt_mask=~causal(6), tgt_is_causal=True, memory_key_padding_mask=memory_pad)
    err_dec = (dec(x, memory, context_padding_mask=memory_pad) - want).abs().max().item()
    err_scratch_dec = (scratch_dec(x, memory, memory_mask=~memory_pad[:, None, None, :]) - want).abs().max().item()
    print(f"{kind}: encoder block: ours {err_scratch:.1e}, genbook {err_genbook:.1e}; "
          f"decoder block (causal + cross-attention): ours {err_scratch_dec:.1e}, genbook {err_dec:.1e}")
    block_errors[kind] = max(err_genbook, err_scratch, err_dec, err_scratch_dec)
assert max(block_errors.values()) < 1e-5, block_errors

# %% [markdown]
# ### The encoder–decoder
#
# The model of "Attention Is All You Need" reads a source sequence with a stack
# of encoder blocks and writes the target with a stack of decoder blocks, each of
# which cross-attends to the encoder's output. Token embeddings are multiplied
# by $\sqrt{d_\text{model}}$ (sec. 3.4) and added to the positional encodings (sec. 3.5), and
# a final linear layer gives the logits of the next target token. genbook's
# `EncoderDecoder` wires these parts; its `encode` and `decode` are a few lines
# each (`genbook/nn/transformer.py`).
#
# ## 5. An experiment you can see: normalising dates
#
# Translation between languages needs large data. A task with the same shape
# that we can generate and check exactly is **date normalisation**: read a date
# written in one of ten ways, write it in ISO 8601. Each output digit comes from
# an identifiable input character, so we can see whether cross-attention looks
# in the right place. The held-out examples use calendar days that never occur
# in training, in any writing.

# %%
dates_cfg = cfg["dates"]
vocab = dates.VOCAB
train_pairs = dates.date_pairs(dates_cfg["n_train"], "train", n_dates=tuple(dates_cfg["n_dates"]), seed=0)
heldout_pairs = dates.date_pairs(dates_cfg["n_heldout"], "heldout", n_dates=tuple(dates_cfg["n_dates"]), seed=0)
for source, target in train_pairs[:6]:
    print(f"{source:<42} -> {target}")
assert not {s for s, _ in train_pairs} & {s for s, _ in heldout_pairs}
src_train, tgt_train = dates.encode_pairs(train_pairs)  # (N, S), (N, T+1) = BOS target EOS
src_held, tgt_held = dates.encode_pairs(heldout_pairs)
print(f"\n{len(train_pairs):,} training pairs, {len(heldout_pairs):,} held-out pairs; vocabulary {vocab.size} "
      f"characters incl. PAD/BOS/EOS; source lengths {int((src_held != vocab.PAD).sum(1).min())}-"
      f"{int((src_held != vocab.PAD).sum(1).max())} characters")

# %% [markdown]
# **Training.** The decoder reads the target shifted right by one (it starts with
# BOS) and predicts every next character in one pass, the causal mask keeping it
# from peeking (**teacher forcing**). The loss is the cross-entropy of the true
# next character, averaged over the non-padding positions:
#
# $$
# \mathcal{L}(\theta) = -\frac{1}{\sum_n T_n} \sum_{n} \sum_{t=1}^{T_n} \log p_\theta\big(y^{(n)}_t \mid y^{(n)}_{<t},\, x^{(n)}\big).
# $$
#
# The optimiser is AdamW with a short linear warm-up and a cosine decay of the
# learning rate to 5% of its peak, `genbook.warmup_cosine` (the paper warms up,
# then decays as $1/\sqrt{\text{step}}$).
# Batches group sources of similar length so that little compute goes into padding.

# %%
def train_seq2seq(model, settings, seed):
    """Teacher-forced cross-entropy on the date pairs; returns the history and the time per step."""
    generator = genbook.seed_everything(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["lr"], betas=(0.9, 0.98), weight_decay=0.01)

    def step(src, tgt):
        logits = model(src, tgt[:, :-1])  # (B, T, V): predict y_t from y_<t and the source
        return F.cross_entropy(logits.reshape(-1, vocab.size), tgt[:, 1:].reshape(-1), ignore_index=vocab.PAD)

    data = dates.length_batches(src_train, tgt_train, settings["batch_size"], generator=generator, device=device)
    start = time.perf_counter()
    schedule = genbook.warmup_cosine(settings["lr"], settings["steps"], settings["warmup"])
    history = genbook.fit(step, data, settings["steps"], model=model, optimizer=optimizer, grad_clip=1.0,
                          lr_schedule=schedule, log_every=50, desc=type(model).__name__)
    return {"history": history, "seconds_per_step": (time.perf_counter() - start) / settings["steps"],
            "training_tokens": int(settings["steps"] * settings["batch_size"]  # source + target tokens read
                                   * ((src_train != vocab.PAD).sum() + (tgt_train != vocab.PAD).sum() - len(tgt_train))
                                   / len(src_train))}


genbook.seed_everything(1)
transformer = EncoderDecoder(vocab.size, vocab.size, d_model=dates_cfg["d_model"], n_heads=dates_cfg["n_heads"],
                             n_encoder_layers=dates_cfg["layers"], n_decoder_layers=dates_cfg["layers"],
                             d_ff=dates_cfg["d_ff"], max_len=128, positional="sinusoidal").to(device)
transformer, transformer_info = genbook.load_or_train(transformer, lambda m: train_seq2seq(m, dates_cfg, seed=2),
                                                      chapter="01_attention", name="dates_transformer",
                                                      config=dates_cfg)
print(f"transformer: {genbook.nn.count_parameters(transformer):,} parameters, "
      f"{1e3 * transformer_info['seconds_per_step']:.0f} ms per training step")

# %% [markdown]
# **Decoding.** At test time there is no target to read: the decoder writes one
# character, appends it to its input and runs again, until it writes the end
# token EOS (**autoregressive** decoding). The source is encoded once. Here is
# greedy decoding, always taking the most likely character, written out. Two
# checks follow: an independent one, that a single teacher-forced pass over the
# decoded output picks the same argmax at every written position (what greedy
# decoding means), and a consistency check against genbook's `EncoderDecoder.generate`.

# %%
@torch.no_grad()
def greedy_decode(model, src, max_new_tokens):
    """(B, S) -> (B, <= max_new_tokens) ids; each row stops after its EOS (PAD afterwards)."""
    memory, src_padding = model.encode(src)  # (B, S, C), computed once
    out = torch.full((len(src), 1), vocab.BOS, device=src.device)  # every output starts with BOS
    finished = torch.zeros(len(src), dtype=torch.bool, device=src.device)
    for _ in range(max_new_tokens):
        logits = model.decode(out, memory, src_padding)[:, -1]  # (B, V): the next character
        next_id = logits.argmax(-1).masked_fill(finished, vocab.PAD)
        out = torch.cat([out, next_id[:, None]], dim=1)
        finished |= next_id == vocab.EOS
        if finished.all():
            break
    return out[:, 1:]


max_new = 11 * dates_cfg["n_dates"][1]  # ten characters and a space (or EOS) per date
src_held, tgt_held = src_held.to(device), tgt_held.to(device)
transformer.eval()
predicted = greedy_decode(transformer, src_held, max_new)
with torch.no_grad():  # one teacher-forced pass: BOS + the decoded output, shifted right
    bos = torch.full((len(predicted), 1), vocab.BOS, device=device)
    forced_argmax = transformer(src_held, torch.cat([bos, predicted[:, :-1]], dim=1)).argmax(-1)  # (B, L)
written = predicted != vocab.PAD  # every position up to and including each row's EOS
greedy_agreement = (forced_argmax[written] == predicted[written]).float().mean().item()
print(f"teacher-forced argmax = greedy choice at {greedy_agreement:.2%} of {int(written.sum()):,} written positions")
assert greedy_agreement == 1.0
assert torch.equal(predicted, transformer.generate(src_held, vocab.BOS, vocab.EOS, max_new))  # consistency
predictions = [vocab.decode(row) for row in predicted.tolist()]
correct = torch.tensor([p == t for p, (_, t) in zip(predictions, heldout_pairs)])
encdec_exact_match = correct.float().mean().item()
print(f"held-out exact match: {encdec_exact_match:.1%} of {len(correct)} dates never seen in training")
for (source, target), p, ok in list(zip(heldout_pairs, predictions, correct))[:5]:
    print(f"  {source:<40} -> {p}  {'ok' if ok else 'WRONG, expected ' + target}")

# %% [markdown]
# **Where the decoder looks.** `record_attention` makes every attention layer
# keep its weights for one forward pass. We feed the decoder its own output and
# draw the cross-attention of the last decoder layer, averaged over heads: one
# row per output character, one column per source character.

# %%
# one date written in words, one in the year-first numeric style
examples = [next(i for i, (s, _) in enumerate(heldout_pairs) if " of " in s),
            next(i for i, (s, _) in enumerate(heldout_pairs) if "/" in s and len(s) < 12)]
fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
for ax, i in zip(axes, examples):
    source, _ = heldout_pairs[i]
    src = src_held[i:i + 1, :len(source)]
    out_ids = torch.tensor([[vocab.BOS] + vocab.encode(predictions[i]) + [vocab.EOS]], device=device)
    with record_attention(transformer) as maps:
        transformer(src, out_ids[:, :-1])
    cross = maps[f"decoder.{dates_cfg['layers'] - 1}.cross_attn"][0].mean(0).cpu()  # (T, S), averaged over heads
    ax.imshow(cross, cmap="Greys", aspect="auto")
    ax.set_xticks(range(len(source)), list(source), fontsize=8)
    ax.set_yticks(range(cross.shape[0]), list(predictions[i]) + ["EOS"], fontsize=8)
    ax.set_title("cross-attention, last decoder layer", fontsize=10)
plt.tight_layout()
plt.show()

# %% [markdown]
# Read the pictures row by row: which source characters does each output
# character read? To turn the picture into a number we take the part that is
# easy to locate in every format, the year: every style writes it as four digits.
# Over all held-out pairs, we measure the share of the cross-attention of the
# four year digits of the output (averaged over heads) that falls on the four year
# characters of the source, in each decoder layer, and compare it with the share
# if attention were spread evenly over the source, 4 / (source length).

# %%
def year_spans(source):
    """(start, end) character spans of the four-digit years in a source, in order."""
    return [m.span() for m in re.finditer(r"(?<!\d)\d{4}(?!\d)", source)]


with torch.no_grad(), record_attention(transformer) as maps:
    transformer(src_held, tgt_held[:, :-1])  # teacher-forced: the true targets as decoder input
on_year = torch.zeros(len(heldout_pairs), dates_cfg["layers"])  # mean share of the year digits' attention
uniform_share = torch.zeros(len(heldout_pairs))
for i, (source, target) in enumerate(heldout_pairs):
    spans = year_spans(source)
    assert len(spans) == len(target.split()), (source, target)  # one year per date, found in order
    for layer in range(dates_cfg["layers"]):
        cross = maps[f"decoder.{layer}.cross_attn"][i].mean(0).cpu()  # (T, S), averaged over heads
        on_year[i, layer] = torch.stack([cross[11 * k:11 * k + 4, a:b].sum(-1).mean()  # output digits 11k..11k+3
                                         for k, (a, b) in enumerate(spans)]).mean()
    uniform_share[i] = 4 / len(source)
year_share = on_year.mean(0)  # (layers,)
for layer in range(dates_cfg["layers"]):
    print(f"decoder layer {layer + 1}: the year digits put {year_share[layer]:.0%} of their cross-attention "
          f"on the source's year")
print(f"spread evenly over the source it would be {uniform_share.mean():.0%}")
year_attention_share = year_share[-1].item()
assert year_attention_share > 2 * uniform_share.mean(), (year_share, uniform_share.mean())

# %% [markdown]
# Nobody told the model where the parts of a date are: the share printed above
# is what cross-attention learned from input–output pairs alone. Learning such an
# alignment is what Bahdanau et al. (2015) introduced attention for. (Attention
# weights show where information is *read*, not everything a layer does with it:
# the self-attention of the encoder has already mixed neighbouring characters
# into each source position.)
#
# ## 6. Recurrence versus attention
#
# Before transformers, sequence-to-sequence models were recurrent (Cho et al.,
# 2014; Sutskever et al., 2014). A **gated recurrent unit** (GRU) reads one token
# at a time and keeps a hidden state $h_t$ (PyTorch's gate convention):
#
# $$
# r_t = \sigma(W_r x_t + U_r h_{t-1}), \quad z_t = \sigma(W_z x_t + U_z h_{t-1}), \quad
# \tilde h_t = \tanh\!\big(W x_t + r_t \odot (U h_{t-1})\big), \quad
# h_t = (1 - z_t) \odot \tilde h_t + z_t \odot h_{t-1} .
# $$
#
# The encoder GRU's last state $c = h_S$ must summarise the *whole* source in one
# vector; the decoder GRU starts from it and sees it at every step (Cho et al.,
# 2014). Attention removes that bottleneck: Bahdanau et al. (2015) let the
# decoder look back at every encoder state, and the transformer keeps only the
# attention. Two things separate them: the fixed-size summary (which sources
# does it fail on?) and sequential computation: in training, $S + T$ dependent
# steps per example instead of a few parallel matrix products. (In generation
# both are sequential, one output token at a time; a transformer decoder then
# caches the keys and values of earlier positions, the subject of exercise 1.1.)
# We train a GRU encoder–decoder on the same batches, for the same number of
# steps, with the transformer's optimiser settings; a tuned learning rate might
# help it, which exercise 1.4 invites you to try.

# %%
class GRUSeq2Seq(nn.Module):
    """Encoder–decoder GRU of Cho et al. (2014): the source is summarised in one vector c."""

    def __init__(self, vocab_size, d_embed, d_hidden):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_embed)
        self.encoder = nn.GRU(d_embed, d_hidden, batch_first=True)
        self.init_state = nn.Linear(d_hidden, d_hidden)
        self.decoder = nn.GRU(d_embed + d_hidden, d_hidden, batch_first=True)
        self.head = nn.Linear(d_hidden, vocab_size)

    def encode(self, src):
        states, _ = self.encoder(self.embed(src))  # (B, S, H): h_1 ... h_S
        last = (src != vocab.PAD).sum(1) - 1  # index of each source's last real token
        return states[torch.arange(len(src), device=src.device), last]  # c = h_S, (B, H)

    def decode(self, tgt_in, c, state=None):
        state = torch.tanh(self.init_state(c))[None] if state is None else state  # (1, B, H)
        inputs = torch.cat([self.embed(tgt_in), c[:, None].expand(-1, tgt_in.shape[1], -1)], dim=-1)
        out, state = self.decoder(inputs, state)  # (B, T, H)
        return self.head(out), state

    def forward(self, src, tgt_in):
        return self.decode(tgt_in, self.encode(src))[0]  # (B, T, V)

    @torch.no_grad()
    def generate(self, src, max_new_tokens):
        c, state = self.encode(src), None
        token = torch.full((len(src), 1), vocab.BOS, device=src.device)
        finished = torch.zeros(len(src), dtype=torch.bool, device=src.device)
        out = []
        for _ in range(max_new_tokens):
            logits, state = self.decode(token, c, state)  # one step, carrying the hidden state
            token = logits[:, -1].argmax(-1, keepdim=True).masked_fill(finished[:, None], vocab.PAD)
            out.append(token)
            finished |= token[:, 0] == vocab.EOS
            if finished.all():
                break
        return torch.cat(out, dim=1)


gru_cfg = {**dates_cfg, **cfg["gru"]}
genbook.seed_everything(1)
gru = GRUSeq2Seq(vocab.size, gru_cfg["d_embed"], gru_cfg["d_hidden"]).to(device)
gru, gru_info = genbook.load_or_train(gru, lambda m: train_seq2seq(m, gru_cfg, seed=2), chapter="01_attention",
                                      name="dates_gru", config=gru_cfg)
gru.eval()
gru_predictions = [vocab.decode(row) for row in gru.generate(src_held, max_new).tolist()]
gru_correct = torch.tensor([p == t for p, (_, t) in zip(gru_predictions, heldout_pairs)])
gru_exact_match = gru_correct.float().mean().item()

# %% [markdown]
# The comparison, on the same held-out dates. With one date per source (the fast
# profile) we group the sources by how the date is written, since length and
# format go together there; with several dates per source (the full profile) we
# group by the number of dates. Then we ask whether the GRU's accuracy follows
# the source length across the groups: the rank correlation (Spearman's ρ) of
# mean length and accuracy.

# %%
def writing_style(source, target):
    """The name of the dates.STYLES entry that wrote a one-date source."""
    day = datetime.date.fromisoformat(target)
    return next(name for name, write in dates.STYLES.items() if write(day) == source)


one_date = dates_cfg["n_dates"][1] == 1
groups = [writing_style(s, t) if one_date else f"{len(t.split())} date(s)" for s, t in heldout_pairs]
src_lengths = torch.tensor([len(s) for s, _ in heldout_pairs]).float()
rows = []  # (group, count, mean source length, transformer accuracy, GRU accuracy), by mean length
for group in sorted(set(groups)):
    sel = torch.tensor([g == group for g in groups])
    rows.append((group, int(sel.sum()), src_lengths[sel].mean().item(), correct[sel].float().mean().item(),
                 gru_correct[sel].float().mean().item()))
rows.sort(key=lambda r: r[2])


def spearman(a, b):
    """Rank correlation of two 1-D tensors (no ties expected)."""
    rank = lambda t: t.argsort().argsort().float()
    return torch.corrcoef(torch.stack([rank(a), rank(b)]))[0, 1].item()


mean_lengths, gru_accs = torch.tensor([r[2] for r in rows]), torch.tensor([r[4] for r in rows])
gru_length_rho = spearman(mean_lengths, gru_accs) if len(rows) > 2 else float("nan")

print(f"{'':<34}{'transformer':>12}{'GRU':>8}")
print(f"{'parameters':<34}{genbook.nn.count_parameters(transformer):>12,}{genbook.nn.count_parameters(gru):>8,}")
print(f"{'ms per training step':<34}{1e3 * transformer_info['seconds_per_step']:>12.1f}"
      f"{1e3 * gru_info['seconds_per_step']:>8.1f}")
print(f"{'held-out exact match':<34}{encdec_exact_match:>12.1%}{gru_exact_match:>8.1%}")
for group, n, length, acc_t, acc_g in rows:
    print(f"{f'  {group} ({length:.0f} chars, n={n})':<34}{acc_t:>12.1%}{acc_g:>8.1%}")
faster = "transformer" if transformer_info["seconds_per_step"] < gru_info["seconds_per_step"] else "GRU"
better = "transformer" if encdec_exact_match > gru_exact_match else "GRU"
print(f"\nafter the same {dates_cfg['steps']} steps the {better} is more accurate; "
      f"per step the {faster} was faster here")
critical_rho = 1.96 / math.sqrt(len(rows) - 1)  # |rho| beyond this: unlikely (5%) if accuracy ignored length
if len(rows) > 3:
    trend = ("rises with source length" if gru_length_rho > critical_rho
             else "falls with source length" if gru_length_rho < -critical_rho
             else "shows no trend with source length that chance could not explain")
    print(f"across the {len(rows)} groups the GRU's accuracy {trend} "
          f"(Spearman rho = {gru_length_rho:+.2f}; chance alone exceeds |rho| = {critical_rho:.2f} 5% of the time)")
else:
    print(f"{len(rows)} groups are too few to call a trend; Spearman rho = {gru_length_rho:+.2f}")
if one_date:
    numeric = torch.tensor([g in ("dotted", "slashed_iso_order") for g in groups])  # day and month as digits
    print(f"GRU on the all-numeric formats {gru_correct[numeric].float().mean():.1%}, on formats that name the month "
          f"{gru_correct[~numeric].float().mean():.1%}; transformer {correct[numeric].float().mean():.1%} and "
          f"{correct[~numeric].float().mean():.1%}")
worst, best = min(rows, key=lambda r: r[4]), max(rows, key=lambda r: r[4])
print(f"the GRU is worst on {worst[0]} ({worst[4]:.1%}) and best on {best[0]} ({best[4]:.1%}); some of its mistakes:")
mistakes = [(s, t, p) for (s, t), p, ok in zip(heldout_pairs, gru_predictions, gru_correct) if not ok]
for source, target, p in mistakes[:4]:
    print(f"  {source:<40} -> {p:<12} (expected {target})")

fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 3.6))
where = torch.arange(len(rows)).float()
ax_acc.bar(where - 0.2, [r[3] for r in rows], width=0.4, label="transformer")
ax_acc.bar(where + 0.2, [r[4] for r in rows], width=0.4, label="GRU encoder-decoder")
ax_acc.set_xticks(where.tolist(), [f"{r[0]}\n({r[2]:.0f} chars)" for r in rows], rotation=60, ha="right", fontsize=7)
ax_acc.set(ylabel="held-out exact match", ylim=(0, 1.02), title="accuracy by group, shortest sources first")
ax_acc.legend(fontsize=8)
for name, info in [("transformer", transformer_info), ("GRU", gru_info)]:
    steps_, losses = zip(*info["history"]["loss"])
    ax_loss.plot(steps_, losses, label=name)
ax_loss.set(xlabel="step", ylabel="cross-entropy (nats/char)", yscale="log", title="training loss")
ax_loss.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# Read the table with both costs in mind. **Time per step:** on a CPU with small
# batches the GRU's cheap steps can win, because there is little to parallelise;
# but its computation is a chain of $S + T$ dependent steps, while the
# transformer's is a handful of large matrix products over all positions at
# once, which is what a GPU is built for (and why the transformer displaced
# recurrent networks). **Learning per step:** the transformer finds each digit
# where it is in the source, while the GRU must squeeze the whole date into $c$
# and keep every piece intact until it is written. Whether that hurts most on
# *long* sources is a question the printed trend answers for this run; the
# groups it gets wrong say what else is hard for it. In the all-numeric formats
# (`dd.mm.yyyy`, `yyyy/m/d`) the month is digits, not a word: the GRU must carry
# short digit strings through a single summary vector, then reorder them
# (`dd.mm.yyyy`) or pad them with zeros (`yyyy/m/d`, where the day and month have
# one digit or two), while attention can look each digit up where it stands. The last printed line compares those formats with the others
# for both models. With several dates per source (`n_dates`, the full profile
# and exercise 1.6) the same table groups by the number of dates instead.
#
# The quality bar of this chapter: at least 95% exact match on held-out dates.

# %%
assert encdec_exact_match >= 0.95, encdec_exact_match

# %% [markdown]
# ## 7. Decoder-only: a GPT on Shakespeare
#
# Drop the encoder and the cross-attention and keep a stack of causal decoder
# blocks: that is **GPT** (Radford et al., 2018, 2019). It models the probability
# of a text as a product of next-token probabilities. Trained on windows of
# $T + 1$ characters, it predicts each next character from the ones before it,
#
# $$
# p_\theta(x_1, \dots, x_{T+1}) = p(x_1) \prod_{t=1}^{T} p_\theta(x_{t+1} \mid x_{\le t}), \qquad
# \mathcal{L}(\theta) = -\frac{1}{T} \sum_{t=1}^{T} \log p_\theta(x_{t+1} \mid x_{\le t}),
# $$
#
# and the causal mask lets one forward pass score all $T$ positions at once. A
# loss in nats per character is easy to compare with count models fitted on
# the same training text and scored on the same held-out characters: a
# **unigram** model (character frequencies), a **bigram** model
# $p(x_{t+1} \mid x_t)$ with add-$k$ smoothing (genbook.metrics.text), and a much
# stronger one, a **5-gram** that predicts from the previous four characters.
# Many 4-character histories of held-out text are rare in training, and some
# never occur there (the cell below counts them), so the 5-gram uses
# **interpolated Kneser–Ney smoothing** (Kneser & Ney, 1995; Chen & Goodman, 1999),
# `genbook.ngram`: it subtracts a small discount $\delta$ from every count and
# gives the freed probability to the estimate from one character less of
# history, recursively down to single characters,
#
# $$
# p_n(w \mid h) = \frac{\max(c(hw) - \delta_n, 0)}{c(h\,\cdot)}
#   + \frac{\delta_n\, N_{1+}(h\,\cdot)}{c(h\,\cdot)}\; p_{n-1}(w \mid h'),
# $$
#
# where $h'$ is $h$ without its oldest character, $N_{1+}(h\,\cdot)$ the number of
# different characters seen after $h$, and a history never seen backs off to
# $p_{n-1}$ entirely. (Kneser and Ney's refinement: the lower orders count in how
# many *different contexts* a string occurs, not how often.)

# %%
gpt_cfg = cfg["gpt"]
train_ids = torch.tensor(chars.encode(train_text))
n_windows = min(gpt_cfg["val_chars"], len(val_text) - 1) // gpt_cfg["block_size"]  # held-out windows
val_ids = torch.tensor(chars.encode(val_text))[: n_windows * gpt_cfg["block_size"] + 1]
unigram_val_nll = unigram_baseline(train_ids, val_ids, chars.vocab_size)
bigram_val_nll = bigram_baseline(train_ids, val_ids, chars.vocab_size)
fit_start = time.process_time()
ngram5 = KneserNey(train_ids, chars.vocab_size, order=5)
ngram5_fit_seconds = time.process_time() - fit_start
ngram5_val_nll = ngram5.nll(val_ids)  # the same held-out characters; it may look back across window edges
print(f"{ngram5.unseen_history_share(val_ids):.1%} of the held-out 4-character histories never occur in the "
      f"training text; the 5-gram's counts took {ngram5_fit_seconds:.1f} s of CPU time")
print(f"held-out characters: {len(val_ids) - 1:,}; uniform {math.log(chars.vocab_size):.3f}, "
      f"unigram {unigram_val_nll:.3f}, bigram {bigram_val_nll:.3f}, 5-gram {ngram5_val_nll:.3f} nats/char")


# %% [markdown]
# ### The GPT, written out
#
# Token embedding plus a learned position embedding, a stack of the decoder
# blocks of section 4 without cross-attention (pre-norm, with the GELU of GPT-2
# in the feed-forward network), a final LayerNorm, and an output layer that
# reuses the embedding table $W_E$ ("weight tying", Press & Wolf, 2017: the
# vector that reads a character in is also the one that scores it as the next
# character, which saves $V d$ parameters):

# %%
class TinyGPT(nn.Module):
    """Decoder-only transformer. idx: (B, T) ids, T <= block_size -> logits (B, T, V)."""

    def __init__(self, vocab_size, block_size, d_model, n_heads, n_layers, d_ff=None):
        super().__init__()
        self.block_size = block_size
        self.tokens = nn.Embedding(vocab_size, d_model)  # W_E, (V, C)
        self.positions = nn.Embedding(block_size, d_model)  # learned positions, (block_size, C)
        self.blocks = nn.ModuleList(Decoder(d_model, n_heads, d_ff or 4 * d_model, norm_first=True, cross=False,
                                            activation=nn.GELU) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, idx):
        T = idx.shape[1]
        h = self.tokens(idx) + self.positions(torch.arange(T, device=idx.device))  # (B, T, C)
        for block in self.blocks:
            h = block(h)  # causal self-attention, feed-forward, each with a residual connection
        return self.norm(h) @ self.tokens.weight.T  # tied output layer: (B, T, C) @ (C, V) -> (B, T, V)


# %% [markdown]
# **Counting its parameters.** With width $d$, feed-forward width $d_\text{ff}$,
# $L$ blocks, $V$ tokens and $T_\text{max}$ positions: the embeddings hold
# $V d + T_\text{max} d$ (the output layer is tied, so it adds nothing). Each
# block holds the four attention projections $W^Q, W^K, W^V, W^O$ with their biases,
# $4(d^2 + d)$; the feed-forward network, $d\,d_\text{ff} + d_\text{ff} + d_\text{ff}\,d + d$;
# and two LayerNorms, $2 \cdot 2d$. The final LayerNorm adds $2d$:
#
# $$
# N = (V + T_\text{max})\, d + L\,\big(4d^2 + 2 d\, d_\text{ff} + 9d + d_\text{ff}\big) + 2d .
# $$
#
# genbook's `GPT` is the same model plus what later chapters need (a key–value
# cache for fast generation, input checks). We train it and then load its
# weights into `TinyGPT` to check that the two compute the same function. The
# formula must agree with PyTorch's count of both.

# %%
def gpt_parameter_count(vocab_size, block_size, d_model, n_layers, d_ff):
    """N of the formula above."""
    d = d_model
    return (vocab_size + block_size) * d + n_layers * (4 * d * d + 2 * d * d_ff + 9 * d + d_ff) + 2 * d


genbook.seed_everything(1)
gpt = GPT(chars.vocab_size, gpt_cfg["block_size"], gpt_cfg["d_model"], gpt_cfg["n_heads"],
          gpt_cfg["n_layers"]).to(device)
gpt_formula_count = gpt_parameter_count(chars.vocab_size, gpt_cfg["block_size"], gpt_cfg["d_model"],
                                        gpt_cfg["n_layers"], 4 * gpt_cfg["d_model"])
page_gpt = TinyGPT(chars.vocab_size, gpt_cfg["block_size"], gpt_cfg["d_model"], gpt_cfg["n_heads"],
                   gpt_cfg["n_layers"]).to(device)
print(f"N by the formula {gpt_formula_count:,}; count_parameters: genbook's GPT "
      f"{genbook.nn.count_parameters(gpt):,}, TinyGPT {genbook.nn.count_parameters(page_gpt):,}")
assert gpt_formula_count == genbook.nn.count_parameters(gpt) == genbook.nn.count_parameters(page_gpt)
init_tables = (gpt.embed.tokens.weight.detach().cpu().clone(), gpt.embed.positions.weight.detach().cpu().clone())


# %% [markdown]
# Training reads random windows of `block_size` characters; the targets are the
# same windows shifted by one. No model of this chapter uses dropout
# (`dropout=0.0`). Dropout fights overfitting, which needs many passes over the
# same data; section 9 prints how many passes each model made, and in the fast
# profile that is about one or fewer, so dropout would only slow learning. The
# held-out losses and accuracies, on unseen works and unseen dates, are the
# check; when you train for many passes (the full profile), compare the training
# and held-out losses to see whether dropout would help.

# %%
def random_windows(ids, batch_size, block_size, generator):
    """Endless (x, y) batches of (B, T) windows, y = x shifted left by one character."""
    offsets = torch.arange(block_size)
    while True:
        start = torch.randint(len(ids) - block_size - 1, (batch_size, 1), generator=generator)
        yield ids[start + offsets].to(device), ids[start + offsets + 1].to(device)


def train_gpt(model):
    generator = genbook.seed_everything(3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=gpt_cfg["lr"], betas=(0.9, 0.99), weight_decay=0.0)

    def step(x, y):
        logits = model(x)  # (B, T, V)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))  # -1/T sum log p(x_t+1 | x_<=t)

    start = time.perf_counter()
    data = random_windows(train_ids, gpt_cfg["batch_size"], gpt_cfg["block_size"], generator)
    history = genbook.fit(step, data, gpt_cfg["steps"], model=model, optimizer=optimizer, grad_clip=1.0,
                          log_every=50, desc="GPT",
                          lr_schedule=genbook.warmup_cosine(gpt_cfg["lr"], gpt_cfg["steps"], gpt_cfg["warmup"]))
    return {"history": history, "seconds_per_step": (time.perf_counter() - start) / gpt_cfg["steps"],
            "training_tokens": gpt_cfg["steps"] * gpt_cfg["batch_size"] * gpt_cfg["block_size"]}


gpt, gpt_info = genbook.load_or_train(gpt, train_gpt, chapter="01_attention", name="shakespeare_gpt",
                                      config={**gpt_cfg, "vocab": chars.vocab_size})
gpt.eval()
state = {name.removeprefix("embed."): value for name, value in gpt.state_dict().items() if name != "head.weight"}
page_gpt.load_state_dict(state)  # the same names, without the "embed." prefix and the tied head
with torch.no_grad():
    probe_ids = val_ids[: 4 * gpt_cfg["block_size"]].view(4, -1).to(device)  # four held-out windows
    tiny_gpt_error = (page_gpt(probe_ids) - gpt(probe_ids)).abs().max().item()
print(f"genbook's trained weights in TinyGPT: max |logits difference| = {tiny_gpt_error:.1e}")
assert tiny_gpt_error < 1e-4


@torch.no_grad()
def heldout_nll_by_position(model, ids, block_size, batch_size=256):
    """-log p(x_t+1 | x_<=t) over consecutive held-out windows, averaged per position in the window: (T,)."""
    n = (len(ids) - 1) // block_size
    x = ids[: n * block_size].view(n, block_size)
    y = ids[1: n * block_size + 1].view(n, block_size)
    total = torch.zeros(block_size, dtype=torch.float64)
    for i in range(0, n, batch_size):
        logits = model(x[i:i + batch_size].to(device))  # (b, T, V)
        nll = F.cross_entropy(logits.transpose(1, 2), y[i:i + batch_size].to(device), reduction="none")  # (b, T)
        total += nll.sum(0).double().cpu()
    return total / n


nll_by_position = heldout_nll_by_position(gpt, val_ids, gpt_cfg["block_size"])
gpt_val_nll = nll_by_position.mean().item()
print(f"GPT: {genbook.nn.count_parameters(gpt):,} parameters, {1e3 * gpt_info['seconds_per_step']:.0f} ms per step")
print(f"held-out loss: GPT {gpt_val_nll:.3f} vs bigram {bigram_val_nll:.3f} nats/char "
      f"({bigram_val_nll - gpt_val_nll:.2f} nats better), unigram {unigram_val_nll:.3f}")
gap_5gram = ngram5_val_nll - gpt_val_nll
print(f"against the 5-gram ({ngram5_val_nll:.3f}) the GPT is "
      + (f"{gap_5gram:.2f} nats/char better" if gap_5gram > 0 else f"{-gap_5gram:.2f} nats/char WORSE"))
assert gpt_val_nll <= bigram_val_nll - 0.3, (gpt_val_nll, bigram_val_nll)

# %% [markdown]
# The GPT must beat the bigram by a clear margin (the assert above). Whether it
# also beats the 5-gram depends on how long it trains. The count model reads all
# of its training text, in the CPU time printed with the baselines; a GPT
# trained for a few hundred steps sees only a fraction of it (section 9 prints
# how much), and a short, small run can leave a well-smoothed count model the
# better language model. The line above says which one won in this run; when
# the 5-gram wins, that is the lesson: a neural model must be given enough data
# and compute before it beats counting. The full profile trains a bigger GPT
# for longer.
#
# Where does the GPT's advantage over the bigram come from? The loss at each
# position of the window says: at the first position it has seen one character,
# no more than the bigram; at later positions it can use everything before.

# %%
quarter = max(1, gpt_cfg["block_size"] // 4)
late_nll = nll_by_position[-quarter:].mean().item()
print(f"GPT loss at window position 1: {nll_by_position[0]:.3f}; positions 2-5: {nll_by_position[1:5].mean():.3f}; "
      f"the last {quarter} positions: {late_nll:.3f} nats/char")
first_vs_bigram = "better" if nll_by_position[0] < bigram_val_nll else "worse"
print(f"at position 1, with the bigram's information, the GPT is {first_vs_bigram} than the bigram "
      f"({nll_by_position[0]:.3f} vs {bigram_val_nll:.3f})")
below_5gram = (nll_by_position < ngram5_val_nll).nonzero()
print("the GPT's loss falls below the 5-gram's from window position "
      f"{below_5gram[0].item() + 1} on" if len(below_5gram) else "at no position of the window is the GPT's loss "
      "below the 5-gram's")
assert late_nll < nll_by_position[0] - 0.3, nll_by_position  # context beyond one character is used

fig, (ax_curve, ax_pos) = plt.subplots(1, 2, figsize=(11, 3.4))
genbook.plot_losses({"GPT training loss": gpt_info["history"]["loss"]}, ax=ax_curve, title="GPT on Shakespeare")
ax_pos.plot(range(1, len(nll_by_position) + 1), nll_by_position, "k.-", ms=3, label="GPT (held-out)")
for ax in (ax_curve, ax_pos):
    ax.axhline(unigram_val_nll, color="C2", ls=":", label="unigram (held-out)")
    ax.axhline(bigram_val_nll, color="C1", ls="--", label="bigram (held-out)")
    ax.axhline(ngram5_val_nll, color="C3", ls="-.", label="5-gram (held-out)")
    ax.set_ylabel("nats per character")
ax_curve.plot([gpt_cfg["steps"]], [gpt_val_nll], "k*", ms=10, label="GPT (held-out)")
ax_pos.set(xlabel="position in the window (characters of context)", title="held-out loss by position")
ax_curve.legend(fontsize=7)
ax_pos.legend(fontsize=7)
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Sampling: temperature and top-k
#
# To generate, feed a prompt, turn the logits $z$ of the last position into a
# distribution, draw a character, append it, repeat. Two knobs trade diversity
# for safety. The **temperature** $\tau$ rescales the logits,
# $p_i \propto \exp(z_i / \tau)$: $\tau < 1$ sharpens the distribution, $\tau \to 0$
# is greedy decoding. **Top-k** sampling keeps only the $k$ most likely tokens
# (Fan et al., 2018), cutting off the long tail of unlikely ones where most
# nonsense comes from:
#
# $$
# p_i = \frac{\exp(z_i/\tau)\,[i \in \text{top}_k(z)]}{\sum_j \exp(z_j/\tau)\,[j \in \text{top}_k(z)]} .
# $$

# %%
@torch.no_grad()
def sample(model, prompt_ids, n_new, temperature=1.0, top_k=None, generator=None):
    idx = prompt_ids  # (B, T)
    for _ in range(n_new):
        logits = model(idx[:, -model.block_size:])[:, -1] / temperature  # (B, V): z / tau
        if top_k is not None:
            kth_largest = torch.topk(logits, top_k).values[:, -1:]  # (B, 1)
            logits = logits.masked_fill(logits < kth_largest, float("-inf"))  # keep the top k
        next_id = torch.multinomial(logits.softmax(-1), 1, generator=generator)  # (B, 1)
        idx = torch.cat([idx, next_id], dim=1)
    return idx


# %% [markdown]
# To check the sampler against the formula, we give it a stand-in "model" whose
# logits are fixed, draw one character many times, and compare the frequencies
# with $p_i$ above: tokens outside the top $k$ must never appear, and each
# frequency must lie within a few standard errors $\sqrt{p_i(1 - p_i)/n}$ of $p_i$.

# %%
class FixedLogits(nn.Module):
    """A stand-in language model that returns the same logits z (V,) at every position."""

    block_size = 8

    def __init__(self, z):
        super().__init__()
        self.z = z

    def forward(self, idx):
        return self.z.expand(idx.shape[0], idx.shape[1], -1)  # (B, T, V)


z = 2 * torch.randn(chars.vocab_size, generator=gen)
n_draws, tau, k = 200_000, 0.7, 10
draws = sample(FixedLogits(z), torch.zeros(n_draws, 1, dtype=torch.long), 1, tau, k,
               generator=torch.Generator().manual_seed(0))[:, -1]
freq = torch.bincount(draws, minlength=chars.vocab_size).double() / n_draws
in_top_k = torch.zeros(chars.vocab_size, dtype=torch.bool)
in_top_k[z.topk(k).indices] = True
p = torch.where(in_top_k, z.double() / tau, -math.inf).softmax(-1)  # the formula
z_scores = (freq - p).abs() / (p * (1 - p) / n_draws).sqrt().clamp(min=1e-12)
print(f"{n_draws:,} draws at tau={tau}, k={k}: {int(freq[~in_top_k].gt(0).sum())} draws outside the top k; "
      f"largest deviation {z_scores[in_top_k].max():.1f} standard errors")
assert freq[~in_top_k].sum() == 0 and z_scores[in_top_k].max() < 5

# %% [markdown]
# genbook's `GPT.generate` implements the same loop; with the same generator it
# must draw the same characters (a consistency check). The prompt follows this
# corpus's format: a speaker's name on a line of its own, ending in a full stop.

# %%
prompt_text = "\nFALSTAFF.\n"
prompt = torch.tensor([chars.encode(prompt_text)], device=device)
same = [f(gpt, prompt, 40, 0.8, 10, generator=torch.Generator(device).manual_seed(0))
        for f in (sample, lambda m, *a, **kw: m.generate(*a, **kw))]
assert torch.equal(*same)
for temperature, top_k in [(1.0, None), (0.8, 10), (0.5, 5)]:
    out = sample(gpt, prompt, 160, temperature, top_k, generator=torch.Generator(device).manual_seed(1))
    print(f"--- temperature {temperature}, top-k {top_k} ---\n{chars.decode(out[0].tolist())}\n")

# %% [markdown]
# What have the models learned about the *form* of the text? Two measurements,
# for the GPT and for the 5-gram, each sampled at temperature 1:
#
# - **speaker lines.** In this corpus a speech starts, after an empty line, with
#   the speaker's name in capitals on a line of its own, ending in a full stop.
#   We take held-out places where an empty line begins, let each model write the
#   next line, and count how often it is such a name line; the held-out text
#   itself gives the rate to match.
# - **spelling.** The share of the words in longer samples that occur anywhere in
#   the training text, against the same share for held-out text (which has a few
#   names and rare words of its own).

# %%
speaker_line = re.compile(r"[A-Z][A-Z' ]*[A-Z]\.")  # e.g. "FALSTAFF." or "MISTRESS QUICKLY."
context = 32
starts = [m.end() for m in re.finditer(r"\n\n", val_text[: len(val_ids) - 1])]
starts = [i for i in starts if i >= context and val_text.find("\n", i) > i][:200]  # a non-empty line follows
real_lines = [val_text[i:val_text.find("\n", i)] for i in starts]
prompts = torch.stack([torch.tensor(chars.encode(val_text[i - context:i])) for i in starts])  # (n, context)
n_line = min(24, gpt_cfg["block_size"] - context)  # characters written after each prompt
line_gen = torch.Generator(device).manual_seed(4)
written = {"GPT": gpt.generate(prompts.to(device), n_line, generator=line_gen, kv_cache=True)[:, context:].cpu(),
           "5-gram": ngram5.sample(prompts, n_line, generator=torch.Generator().manual_seed(4))[:, context:]}
first_line = lambda ids: chars.decode(ids.tolist()).split("\n")[0]
speaker_share = {"held-out text": sum(bool(speaker_line.fullmatch(s)) for s in real_lines) / len(real_lines)}
for name, ids in written.items():
    speaker_share[name] = sum(bool(speaker_line.fullmatch(first_line(row))) for row in ids) / len(ids)

train_words = set(re.findall(r"[a-z']+", train_text.lower()))
n_long, long_len = 8, 2 * gpt_cfg["block_size"]
long_prompts = prompts[:n_long, -8:]
long_samples = {"GPT": sample(gpt, long_prompts.to(device), long_len, generator=torch.Generator(device).manual_seed(5)),
                "5-gram": ngram5.sample(long_prompts, long_len, generator=torch.Generator().manual_seed(5))}


def known_word_share(text):
    words = re.findall(r"[a-z']+", text.lower())[1:-1]  # the first and last words may be cut
    return sum(w in train_words for w in words) / max(1, len(words))


spelling = {"held-out text": known_word_share(val_text[:20_000])}
for name, ids in long_samples.items():
    spelling[name] = known_word_share(" ".join(chars.decode(row[8:].tolist()) for row in ids))
print(f"{'':<16}{'name line after an empty line':>32}{'words found in training text':>31}")
for name in speaker_share:
    print(f"{name:<16}{speaker_share[name]:>32.0%}{spelling[name]:>31.0%}")
print(f"({len(starts)} places, {n_line} characters written at each; {n_long} samples of {long_len} characters)")
print("GPT's first lines:", [first_line(row) for row in written["GPT"][:6]])

# %% [markdown]
# The table answers what the samples above suggest, with numbers: how often the
# models start a speech the way this corpus does, and how many of their words
# are real ones, each next to the held-out text's own rate. Neither model has any
# idea what it is saying; lower temperatures and smaller $k$ give safer, more
# repetitive text.
#
# ### What the heads look at
#
# Each head of each layer has its own attention pattern. Here they are on one
# line of Shakespeare (one row per character, lighter = more weight; the upper
# triangle is empty because of the causal mask):

# %%
sentence = "To be, or not to be, that is the question:"
ids = torch.tensor([chars.encode(sentence)], device=device)
with record_attention(gpt) as maps:
    gpt(ids)
shown = [0, gpt_cfg["n_layers"] - 1]  # the first and the last layer
fig, axes = plt.subplots(len(shown), gpt_cfg["n_heads"], figsize=(3 * gpt_cfg["n_heads"], 3.2 * len(shown)),
                         squeeze=False)
for row, layer in enumerate(shown):
    for head in range(gpt_cfg["n_heads"]):
        ax = axes[row, head]
        ax.imshow(maps[f"blocks.{layer}.self_attn"][0, head].cpu(), cmap="magma")
        ax.set_title(f"layer {layer + 1}, head {head + 1}", fontsize=9)
        ax.set_xticks(range(len(sentence)), list(sentence), fontsize=5)
        ax.set_yticks(range(len(sentence)), list(sentence), fontsize=5)
plt.tight_layout()
plt.show()

# %% [markdown]
# One line is an anecdote. Over many held-out windows we measure, for every
# head, its **mean attention distance** $\sum_j a_{ij}\,(i - j)$ averaged over
# queries $i$, and the weight it puts on the character itself ($j = i$) and on the
# two before it. A head that spread its weight evenly over everything before it
# would have a mean distance of about a quarter of the window.

# %%
with torch.no_grad(), record_attention(gpt) as maps:
    gpt(val_ids[: 64 * gpt_cfg["block_size"]].view(64, -1).to(device))  # 64 held-out windows
T_win = gpt_cfg["block_size"]
distance = (torch.arange(T_win)[:, None] - torch.arange(T_win)[None, :]).clamp(min=0).float()  # (T, T): i - j
uniform_distance = (torch.arange(T_win).float() / 2).mean().item()  # a head that spreads evenly over j <= i
head_stats = []  # (layer, head, mean distance, weight on itself, weight on the two before)
for layer in range(gpt_cfg["n_layers"]):
    weights = maps[f"blocks.{layer}.self_attn"].cpu()  # (64, H, T, T)
    for head in range(gpt_cfg["n_heads"]):
        a = weights[:, head]  # (64, T, T)
        head_stats.append((layer + 1, head + 1, (a * distance).sum(-1).mean().item(),
                           a.diagonal(dim1=-2, dim2=-1).mean().item(),
                           (a.diagonal(-1, -2, -1).sum(-1) + a.diagonal(-2, -2, -1).sum(-1)).mean().item() / T_win))
print(f"{'layer':>5}{'head':>5}{'mean distance':>15}{'on itself':>11}{'on the 2 before':>17}")
for layer, head, dist, on_self, on_prev in head_stats:
    print(f"{layer:>5}{head:>5}{dist:>15.1f}{on_self:>11.0%}{on_prev:>17.0%}")
most_local, most_spread = min(head_stats, key=lambda r: r[2]), max(head_stats, key=lambda r: r[2])
print(f"spread evenly, a head would have mean distance {uniform_distance:.1f}. The most local head is layer "
      f"{most_local[0]} head {most_local[1]} ({most_local[2]:.1f}), the most spread layer {most_spread[0]} head "
      f"{most_spread[1]} ({most_spread[2]:.1f}).")
layer_mean = [sum(r[2] for r in head_stats if r[0] == layer) / gpt_cfg["n_heads"]
              for layer in range(1, gpt_cfg["n_layers"] + 1)]
print("mean distance by layer:", ", ".join(f"layer {i + 1}: {d:.1f}" for i, d in enumerate(layer_mean)))

# %% [markdown]
# Heads that keep most of their weight on the last few characters build an
# n-gram-like summary out of attention; heads with a large mean distance read
# further back. Nobody designed these roles: they are what minimising the
# next-character loss found. The table says which heads of this run are which.
#
# The learned character embeddings, too: do characters that play a similar role
# end up with similar rows of $W_E$? We print a few nearest neighbours (by cosine
# similarity), then measure: for every character, whether its nearest neighbour
# belongs to the same class (lower-case vowel, lower-case consonant, capital,
# digit, punctuation or space), for the trained table, for the same table at
# initialisation, and the rate a random neighbour would reach.

# %%
def char_class(c):
    if c in "aeiou":
        return "vowel"
    if c.isalpha():
        return "lower" if c.islower() else "capital"
    return "digit" if c.isdigit() else "space" if c.isspace() else "punctuation"


table = F.normalize(gpt.embed.tokens.weight.detach().cpu(), dim=-1)
for ch in ["a", "e", "T", ",", "3"]:
    sims = table @ table[chars.token_to_id(ch)]
    nearest = [chars.id_to_token(i) for i in sims.argsort(descending=True)[1:6].tolist()]
    print(f"{ch!r}: nearest {nearest}")

counts = torch.bincount(train_ids, minlength=chars.vocab_size)
frequent = [i for i in range(chars.vocab_size) if counts[i] >= 100]  # rows that training has really moved
classes = [char_class(chars.id_to_token(i)) for i in frequent]


def same_class_share(weights):
    rows = F.normalize(weights[frequent], dim=-1)
    sims = (rows @ rows.T).fill_diagonal_(-2)
    nearest = sims.argmax(-1).tolist()
    return sum(classes[i] == classes[j] for i, j in enumerate(nearest)) / len(frequent)


random_neighbour = sum((classes.count(c) - 1) / (len(classes) - 1) for c in classes) / len(classes)
embedding_class_share = same_class_share(gpt.embed.tokens.weight.detach().cpu())
embedding_class_share_init = same_class_share(init_tables[0])
print(f"nearest neighbour in the same class, over {len(frequent)} characters: trained {embedding_class_share:.0%}, "
      f"at initialisation {embedding_class_share_init:.0%}, a random neighbour {random_neighbour:.0%}")

# %% [markdown]
# The GPT's positions are a learned table (section 3), initialised at random. Does
# the similarity of two position vectors come to depend on their distance, as it
# does for the sinusoids by construction? We draw the cosine similarities and
# measure how much of their variation the distance $|i - j|$ explains: $R^2$ of the
# prediction "the mean similarity of all pairs at that distance".

# %%
def distance_r2(table_):
    """R^2 of cos-sim(i, j) explained by |i - j| (the mean of each diagonal), over pairs i != j."""
    sims = table_ @ table_.T
    n = len(sims)
    offset = (torch.arange(n)[:, None] - torch.arange(n)[None, :]).abs()
    off_diagonal = offset > 0
    diag_mean = torch.zeros(n).index_add_(0, offset[off_diagonal], sims[off_diagonal])
    diag_mean /= torch.bincount(offset[off_diagonal], minlength=n).clamp(min=1)
    residual = sims[off_diagonal] - diag_mean[offset[off_diagonal]]
    return 1 - residual.pow(2).sum().item() / (sims[off_diagonal] - sims[off_diagonal].mean()).pow(2).sum().item()


learned = F.normalize(gpt.embed.positions.weight.detach().cpu(), dim=-1)  # (block_size, C)
fixed = F.normalize(sinusoidal(gpt_cfg["block_size"], gpt_cfg["d_model"]), dim=-1)
position_r2, position_r2_init = distance_r2(learned), distance_r2(F.normalize(init_tables[1], dim=-1))
print(f"R^2 of position similarity explained by distance: learned (trained) {position_r2:.2f}, "
      f"learned (at initialisation) {position_r2_init:.2f}, sinusoidal {distance_r2(fixed):.2f}")
fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
for ax, similarity_table, title in [(axes[0], learned, "learned positions (GPT)"),
                                    (axes[1], fixed, "sinusoidal positions")]:
    ax.imshow(similarity_table @ similarity_table.T, cmap="viridis", vmin=-1, vmax=1)
    ax.set(title=title, xlabel="position", ylabel="position")
plt.tight_layout()
plt.show()

# %% [markdown]
# A high $R^2$ means the picture shows stripes parallel to the diagonal: training
# has made the learned positions behave like a code for distance, without being
# told to. At initialisation the table is random and the distance explains
# almost nothing.
#
# ## 8. Encoder-only, decoder-only, encoder–decoder
#
# The same blocks make three families of models, which differ in their masks
# and in what they are trained to predict:
#
# | family | attention | trained to | good for | examples |
# |---|---|---|---|---|
# | encoder-only | bidirectional self-attention | fill in masked tokens (BERT); predict a label (ViT, trained supervised; BEiT and MAE fill in masked image patches) | understanding a whole input: classification, retrieval, tagging, features for other models | BERT (Devlin et al., 2019), ViT (Dosovitskiy et al., 2021) |
# | decoder-only | causal self-attention | predict the next token | generating open-ended sequences; any task phrased as a prompt | GPT (Radford et al., 2018, 2019), DALL·E |
# | encoder–decoder | bidirectional encoder; causal decoder with cross-attention | map an input sequence to an output sequence | translation, summarisation, any input → output task | the original transformer, T5 (Raffel et al., 2020), BART (Lewis et al., 2020) |
#
# An encoder sees the whole input, so each of its outputs can use context on
# both sides, but it cannot generate left to right. A decoder can, because it
# never looks ahead; it pays for that by reading its input one-sidedly too. The
# encoder–decoder gets both at the cost of two stacks; T5 frames every text task
# as "text in, text out", and BART trains one as a denoising autoencoder of
# corrupted text. Chapter 02 builds BERT and ViT from this chapter's encoder block.
#
# ## 9. Parameters, training tokens and compute
#
# The three models of this chapter, counted as promised in section 1. The
# estimate $6ND$ assumes that every weight meets every token. That holds for a
# GPT, but not for an encoder–decoder: the encoder's weights only process the
# source tokens and the decoder's weights only the target tokens, so the honest
# count is $6\,(N_\text{enc} D_\text{src} + N_\text{dec} D_\text{tgt})$, with the
# embedding tables left out of $N$ (a lookup is not a matrix product) but the
# output layer counted (the GPT's tied output layer is a matrix product even
# though its weights are the embedding's). The GRU's `init_state` layer runs once
# per example. Next to the honest count we print the naive
# $6 \cdot N_\text{all} \cdot (D_\text{src} + D_\text{tgt})$, and how many passes
# over its training data each model made.

# %%
def n_params(*modules):
    return sum(genbook.nn.count_parameters(m) for m in modules)


n_examples = dates_cfg["steps"] * dates_cfg["batch_size"]  # date pairs read in training (same for the GRU)
src_per_example = (src_train != vocab.PAD).sum().item() / len(src_train)  # mean source characters
tgt_per_example = ((tgt_train != vocab.PAD).sum().item() - len(tgt_train)) / len(tgt_train)  # decoder inputs
d_src, d_tgt = n_examples * src_per_example, n_examples * tgt_per_example
gpt_tokens = gpt_cfg["steps"] * gpt_cfg["batch_size"] * gpt_cfg["block_size"]
gpt_head = chars.vocab_size * gpt_cfg["d_model"]  # the tied output layer: V x d multiply-adds per token
compute = {  # name: (model, N that meets source tokens, N that meets target tokens, N once per example, D, passes)
    "date transformer": (transformer, n_params(transformer.encoder, transformer.encoder_norm),
                         n_params(transformer.decoder, transformer.decoder_norm, transformer.head), 0,
                         d_src + d_tgt, n_examples / len(train_pairs)),
    "date GRU": (gru, n_params(gru.encoder), n_params(gru.decoder, gru.head), n_params(gru.init_state),
                 d_src + d_tgt, n_examples / len(train_pairs)),
    "Shakespeare GPT": (gpt, 0, n_params(gpt.blocks, gpt.norm) + gpt_head, 0, gpt_tokens,
                        gpt_tokens / len(train_ids)),
}
print(f"{'model':<17}{'params N':>10}{'tokens D':>12}{'D/N':>7}{'passes':>8}{'6ND naive':>12}{'honest':>11}  (GFLOP)")
for name, (model, n_src, n_tgt, n_once, tokens, passes) in compute.items():
    n_all = genbook.nn.count_parameters(model)
    if name == "Shakespeare GPT":  # every token meets every non-embedding weight
        honest = 6 * n_tgt * tokens
    else:
        honest = 6 * (n_src * d_src + n_tgt * d_tgt + n_once * n_examples)
    print(f"{name:<17}{n_all:>10,}{int(tokens):>12,}{tokens / n_all:>7.1f}{passes:>8.2f}"
          f"{6 * n_all * tokens / 1e9:>12.1f}{honest / 1e9:>11.1f}")
attention_flops = 2 * gpt_cfg["n_layers"] * gpt_cfg["block_size"] * gpt_cfg["d_model"]  # per token, forward
attention_share = attention_flops / (2 * compute["Shakespeare GPT"][2])
print(f"the GPT's attention scores (Kaplan et al.'s 2 n_layer n_ctx d per token) would add {attention_share:.0%} "
      "to its forward pass")

# %% [markdown]
# ## Results
#
# The numbers of this run, recorded with the baselines they were compared with:

# %%
record = genbook.report(
    "01_attention",
    metrics={
        "attention_max_abs_error": attention_max_abs_error,
        "encdec_exact_match": encdec_exact_match,
        "gpt_val_nll": gpt_val_nll,
        "year_cross_attention_share": year_attention_share,
        "embedding_same_class_share": embedding_class_share,
        "position_distance_r2": position_r2,
    },
    baselines={
        "gru_exact_match": gru_exact_match,
        "bigram_val_nll": bigram_val_nll,
        "unigram_val_nll": unigram_val_nll,
        "ngram5_val_nll": ngram5_val_nll,
        "year_share_if_uniform": uniform_share.mean().item(),
        "embedding_same_class_share_at_init": embedding_class_share_init,
        "position_distance_r2_at_init": position_r2_init,
    },
    timings={
        "encdec_ms_per_step": 1e3 * transformer_info["seconds_per_step"],
        "gpt_ms_per_step": 1e3 * gpt_info["seconds_per_step"],
        "gru_ms_per_step": 1e3 * gru_info["seconds_per_step"],
    },
    n_heldout_dates=len(heldout_pairs),
    n_heldout_chars=len(val_ids) - 1,
    retrained=not (transformer_info["cached"] and gru_info["cached"] and gpt_info["cached"]),
)
print(record)  # one summary line; the full record is in _build/results/

# %% [markdown]
# ## Exercises
#
# **Exercise 1.1: the causal mask with a cache.** When a decoder generates, the
# keys and values of earlier positions do not change, so they can be cached and
# only the newest $T_q$ queries computed against all $T_k \ge T_q$ keys. Write
# `causal_mask(t_q, t_k)`, a boolean $(T_q, T_k)$ tensor that is True where a
# query may attend to a key, when the queries are the **last** $T_q$ of the
# $T_k$ positions. (Careful: `scaled_dot_product_attention(..., is_causal=True)`
# aligns its mask to the top-left corner, which is wrong here.)

# %% tags=["exercise"]
def causal_mask(t_q, t_k):
    """(t_q, t_k) bool: query i (at position i + t_k - t_q) may attend to keys j <= i + t_k - t_q."""
    # BEGIN SOLUTION
    i = torch.arange(t_q)[:, None] + (t_k - t_q)  # the position of each query
    j = torch.arange(t_k)[None, :]
    return j <= i
    # END SOLUTION


# %%
from genbook.exercises.attention import check_causal_mask, check_shift_matrix, check_top_p_filter

check_causal_mask(causal_mask)
print(causal_mask(2, 5).int())

# %% [markdown]
# **Exercise 1.2: nucleus sampling.** Top-k keeps a fixed number of tokens,
# too many when the model is sure and too few when it is not. **Top-p** (nucleus)
# sampling (Holtzman et al., 2020) keeps the smallest set of most likely tokens
# whose probabilities sum to at least $p$. Write `top_p_filter(logits, p)` that
# returns the logits with every token outside the nucleus set to $-\infty$.
# Hint: sort, take the cumulative sum of the softmax, and remember that the
# token which pushes the sum past $p$ belongs to the nucleus.

# %% tags=["exercise"]
def top_p_filter(logits, p):
    """logits: (B, V) -> (B, V), tokens outside the top-p nucleus set to -inf."""
    # BEGIN SOLUTION
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    before = probs.cumsum(-1) - probs  # probability mass of the more likely tokens
    remove_sorted = before >= p  # the nucleus is already complete without this token
    remove = remove_sorted.scatter(-1, order, remove_sorted)  # back to vocabulary order
    return logits.masked_fill(remove, float("-inf"))
    # END SOLUTION


# %%
check_top_p_filter(top_p_filter)
out, generator = prompt, torch.Generator(device).manual_seed(2)
with torch.no_grad():
    for _ in range(120):
        logits = gpt(out[:, -gpt.block_size:])[:, -1]
        next_id = torch.multinomial(top_p_filter(logits, 0.9).softmax(-1), 1, generator=generator)
        out = torch.cat([out, next_id], dim=1)
print(chars.decode(out[0].tolist()))

# %% [markdown]
# **Exercise 1.3: relative positions are linear.** Show that the sinusoidal
# encoding of position $pos + k$ is a linear function of the encoding of $pos$:
# write `shift_matrix(k, d_model)`, a $(d_\text{model}, d_\text{model})$ matrix $M_k$
# with $PE_{pos+k} = PE_{pos}\, M_k$ for every $pos$ (row vectors). Hint: use
# $\sin(a + b) = \sin a \cos b + \cos a \sin b$ and $\cos(a+b) = \cos a \cos b - \sin a \sin b$
# on each pair of dimensions $(2i, 2i+1)$.

# %% tags=["exercise"]
def shift_matrix(k, d_model):
    """(d_model, d_model) M with PE[pos + k] = PE[pos] @ M."""
    # BEGIN SOLUTION
    m = torch.zeros(d_model, d_model)
    for i in range(d_model // 2):
        angle = torch.tensor(k / 10000 ** (2 * i / d_model))
        c, s = torch.cos(angle), torch.sin(angle)
        m[2 * i:2 * i + 2, 2 * i:2 * i + 2] = torch.stack([torch.stack([c, -s]), torch.stack([s, c])])
    return m
    # END SOLUTION


# %%
check_shift_matrix(shift_matrix)
print("max |PE[pos+3] - PE[pos] M_3| =", (pe[:-3] @ shift_matrix(3, 64) - pe[3:]).abs().max().item())

# %% [markdown]
# **Exercise 1.4 (no check): attention for the GRU.** Give the GRU decoder
# Bahdanau et al.'s (2015) additive attention over all encoder states $h_1 \dots h_S$
# instead of the single summary $c$, train it with `train_seq2seq`, and add it to
# the accuracy table of section 6. How much of the gap to the transformer
# closes, and what happens to the time per step? Give both GRUs a small
# learning-rate sweep, chosen on held-out *training* dates, so that the
# comparison is fair to them.
#
# **Exercise 1.5 (no check): post-norm.** Train the date transformer with
# `norm_first=False` (the original post-norm) and with the warm-up removed
# (`warmup=1`), then with both. Does any combination fail to learn at this size,
# or learn more slowly? Compare with Xiong et al. (2020), who explain why
# post-norm needs the warm-up.
#
# **Exercise 1.6 (no check): longer dates.** Set `n_dates=[1, 3]` in the fast
# profile (several dates per source, so sources up to three times longer) and
# run sections 5 and 6 again (the table then groups by the number of dates).
# Which model suffers more, and how many more steps does the transformer need to
# pass the 95% bar?
#
# ## References
#
# - A. Vaswani, N. Shazeer, N. Parmar, J. Uszkoreit, L. Jones, A. N. Gomez, Ł. Kaiser, I. Polosukhin,
#   "Attention Is All You Need", NeurIPS 2017, arXiv:1706.03762.
# - D. Bahdanau, K. Cho, Y. Bengio, "Neural Machine Translation by Jointly Learning to Align and
#   Translate", ICLR 2015, arXiv:1409.0473.
# - K. Cho, B. van Merriënboer, C. Gulcehre, D. Bahdanau, F. Bougares, H. Schwenk, Y. Bengio,
#   "Learning Phrase Representations using RNN Encoder–Decoder for Statistical Machine Translation",
#   EMNLP 2014, arXiv:1406.1078.
# - I. Sutskever, O. Vinyals, Q. V. Le, "Sequence to Sequence Learning with Neural Networks", NeurIPS 2014.
# - A. Radford, K. Narasimhan, T. Salimans, I. Sutskever, "Improving Language Understanding by
#   Generative Pre-Training", OpenAI 2018.
# - A. Radford, J. Wu, R. Child, D. Luan, D. Amodei, I. Sutskever, "Language Models are Unsupervised
#   Multitask Learners", OpenAI 2019.
# - J. Devlin, M.-W. Chang, K. Lee, K. Toutanova, "BERT: Pre-training of Deep Bidirectional
#   Transformers for Language Understanding", NAACL 2019, arXiv:1810.04805.
# - C. Raffel et al., "Exploring the Limits of Transfer Learning with a Unified Text-to-Text
#   Transformer" (T5), JMLR 2020, arXiv:1910.10683.
# - M. Lewis et al., "BART: Denoising Sequence-to-Sequence Pre-training for Natural Language
#   Generation, Translation, and Comprehension", ACL 2020, arXiv:1910.13461.
# - R. Xiong et al., "On Layer Normalization in the Transformer Architecture", ICML 2020, arXiv:2002.04745.
# - R. Sennrich, B. Haddow, A. Birch, "Neural Machine Translation of Rare Words with Subword Units",
#   ACL 2016, arXiv:1508.07909.
# - J. Hoffmann et al., "Training Compute-Optimal Large Language Models", NeurIPS 2022, arXiv:2203.15556.
# - J. Kaplan et al., "Scaling Laws for Neural Language Models", arXiv:2001.08361, 2020 (sec. 2.1: C ≈ 6ND).
# - K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.
# - J. L. Ba, J. R. Kiros, G. E. Hinton, "Layer Normalization", arXiv:1607.06450, 2016.
# - O. Press, L. Wolf, "Using the Output Embedding to Improve Language Models", EACL 2017.
# - R. Kneser, H. Ney, "Improved Backing-off for M-gram Language Modeling", ICASSP 1995.
# - H. Ney, U. Essen, R. Kneser, "On Structuring Probabilistic Dependences in Stochastic Language
#   Modelling", Computer Speech and Language 8, 1994 (the discount n1 / (n1 + 2 n2)).
# - S. F. Chen, J. Goodman, "An Empirical Study of Smoothing Techniques for Language Modeling",
#   Computer Speech and Language 13, 1999.
# - A. Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale",
#   ICLR 2021 (ViT). H. Bao et al., "BEiT", ICLR 2022; K. He et al., "Masked Autoencoders Are Scalable
#   Vision Learners" (MAE), CVPR 2022.
# - A. Fan, M. Lewis, Y. Dauphin, "Hierarchical Neural Story Generation", ACL 2018 (top-k sampling).
# - A. Holtzman, J. Buys, L. Du, M. Forbes, Y. Choi, "The Curious Case of Neural Text Degeneration",
#   ICLR 2020 (nucleus sampling).
# - T. Dao, D. Y. Fu, S. Ermon, A. Rudra, C. Ré, "FlashAttention: Fast and Memory-Efficient Exact
#   Attention with IO-Awareness", NeurIPS 2022.
