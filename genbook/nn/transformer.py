"""Transformer blocks and the two models of chapter 01: an encoder–decoder and a GPT.

- :class:`EncoderBlock`: bidirectional self-attention + feed-forward (Vaswani et al. 2017, sec. 3.1).
- :class:`DecoderBlock`: masked self-attention, optional cross-attention to a context
  (the encoder's output; later in the book, text embeddings), feed-forward. Without
  cross-attention it is the block of GPT (Radford et al. 2018, 2019).
- ``norm_first``: pre-norm ``x + F(LN(x))`` (GPT-2; Xiong et al. 2020 show it trains
  without warm-up) or post-norm ``LN(x + F(x))`` (the original transformer).
- :class:`EncoderDecoder`: the translation model of "Attention Is All You Need".
- :class:`GPT`: a decoder-only language model with ``generate(temperature, top_k, kv_cache)``.
- :class:`KVCache`: the keys and values of the positions a decoder has already read, so that
  generating token t+1 computes attention for one new query instead of re-running all t
  positions (Pope et al. 2023, "Efficiently Scaling Transformer Inference", sec. 2).

Shapes: B batch, S source length, T target length, C = d_model, V vocabulary.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import check_tensor
from .attention import LearnedPositionalEncoding, MultiHeadAttention, causal_mask, positional_encoding


def feed_forward(d_model: int, d_ff: int, dropout: float, activation: str) -> nn.Sequential:
    """FFN(x) = act(x W_1 + b_1) W_2 + b_2, applied to each position (Vaswani et al. 2017, eq. 2)."""
    acts = {"relu": nn.ReLU, "gelu": nn.GELU}
    if activation not in acts:
        raise ValueError(f"activation must be one of {sorted(acts)}, got {activation!r}.")
    return nn.Sequential(nn.Linear(d_model, d_ff), acts[activation](), nn.Linear(d_ff, d_model), nn.Dropout(dropout))


class EncoderBlock(nn.Module):
    """Self-attention over the whole sequence (every token sees every other), then a feed-forward.

    x: (B, S, C), key_padding_mask: (B, S) bool, True = padding; attn_bias: float, broadcastable
    to (B, H, S, S), added to the attention scores (see :class:`MultiHeadAttention`). Returns (B, S, C).
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int | None = None, dropout: float = 0.0,
                 norm_first: bool = True, activation: str = "gelu"):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.ff = feed_forward(d_model, d_ff or 4 * d_model, dropout, activation)
        self.norm2 = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None,
                attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        attend = lambda h: self.drop(self.self_attn(h, key_padding_mask=key_padding_mask, attn_bias=attn_bias))
        if self.norm_first:  # pre-norm: x + Sublayer(LN(x))
            x = x + attend(self.norm1(x))
            return x + self.ff(self.norm2(x))
        x = self.norm1(x + attend(x))  # post-norm: LN(x + Sublayer(x))
        return self.norm2(x + self.ff(x))


class DecoderBlock(nn.Module):
    """Masked self-attention, cross-attention to ``context`` (if built with it), feed-forward.

    x: (B, T, C); context: (B, S, context_dim) or None; self_padding_mask: (B, T) and
    context_padding_mask: (B, S), bool, True = padding. ``causal`` (default True) hides
    the future in self-attention. Returns (B, T, C).
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int | None = None, dropout: float = 0.0,
                 norm_first: bool = True, cross_attention: bool = True, context_dim: int | None = None,
                 activation: str = "gelu"):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, context_dim, dropout) if cross_attention else None
        self.norm_cross = nn.LayerNorm(d_model) if cross_attention else None
        self.ff = feed_forward(d_model, d_ff or 4 * d_model, dropout, activation)
        self.norm2 = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, *,
                self_padding_mask: torch.Tensor | None = None, context_padding_mask: torch.Tensor | None = None,
                causal: bool = True, cache: LayerCache | None = None) -> torch.Tensor:
        """``cache``: this block's :class:`LayerCache` (from a :class:`KVCache`) for generation: x holds
        the positions after those already cached; their keys and values are appended to it."""
        if (context is None) != (self.cross_attn is None):
            raise ValueError("pass a context exactly when the block has cross-attention "
                             f"(built with cross_attention={self.cross_attn is not None}).")
        if cache is None:
            self_attend = lambda h: self.self_attn(h, key_padding_mask=self_padding_mask, causal=causal)
        else:
            if self_padding_mask is not None or not causal:
                raise ValueError("cache= works with causal self-attention without a self_padding_mask "
                                 "(left-to-right generation).")
            self_attend = lambda h: cached_self_attention(self.self_attn, h, cache)
        sublayers = [(self_attend, self.norm1)]
        if self.cross_attn is not None:
            cross = lambda h: self.cross_attn(h, context, key_padding_mask=context_padding_mask)
            sublayers.append((cross, self.norm_cross))
        for sublayer, norm in sublayers:
            x = x + self.drop(sublayer(norm(x))) if self.norm_first else norm(x + self.drop(sublayer(x)))
        return x + self.ff(self.norm2(x)) if self.norm_first else self.norm2(x + self.ff(x))


class TokenEmbedding(nn.Module):
    """Token ids -> vectors, scaled by √d_model (Vaswani et al. 2017, sec. 3.4), plus positions."""

    def __init__(self, vocab_size: int, d_model: int, max_len: int, positional: str, scale: bool = True):
        super().__init__()
        self.vocab_size, self.d_model, self.max_len = vocab_size, d_model, max_len
        self.tokens = nn.Embedding(vocab_size, d_model)
        self.positions = positional_encoding(positional, d_model, max_len)
        self.scale = math.sqrt(d_model) if scale else 1.0
        # N(0, 1/d_model) entries: after the √d_model scaling the embeddings have unit size, like the positions.
        nn.init.normal_(self.tokens.weight, std=1.0 / self.scale)

    def forward(self, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        """ids (B, T) at positions start, ..., start + T - 1 -> (B, T, C)."""
        check_tensor(ids, "token ids", shape=("B", "T"), dtype=torch.long)
        try:
            vectors = self.tokens(ids)
        except IndexError:  # on the CPU: say which ids, instead of torch's "index out of range in self"
            raise ValueError(f"token ids must lie in 0..{self.vocab_size - 1} (vocab_size={self.vocab_size}), "
                             f"got values in [{int(ids.min())}, {int(ids.max())}].") from None
        if start == 0:
            return self.positions(vectors * self.scale)  # (B, T, C)
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise ValueError(f"start must be an int >= 0, got {start!r}.")
        if start + ids.shape[1] > self.max_len:
            raise ValueError(f"positions {start}..{start + ids.shape[1] - 1} do not fit max_len={self.max_len}.")
        table = self.positions.weight if isinstance(self.positions, LearnedPositionalEncoding) else self.positions.table
        return vectors * self.scale + table[start:start + ids.shape[1]]  # (B, T, C)


class EncoderDecoder(nn.Module):
    """The encoder–decoder transformer of Vaswani et al. (2017), for sequence-to-sequence tasks.

    src: (B, S) ids, padded with ``pad_id``; tgt_in: (B, T) ids starting with BOS
    (the target shifted right). ``forward`` returns logits (B, T, V_tgt) for the
    next target token at every position (teacher forcing).
    """

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, d_model: int = 128, n_heads: int = 4,
                 n_encoder_layers: int = 2, n_decoder_layers: int = 2, d_ff: int | None = None,
                 dropout: float = 0.0, max_len: int = 256, norm_first: bool = True,
                 positional: str = "sinusoidal", activation: str = "relu", pad_id: int = 0):
        super().__init__()
        self.pad_id, self.max_len, self.norm_first = pad_id, max_len, norm_first
        self.src_embed = TokenEmbedding(src_vocab_size, d_model, max_len, positional)
        self.tgt_embed = TokenEmbedding(tgt_vocab_size, d_model, max_len, positional)
        self.encoder = nn.ModuleList(EncoderBlock(d_model, n_heads, d_ff, dropout, norm_first, activation)
                                     for _ in range(n_encoder_layers))
        self.decoder = nn.ModuleList(DecoderBlock(d_model, n_heads, d_ff, dropout, norm_first, activation=activation)
                                     for _ in range(n_decoder_layers))
        # Pre-norm stacks end with a LayerNorm (their residual stream is never normalised otherwise).
        self.encoder_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.decoder_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.head = nn.Linear(d_model, tgt_vocab_size)
        self.drop = nn.Dropout(dropout)

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src (B, S) -> (memory (B, S, C), src_padding_mask (B, S), True = padding)."""
        check_tensor(src, "src", shape=("B", "S"), dtype=torch.long)
        padding = src == self.pad_id
        h = self.drop(self.src_embed(src))
        for block in self.encoder:
            h = block(h, key_padding_mask=padding)
        return self.encoder_norm(h), padding

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, src_padding_mask: torch.Tensor) -> torch.Tensor:
        """tgt_in (B, T), memory (B, S, C) -> logits (B, T, V_tgt)."""
        check_tensor(tgt_in, "tgt_in", shape=(memory.shape[0], "T"), dtype=torch.long)
        h = self.drop(self.tgt_embed(tgt_in))
        # No target padding mask needed: with the causal mask, real tokens never see later padding.
        for block in self.decoder:
            h = block(h, memory, context_padding_mask=src_padding_mask)
        return self.head(self.decoder_norm(h))

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        memory, padding = self.encode(src)
        return self.decode(tgt_in, memory, padding)

    @torch.no_grad()
    def generate(self, src: torch.Tensor, bos_id: int, eos_id: int, max_new_tokens: int) -> torch.Tensor:
        """Greedy autoregressive decoding: (B, S) -> (B, L) with L <= max_new_tokens.

        Each row ends with ``eos_id`` (if produced in time) followed by ``pad_id``;
        decoding stops early once every row has produced ``eos_id``.
        """
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}.")
        if max_new_tokens >= self.max_len:
            raise ValueError(f"max_new_tokens={max_new_tokens} needs max_len > {max_new_tokens}, "
                             f"the model has max_len={self.max_len}.")
        memory, padding = self.encode(src)
        out = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=src.device)
        done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
        for _ in range(max_new_tokens):
            next_id = self.decode(out, memory, padding)[:, -1].argmax(-1)  # (B,)
            next_id = next_id.masked_fill(done, self.pad_id)
            out = torch.cat([out, next_id[:, None]], dim=1)
            done |= next_id == eos_id
            if bool(done.all()):  # one sync per token, not per training step
                break
        return out[:, 1:]


class LayerCache:
    """The keys and values one attention layer has computed so far: (B, H, length, d_head) each.

    Storage for ``max_len`` positions is allocated once; ``append`` writes the new keys and
    values after the ``length`` cached ones and returns all of them (views, no copies). When
    gradients are wanted it writes out of place instead, so that the cache is differentiable.
    """

    def __init__(self, batch_size: int, n_heads: int, d_head: int, max_len: int,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32):
        for name, value in (("batch_size", batch_size), ("n_heads", n_heads), ("d_head", d_head),
                            ("max_len", max_len)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}.")
        self.keys = torch.zeros(batch_size, n_heads, max_len, d_head, device=device, dtype=dtype)
        self.values = torch.zeros_like(self.keys)
        self.length = 0

    @property
    def max_len(self) -> int:
        return self.keys.shape[2]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """k, v: (B, H, T, d_head) of the next T positions -> keys and values of all positions so far."""
        check_tensor(k, "k", shape=tuple(self.keys.shape[:2]) + ("T", self.keys.shape[3]), dtype="floating")
        check_tensor(v, "v", shape=tuple(k.shape), dtype="floating")
        end = self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"the cache holds {self.max_len} positions; {self.length} are filled and "
                             f"{k.shape[2]} more do not fit.")
        if torch.is_grad_enabled() and (k.requires_grad or v.requires_grad):  # out of place: autograd keeps both
            where = torch.arange(self.length, end, device=k.device)
            self.keys, self.values = self.keys.index_copy(2, where, k), self.values.index_copy(2, where, v)
        else:  # generation: write into the storage allocated once
            self.keys[:, :, self.length:end] = k
            self.values[:, :, self.length:end] = v
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]


class KVCache:
    """One :class:`LayerCache` per block of a decoder: ``cache[i]`` is block i's.

    ``length`` is the number of positions already read (the position of the next token).
    Build one with ``model.new_cache(batch_size)`` and pass it to ``model(idx, cache=cache)``
    for the first (prompt) and every later token. Attention dropout is not applied through it.
    """

    def __init__(self, n_layers: int, batch_size: int, n_heads: int, d_head: int, max_len: int,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32):
        if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
            raise ValueError(f"n_layers must be a positive int, got {n_layers!r}.")
        self.layers = [LayerCache(batch_size, n_heads, d_head, max_len, device, dtype) for _ in range(n_layers)]

    def __getitem__(self, i: int) -> LayerCache:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def length(self) -> int:
        return self.layers[0].length

    @property
    def max_len(self) -> int:
        return self.layers[0].max_len

    @property
    def batch_size(self) -> int:
        return self.layers[0].keys.shape[0]

    @classmethod
    def for_blocks(cls, blocks, batch_size: int, max_len: int, device=None, dtype=torch.float32) -> KVCache:
        """A cache for a stack of :class:`DecoderBlock` (their self-attention's heads and widths)."""
        attn = blocks[0].self_attn
        return cls(len(blocks), batch_size, attn.n_heads, attn.d_head, max_len, device, dtype)


def cached_self_attention(attn: MultiHeadAttention, x: torch.Tensor, cache: LayerCache) -> torch.Tensor:
    """Causal self-attention of the new positions x (B, T, C) to the cached ones and to themselves.

    Only the new positions' queries, keys and values are computed; the keys and values
    join the cache. With T = 1 (one generated token) the query may see every key, so no
    mask is needed; with T > 1 the causal mask is aligned to the last T keys. (B, T, C).
    """
    check_tensor(x, "x", shape=("B", "T", attn.d_model), dtype="floating")
    if attn.context_dim != attn.d_model:
        raise ValueError("cached_self_attention needs a self-attention layer (context_dim == d_model).")
    b, t_q = x.shape[:2]
    q = attn.split_heads(attn.q_proj(x))  # (B, H, T, d_head): the new queries only
    k_new, v_new = map(attn.split_heads, attn.kv_proj(x).chunk(2, dim=-1))
    k, v = cache.append(k_new, v_new)  # (B, H, T_k, d_head): every position so far
    t_k = k.shape[2]
    if t_q == 1:
        out = F.scaled_dot_product_attention(q, k, v)  # the newest query sees every key
    elif t_q == t_k:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # an empty cache: the usual causal mask
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(t_q, t_k, x.device))
    return attn.out_proj(out.transpose(1, 2).reshape(b, t_q, attn.d_model))  # (B, T, C)


def top_k_filter(logits: torch.Tensor, k: int | None) -> torch.Tensor:
    """Keep the k largest logits of each row, set the rest to -inf (k=None keeps all). (..., V)."""
    if k is None:
        return logits
    if not 1 <= k:
        raise ValueError(f"top_k must be >= 1, got {k}.")
    k = min(k, logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # the k-th largest value of each row
    return logits.masked_fill(logits < kth, float("-inf"))


class GPT(nn.Module):
    """A decoder-only transformer language model (Radford et al. 2018, 2019), nanoGPT-style.

    idx: (B, T) token ids with T <= block_size -> logits (B, T, V) for the next token
    at every position. Pre-norm blocks without cross-attention, learned positions,
    the output layer tied to the token embedding (Press & Wolf 2017).
    """

    def __init__(self, vocab_size: int, block_size: int, d_model: int = 128, n_heads: int = 4, n_layers: int = 2,
                 d_ff: int | None = None, dropout: float = 0.0, positional: str = "learned", tie_weights: bool = True):
        super().__init__()
        self.vocab_size, self.block_size = vocab_size, block_size
        self.embed = TokenEmbedding(vocab_size, d_model, block_size, positional, scale=False)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(DecoderBlock(d_model, n_heads, d_ff, dropout, norm_first=True,
                                                 cross_attention=False) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        if tie_weights:
            self.head.weight = self.embed.tokens.weight
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor, *, cache: KVCache | None = None) -> torch.Tensor:
        """idx (B, T) -> logits (B, T, V). With ``cache`` (from :meth:`new_cache`), idx holds the tokens
        after the ``cache.length`` already read, at positions cache.length, ..., cache.length + T - 1."""
        check_tensor(idx, "idx", shape=("B", "T"), dtype=torch.long)
        start = 0 if cache is None else cache.length
        if start + idx.shape[1] > self.block_size:
            if cache is None:
                raise ValueError(f"sequence of length {idx.shape[1]} exceeds block_size={self.block_size}; "
                                 "crop it to the last block_size tokens.")
            raise ValueError(f"the cache holds {start} positions and {idx.shape[1]} more exceed "
                             f"block_size={self.block_size}.")
        if cache is not None and (len(cache) != len(self.blocks) or cache.batch_size != idx.shape[0]):
            raise ValueError(f"cache is for {len(cache)} layers and batch {cache.batch_size}; the model has "
                             f"{len(self.blocks)} layers and idx a batch of {idx.shape[0]}: use model.new_cache(B).")
        h = self.drop(self.embed(idx, start))  # (B, T, C)
        for i, block in enumerate(self.blocks):
            h = block(h, cache=None if cache is None else cache[i])  # masked self-attention + feed-forward
        return self.head(self.norm(h))  # (B, T, V)

    def new_cache(self, batch_size: int) -> KVCache:
        """An empty :class:`KVCache` for ``batch_size`` sequences of up to ``block_size`` tokens."""
        weight = self.head.weight
        return KVCache.for_blocks(self.blocks, batch_size, self.block_size, weight.device, weight.dtype)

    def loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the next token, in nats: -1/(BT) Σ log p(x_{t+1} | x_{≤t})."""
        logits = self(idx)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 generator: torch.Generator | None = None, kv_cache: bool = False) -> torch.Tensor:
        """Sample ``max_new_tokens`` tokens after ``idx`` (B, T); returns (B, T + max_new_tokens).

        Each step: logits of the last position / temperature, keep the top_k, softmax,
        draw. temperature -> 0 approaches greedy decoding; top_k=1 is greedy.
        Without ``kv_cache`` every step re-reads the last block_size tokens; with it, the
        prompt is read once and each step reads only the newest token (the same tokens for the
        same generator, up to float rounding), which needs T + max_new_tokens <= block_size.
        """
        check_tensor(idx, "idx", shape=("B", "T"), dtype=torch.long)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature} (use top_k=1 for greedy decoding).")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}.")
        if kv_cache and idx.shape[1] + max_new_tokens > self.block_size:
            raise ValueError(f"kv_cache=True needs T + max_new_tokens <= block_size={self.block_size}, got "
                             f"{idx.shape[1]} + {max_new_tokens} (positions of cached keys cannot slide); "
                             "generate without the cache, or with fewer tokens.")
        cache = self.new_cache(idx.shape[0]) if kv_cache and max_new_tokens else None
        new = idx  # what the model has not read yet
        for _ in range(max_new_tokens):
            if cache is None:
                logits = self(idx[:, -self.block_size:])[:, -1] / temperature  # (B, V)
            else:
                logits = self(new, cache=cache)[:, -1] / temperature  # the prompt once, then one token a step
            probs = top_k_filter(logits, top_k).softmax(-1)
            new = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
            idx = torch.cat([idx, new], dim=1)
        return idx


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
