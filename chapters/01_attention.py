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
# 1. **tokens and embeddings**: what a model reads;
# 2. **scaled dot-product attention** with padding and causal masks, written from
#    scratch and checked against PyTorch; then **multi-head attention**;
# 3. **positional encodings**, sinusoidal and learned;
# 4. the **encoder block**, the **decoder block** and the **encoder–decoder**;
# 5. an experiment you can *see*: a transformer that normalises written dates,
#    with its cross-attention drawn, against a **recurrent network** trained alongside;
# 6. a **decoder-only GPT** trained on Shakespeare, sampled with temperature and
#    top-k, measured against n-gram baselines, and its attention heads drawn;
# 7. encoder-only, decoder-only and encoder–decoder models: what each is for.
#
# The settings of the whole chapter live in one place. `fast` runs on a 2-core
# CPU in about three minutes; `full` is the same chapter for one GPU.

# %%
import math
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

import genbook
from genbook.data import CharTokenizer, dates, shakespeare_text, train_bpe
from genbook.metrics.text import bigram_baseline, unigram_baseline
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
# into training and held-out plays, so held-out text is truly unseen.

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
# end up close, which we will check on the trained GPT at the end of the chapter.

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
# costs about $6ND$ floating point operations (forward and backward pass), and
# for a fixed compute budget the best language models use roughly 20 tokens per
# parameter (Hoffmann et al., 2022). We count both for every model of this
# chapter and put them side by side at the end.
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
# load our weights into it and compare: self-attention with padding, causal
# self-attention, and cross-attention to a longer context.

# %%
ours = MultiHead(32, 4)
theirs = MultiHeadAttention(32, 4)
theirs.load_state_dict(ours.state_dict())
x, context = torch.randn(2, 6, 32, generator=gen), torch.randn(2, 9, 32, generator=gen)
pad = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])  # (B, T), True = padding
checks = {
    "padded self-attention": (ours(x, mask=~pad[:, None, None, :]), theirs(x, key_padding_mask=pad)),
    "causal self-attention": (ours(x, mask=causal(6)), theirs(x, causal=True)),
    "cross-attention": (ours(x, context), theirs(x, context)),
}
for name, (a, b) in checks.items():
    print(f"{name:<22} output {tuple(b.shape)}, max |ours - genbook| = {(a - b).abs().max().item():.1e}")
    assert (a - b).abs().max() < 1e-5
try:
    theirs(torch.randn(2, 6, 16))
except ValueError as err:
    print("a wrong width is caught:", err)

# %% [markdown]
# ## 3. Positional encoding
#
# Attention treats its input as a *set*: permute the tokens and the outputs are
# permuted the same way, nothing else changes. Word order is lost.

# %%
perm = torch.randperm(6, generator=gen)
with torch.no_grad():
    print("permuting the input permutes the output:",
          torch.allclose(theirs(x[:, perm]), theirs(x)[:, perm], atol=1e-6))

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
assert torch.allclose(pe, genbook.nn.sinusoidal_table(128, 64), atol=1e-5)

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
# encoder's output, then the feed-forward network. Without the cross-attention
# sublayer it is the block of GPT.
#
# genbook's `EncoderBlock` and `DecoderBlock` implement these blocks (with
# optional cross-attention and a context of another width, which latent
# diffusion needs). We check ours and genbook's against PyTorch's own
# `nn.TransformerEncoderLayer` and `nn.TransformerDecoderLayer`, in both norm
# placements, by copying the weights across.

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
    want = reference(x, memory, tgt_mask=~causal(6), tgt_is_causal=True)  # torch's float/bool masks: True = hidden
    err_dec = (dec(x, memory) - want).abs().max().item()
    print(f"{kind}: encoder block: ours {err_scratch:.1e}, genbook {err_genbook:.1e}; "
          f"decoder block (causal + cross-attention): genbook {err_dec:.1e}")
    assert max(err_genbook, err_scratch, err_dec) < 1e-5

# %% [markdown]
# ### The encoder–decoder
#
# The model of "Attention Is All You Need" reads a source sequence with a stack
# of encoder blocks and writes the target with a stack of decoder blocks, each of
# which cross-attends to the encoder's output. Token embeddings are multiplied
# by $\sqrt{d_\text{model}}$ and added to the positional encodings (sec. 3.4), and
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
C = cfg["dates"]
V = dates.VOCAB
train_pairs = dates.date_pairs(C["n_train"], "train", n_dates=tuple(C["n_dates"]), seed=0)
heldout_pairs = dates.date_pairs(C["n_heldout"], "heldout", n_dates=tuple(C["n_dates"]), seed=0)
for source, target in train_pairs[:6]:
    print(f"{source:<42} -> {target}")
assert not {s for s, _ in train_pairs} & {s for s, _ in heldout_pairs}
src_train, tgt_train = dates.encode_pairs(train_pairs)  # (N, S), (N, T+1) = BOS target EOS
src_held, tgt_held = dates.encode_pairs(heldout_pairs)
print(f"\n{len(train_pairs):,} training pairs, {len(heldout_pairs):,} held-out pairs; vocabulary {V.size} "
      f"characters incl. PAD/BOS/EOS; source lengths {int((src_held != V.PAD).sum(1).min())}-"
      f"{int((src_held != V.PAD).sum(1).max())} characters")

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
        return F.cross_entropy(logits.reshape(-1, V.size), tgt[:, 1:].reshape(-1), ignore_index=V.PAD)

    data = dates.length_batches(src_train, tgt_train, settings["batch_size"], generator=generator, device=device)
    start = time.perf_counter()
    schedule = genbook.warmup_cosine(settings["lr"], settings["steps"], settings["warmup"])
    history = genbook.fit(step, data, settings["steps"], model=model, optimizer=optimizer, grad_clip=1.0,
                          lr_schedule=schedule, log_every=50, desc=type(model).__name__)
    return {"history": history, "seconds_per_step": (time.perf_counter() - start) / settings["steps"],
            "training_tokens": int(settings["steps"] * settings["batch_size"]  # source + target tokens read
                                   * ((src_train != V.PAD).sum() + (tgt_train != V.PAD).sum() - len(tgt_train))
                                   / len(src_train))}


genbook.seed_everything(1)
transformer = EncoderDecoder(V.size, V.size, d_model=C["d_model"], n_heads=C["n_heads"], n_encoder_layers=C["layers"],
                             n_decoder_layers=C["layers"], d_ff=C["d_ff"], max_len=128, positional="sinusoidal").to(device)
transformer, transformer_info = genbook.load_or_train(
    transformer, lambda m: train_seq2seq(m, C, seed=2), chapter="01_attention", name="dates_transformer", config=C)
print(f"transformer: {genbook.nn.count_parameters(transformer):,} parameters, "
      f"{1e3 * transformer_info['seconds_per_step']:.0f} ms per training step")

# %% [markdown]
# **Decoding.** At test time there is no target to read: the decoder writes one
# character, appends it to its input and runs again, until it writes the end
# token EOS (**autoregressive** decoding). The source is encoded once. Here is
# greedy decoding, always taking the most likely character, written out and
# checked against genbook's `EncoderDecoder.generate`:

# %%
@torch.no_grad()
def greedy_decode(model, src, max_new_tokens):
    """(B, S) -> (B, <= max_new_tokens) ids; each row stops after its EOS (PAD afterwards)."""
    memory, src_padding = model.encode(src)  # (B, S, C), computed once
    out = torch.full((len(src), 1), V.BOS, device=src.device)  # every output starts with BOS
    finished = torch.zeros(len(src), dtype=torch.bool, device=src.device)
    for _ in range(max_new_tokens):
        logits = model.decode(out, memory, src_padding)[:, -1]  # (B, V): the next character
        next_id = logits.argmax(-1).masked_fill(finished, V.PAD)
        out = torch.cat([out, next_id[:, None]], dim=1)
        finished |= next_id == V.EOS
        if finished.all():
            break
    return out[:, 1:]


max_new = 11 * C["n_dates"][1]  # ten characters and a space (or EOS) per date
src_held, tgt_held = src_held.to(device), tgt_held.to(device)
transformer.eval()
predicted = greedy_decode(transformer, src_held, max_new)
assert torch.equal(predicted, transformer.generate(src_held, V.BOS, V.EOS, max_new))
predictions = [V.decode(row) for row in predicted.tolist()]
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
    out_ids = torch.tensor([[V.BOS] + V.encode(predictions[i]) + [V.EOS]], device=device)
    with record_attention(transformer) as maps:
        transformer(src, out_ids[:, :-1])
    cross = maps[f"decoder.{C['layers'] - 1}.cross_attn"][0].mean(0).cpu()  # (T, S), averaged over heads
    ax.imshow(cross, cmap="Greys", aspect="auto")
    ax.set_xticks(range(len(source)), list(source), fontsize=8)
    ax.set_yticks(range(cross.shape[0]), list(predictions[i]) + ["EOS"], fontsize=8)
    ax.set_title("cross-attention, last decoder layer", fontsize=10)
plt.tight_layout()
plt.show()

# %% [markdown]
# Each output digit puts most of its weight on the input characters it is
# copied or translated from: the year on the year, the month on the month's name
# or number, the day on the day, whatever order the source used; words that carry
# nothing the output needs ("the", "of", a weekday) get little attention. Nobody
# told the model where the parts of a date are; cross-attention learned the
# alignment from input–output pairs alone, which is what Bahdanau et al. (2015)
# introduced attention for.
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
# attention. Two things separate them: the fixed-size summary (does accuracy
# fall as sources grow longer?) and sequential computation ($S + T$ dependent
# steps per example instead of a few parallel matrix products). We train a GRU
# encoder–decoder on the same batches, for the same number of steps.

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
        last = (src != V.PAD).sum(1) - 1  # index of each source's last real token
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
        token = torch.full((len(src), 1), V.BOS, device=src.device)
        finished = torch.zeros(len(src), dtype=torch.bool, device=src.device)
        out = []
        for _ in range(max_new_tokens):
            logits, state = self.decode(token, c, state)  # one step, carrying the hidden state
            token = logits[:, -1].argmax(-1, keepdim=True).masked_fill(finished[:, None], V.PAD)
            out.append(token)
            finished |= token[:, 0] == V.EOS
            if finished.all():
                break
        return torch.cat(out, dim=1)


G = {**C, **cfg["gru"]}
genbook.seed_everything(1)
gru = GRUSeq2Seq(V.size, G["d_embed"], G["d_hidden"]).to(device)
gru, gru_info = genbook.load_or_train(gru, lambda m: train_seq2seq(m, G, seed=2), chapter="01_attention",
                                      name="dates_gru", config=G)
gru.eval()
gru_predictions = [V.decode(row) for row in gru.generate(src_held, max_new).tolist()]
gru_correct = torch.tensor([p == t for p, (_, t) in zip(gru_predictions, heldout_pairs)])
gru_exact_match = gru_correct.float().mean().item()

# %% [markdown]
# The comparison, on the same held-out dates, by source length:

# %%
src_lengths = torch.tensor([len(s) for s, _ in heldout_pairs]).float()
inner_edges = torch.quantile(src_lengths, torch.tensor([0.2, 0.4, 0.6, 0.8]))
length_bin = torch.bucketize(src_lengths, inner_edges, right=True)  # five bins of about equal size
rows = []  # (label, count, mean length, transformer accuracy, GRU accuracy)
for b in length_bin.unique().tolist():
    sel = length_bin == b
    label = f"{int(src_lengths[sel].min())}-{int(src_lengths[sel].max())}"
    rows.append((label, int(sel.sum()), src_lengths[sel].mean().item(), correct[sel].float().mean().item(),
                 gru_correct[sel].float().mean().item()))

print(f"{'':<26}{'transformer':>14}{'GRU':>10}")
print(f"{'parameters':<26}{genbook.nn.count_parameters(transformer):>14,}{genbook.nn.count_parameters(gru):>10,}")
print(f"{'ms per training step':<26}{1e3 * transformer_info['seconds_per_step']:>14.1f}"
      f"{1e3 * gru_info['seconds_per_step']:>10.1f}")
print(f"{'held-out exact match':<26}{encdec_exact_match:>14.1%}{gru_exact_match:>10.1%}")
for name, n, _, acc_t, acc_g in rows:
    print(f"{'  source ' + name + f' chars (n={n})':<26}{acc_t:>14.1%}{acc_g:>10.1%}")
faster = "transformer" if transformer_info["seconds_per_step"] < gru_info["seconds_per_step"] else "GRU"
better = "transformer" if encdec_exact_match > gru_exact_match else "GRU"
print(f"\nafter the same {C['steps']} steps the {better} is more accurate; per step the {faster} was faster here")
print("some of the GRU's mistakes:")
mistakes = [(s, t, p) for (s, t), p, ok in zip(heldout_pairs, gru_predictions, gru_correct) if not ok]
for source, target, p in mistakes[:4]:
    print(f"  {source:<40} -> {p:<12} (expected {target})")

fig, (ax_len, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.2))
centres = [r[2] for r in rows]
ax_len.plot(centres, [r[3] for r in rows], "o-", label="transformer")
ax_len.plot(centres, [r[4] for r in rows], "s-", label="GRU encoder-decoder")
ax_len.set(xlabel="source length (characters)", ylabel="held-out exact match", ylim=(0, 1.02),
           title="accuracy against sequence length")
ax_len.legend()
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
# and keep every piece intact until it is written. Look at which sources it gets
# wrong: what hurts is how much it must hold at once and for how long, for
# instance a year read first and a day and month that must be reordered and
# padded with zeros. In the fast profile each source holds one date (the
# lengths printed in section 5); the full profile (and exercise 1.6) puts up to
# three dates in a source, where the fixed-size summary falls further behind as
# sources grow.
#
# The quality bar of this chapter: at least 95% exact match on held-out dates.

# %%
assert encdec_exact_match >= 0.95, encdec_exact_match

# %% [markdown]
# ## 7. Decoder-only: a GPT on Shakespeare
#
# Drop the encoder and the cross-attention and keep a stack of causal decoder
# blocks: that is **GPT** (Radford et al., 2018, 2019). It models the probability
# of a text as a product of next-token probabilities,
#
# $$
# p_\theta(x_1, \dots, x_T) = \prod_{t=1}^{T} p_\theta(x_t \mid x_{<t}), \qquad
# \mathcal{L}(\theta) = -\frac{1}{T} \sum_{t=1}^{T} \log p_\theta(x_t \mid x_{<t}),
# $$
#
# and the causal mask lets one forward pass score all $T$ positions at once. A
# loss in nats per character is easy to compare with simple baselines fitted on
# the same training text and scored on the same held-out text: a **unigram**
# model (character frequencies) and a **bigram** model, $p(x_t \mid x_{t-1})$
# from counts (genbook.metrics.text, add-$k$ smoothing).

# %%
P = cfg["gpt"]
train_ids = torch.tensor(chars.encode(train_text))
val_ids = torch.tensor(chars.encode(val_text))[: P["val_chars"] + 1]
unigram_val_nll = unigram_baseline(train_ids, val_ids, chars.vocab_size)
bigram_val_nll = bigram_baseline(train_ids, val_ids, chars.vocab_size)
print(f"held-out characters: {len(val_ids) - 1:,}; uniform {math.log(chars.vocab_size):.3f}, "
      f"unigram {unigram_val_nll:.3f}, bigram {bigram_val_nll:.3f} nats/char")


# %% [markdown]
# genbook's `GPT` is the decoder-only model (learned positions, pre-norm blocks,
# output layer tied to the embedding). Training reads random windows of
# `block_size` characters; the targets are the same windows shifted by one.

# %%
def random_windows(ids, batch_size, block_size, generator):
    """Endless (x, y) batches of (B, T) windows, y = x shifted left by one character."""
    offsets = torch.arange(block_size)
    while True:
        start = torch.randint(len(ids) - block_size - 1, (batch_size, 1), generator=generator)
        yield ids[start + offsets].to(device), ids[start + offsets + 1].to(device)


def train_gpt(model):
    generator = genbook.seed_everything(3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=P["lr"], betas=(0.9, 0.99), weight_decay=0.0)

    def step(x, y):
        logits = model(x)  # (B, T, V)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))  # -1/T sum log p(x_t | x_<t)

    start = time.perf_counter()
    data = random_windows(train_ids, P["batch_size"], P["block_size"], generator)
    history = genbook.fit(step, data, P["steps"], model=model, optimizer=optimizer, grad_clip=1.0, log_every=50,
                          lr_schedule=genbook.warmup_cosine(P["lr"], P["steps"], P["warmup"]), desc="GPT")
    return {"history": history, "seconds_per_step": (time.perf_counter() - start) / P["steps"],
            "training_tokens": P["steps"] * P["batch_size"] * P["block_size"]}


genbook.seed_everything(1)
gpt = GPT(chars.vocab_size, P["block_size"], P["d_model"], P["n_heads"], P["n_layers"]).to(device)
gpt, gpt_info = genbook.load_or_train(gpt, train_gpt, chapter="01_attention", name="shakespeare_gpt",
                                      config={**P, "vocab": chars.vocab_size})
gpt.eval()


@torch.no_grad()
def heldout_nll(model, ids, block_size, batch_size=256):
    """Mean -log p(x_t | x_<t) over consecutive held-out windows, in nats per character."""
    n = (len(ids) - 1) // block_size
    x = ids[: n * block_size].view(n, block_size)
    y = ids[1: n * block_size + 1].view(n, block_size)
    total = 0.0
    for i in range(0, n, batch_size):
        logits = model(x[i:i + batch_size].to(device))
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[i:i + batch_size].reshape(-1).to(device),
                                 reduction="sum").item()
    return total / (n * block_size)


gpt_val_nll = heldout_nll(gpt, val_ids, P["block_size"])
print(f"GPT: {genbook.nn.count_parameters(gpt):,} parameters, {1e3 * gpt_info['seconds_per_step']:.0f} ms per step")
print(f"held-out loss: GPT {gpt_val_nll:.3f} vs bigram {bigram_val_nll:.3f} nats/char "
      f"({bigram_val_nll - gpt_val_nll:.2f} nats better), unigram {unigram_val_nll:.3f}")
assert gpt_val_nll <= bigram_val_nll - 0.3, (gpt_val_nll, bigram_val_nll)

# %%
ax = genbook.plot_losses({"GPT training loss": gpt_info["history"]["loss"]}, title="GPT on Shakespeare")
ax.axhline(bigram_val_nll, color="C1", ls="--", label="bigram (held-out)")
ax.axhline(unigram_val_nll, color="C2", ls=":", label="unigram (held-out)")
ax.plot([P["steps"]], [gpt_val_nll], "k*", ms=10, label="GPT (held-out)")
ax.set_ylabel("nats per character")
ax.legend()
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
# nonsense comes from. Written out, then checked against `GPT.generate`:

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


prompt = torch.tensor([chars.encode("ROMEO:\n")], device=device)
same = [f(gpt, prompt, 40, 0.8, 10, generator=torch.Generator(device).manual_seed(0))
        for f in (sample, lambda m, *a, **kw: m.generate(*a, **kw))]
assert torch.equal(*same)
for temperature, top_k in [(1.0, None), (0.8, 10), (0.5, 5)]:
    out = sample(gpt, prompt, 160, temperature, top_k, generator=torch.Generator(device).manual_seed(1))
    print(f"--- temperature {temperature}, top-k {top_k} ---\n{chars.decode(out[0].tolist())}\n")

# %% [markdown]
# The fast profile's small model spells many common words right, has learned
# that speeches start with a name in capitals and a colon, and has no idea what
# it is saying. Lower temperatures and smaller k give safer, more repetitive
# text. The full profile trains a bigger model for longer.
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
shown = [0, P["n_layers"] - 1]  # the first and the last layer
fig, axes = plt.subplots(len(shown), P["n_heads"], figsize=(3 * P["n_heads"], 3.2 * len(shown)), squeeze=False)
for row, layer in enumerate(shown):
    for head in range(P["n_heads"]):
        ax = axes[row, head]
        ax.imshow(maps[f"blocks.{layer}.self_attn"][0, head].cpu(), cmap="magma")
        ax.set_title(f"layer {layer + 1}, head {head + 1}", fontsize=9)
        ax.set_xticks(range(len(sentence)), list(sentence), fontsize=5)
        ax.set_yticks(range(len(sentence)), list(sentence), fontsize=5)
plt.tight_layout()
plt.show()

# %% [markdown]
# Heads of the first layer tend to be sharp and local: one looks at the
# character itself, others at the one or two characters before it (an n-gram
# model, built from attention). Heads of the last layer spread their weight over
# the line and pick out particular earlier characters. Nobody designed these
# roles; they are what minimising the next-character loss found, and the full
# profile's deeper model finds more of them.
#
# The learned character embeddings, too, have organised themselves: the nearest
# neighbours of a character (by cosine similarity of the rows of $W_E$) are
# characters that play a similar role.

# %%
table = F.normalize(gpt.embed.tokens.weight.detach().cpu(), dim=-1)
for ch in ["a", "e", "T", ",", "3"]:
    sims = table @ table[chars.token_to_id(ch)]
    nearest = [chars.id_to_token(i) for i in sims.argsort(descending=True)[1:6].tolist()]
    print(f"{ch!r}: nearest {nearest}")

# %% [markdown]
# The GPT's positions are a learned table (section 3), initialised at random. After
# training, the cosine similarity between its position vectors (left) shows
# stripes parallel to the diagonal, as the fixed sinusoids do (right): the
# similarity of two positions has come to depend mostly on their distance.

# %%
learned = F.normalize(gpt.embed.positions.weight.detach().cpu(), dim=-1)  # (block_size, C)
fixed = F.normalize(sinusoidal(P["block_size"], P["d_model"]), dim=-1)
fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
for ax, table_, title in [(axes[0], learned, "learned positions (GPT)"), (axes[1], fixed, "sinusoidal positions")]:
    ax.imshow(table_ @ table_.T, cmap="viridis", vmin=-1, vmax=1)
    ax.set(title=title, xlabel="position", ylabel="position")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 8. Encoder-only, decoder-only, encoder–decoder
#
# The same blocks make three families of models, which differ in their masks
# and in what they are trained to predict:
#
# | family | attention | trained to | good for | examples |
# |---|---|---|---|---|
# | encoder-only | bidirectional self-attention | fill in masked tokens | understanding a whole input: classification, retrieval, tagging, features for other models | BERT (Devlin et al., 2019), ViT |
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
# ## 9. Parameters and training tokens
#
# The three models of this chapter, counted as promised in section 1:

# %%
budget = [("date transformer", transformer, transformer_info), ("date GRU", gru, gru_info), ("Shakespeare GPT", gpt, gpt_info)]
print(f"{'model':<18}{'parameters N':>14}{'tokens D':>14}{'D / N':>8}{'~6ND (TFLOP)':>15}")
for name, model, info in budget:
    n_params, tokens = genbook.nn.count_parameters(model), info["training_tokens"]
    print(f"{name:<18}{n_params:>14,}{tokens:>14,}{tokens / n_params:>8.1f}{6 * n_params * tokens / 1e12:>15.2f}")

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
    },
    baselines={
        "gru_exact_match": gru_exact_match,
        "bigram_val_nll": bigram_val_nll,
        "unigram_val_nll": unigram_val_nll,
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
# the accuracy-against-length table. How much of the gap to the transformer
# closes, and what happens to the time per step?
#
# **Exercise 1.5 (no check): post-norm.** Train the date transformer with
# `norm_first=False` (the original post-norm) and with the warm-up removed
# (`warmup=1`), then with both. Which combination fails to learn? Compare with
# Xiong et al. (2020), who explain why post-norm needs the warm-up.
#
# **Exercise 1.6 (no check): longer dates.** Set `n_dates=[1, 3]` in the fast
# profile (several dates per source, so sources up to three times longer) and
# run sections 5 and 6 again. Which model suffers more, and how many more steps
# does the transformer need to pass the 95% bar?
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
# - A. Fan, M. Lewis, Y. Dauphin, "Hierarchical Neural Story Generation", ACL 2018 (top-k sampling).
# - A. Holtzman, J. Buys, L. Du, M. Forbes, Y. Choi, "The Curious Case of Neural Text Degeneration",
#   ICLR 2020 (nucleus sampling).
# - T. Dao, D. Y. Fu, S. Ermon, A. Rudra, C. Ré, "FlashAttention: Fast and Memory-Efficient Exact
#   Attention with IO-Awareness", NeurIPS 2022.
