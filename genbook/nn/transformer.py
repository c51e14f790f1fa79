"""Transformer blocks and the two models of chapter 01: an encoder–decoder and a GPT.

- :class:`EncoderBlock`: bidirectional self-attention + feed-forward (Vaswani et al. 2017, sec. 3.1).
- :class:`DecoderBlock`: masked self-attention, optional cross-attention to a context
  (the encoder's output; later in the book, text embeddings), feed-forward. Without
  cross-attention it is the block of GPT (Radford et al. 2018, 2019).
- ``norm_first``: pre-norm ``x + F(LN(x))`` (GPT-2; Xiong et al. 2020 show it trains
  without warm-up) or post-norm ``LN(x + F(x))`` (the original transformer).
- :class:`EncoderDecoder`: the translation model of "Attention Is All You Need".
- :class:`GPT`: a decoder-only language model with ``generate(temperature, top_k)``.

Shapes: B batch, S source length, T target length, C = d_model, V vocabulary.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import check_tensor
from .attention import MultiHeadAttention, positional_encoding


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
                causal: bool = True) -> torch.Tensor:
        if (context is None) != (self.cross_attn is None):
            raise ValueError("pass a context exactly when the block has cross-attention "
                             f"(built with cross_attention={self.cross_attn is not None}).")
        sublayers = [(lambda h: self.self_attn(h, key_padding_mask=self_padding_mask, causal=causal), self.norm1)]
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

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        check_tensor(ids, "token ids", shape=("B", "T"), dtype=torch.long)
        try:
            vectors = self.tokens(ids)
        except IndexError:  # on the CPU: say which ids, instead of torch's "index out of range in self"
            raise ValueError(f"token ids must lie in 0..{self.vocab_size - 1} (vocab_size={self.vocab_size}), "
                             f"got values in [{int(ids.min())}, {int(ids.max())}].") from None
        return self.positions(vectors * self.scale)  # (B, T, C)


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

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        check_tensor(idx, "idx", shape=("B", "T"), dtype=torch.long)
        if idx.shape[1] > self.block_size:
            raise ValueError(f"sequence of length {idx.shape[1]} exceeds block_size={self.block_size}; "
                             "crop it to the last block_size tokens.")
        h = self.drop(self.embed(idx))  # (B, T, C)
        for block in self.blocks:
            h = block(h)  # masked self-attention + feed-forward
        return self.head(self.norm(h))  # (B, T, V)

    def loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the next token, in nats: -1/(BT) Σ log p(x_{t+1} | x_{≤t})."""
        logits = self(idx)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample ``max_new_tokens`` tokens after ``idx`` (B, T); returns (B, T + max_new_tokens).

        Each step: logits of the last position / temperature, keep the top_k, softmax,
        draw. temperature -> 0 approaches greedy decoding; top_k=1 is greedy.
        """
        check_tensor(idx, "idx", shape=("B", "T"), dtype=torch.long)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature} (use top_k=1 for greedy decoding).")
        for _ in range(max_new_tokens):
            logits = self(idx[:, -self.block_size:])[:, -1] / temperature  # (B, V)
            probs = top_k_filter(logits, top_k).softmax(-1)
            next_id = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
            idx = torch.cat([idx, next_id], dim=1)
        return idx


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
