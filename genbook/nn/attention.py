"""Multi-head attention and positional encodings (Vaswani et al. 2017, "Attention Is All You Need").

Scaled dot-product attention (eq. 1)::

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V

Multi-head attention (section 3.2.2)::

    MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O,   head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)

:class:`MultiHeadAttention` computes eq. 1 with
``torch.nn.functional.scaled_dot_product_attention``, which dispatches to fused
kernels (FlashAttention, memory-efficient attention) on a GPU. Chapter 01 writes
the same computation from scratch and checks that the two agree.

Mask conventions (the same as ``torch.nn.MultiheadAttention``):

- ``key_padding_mask``: (B, T_k) bool, **True marks padding**: those keys are ignored.
- ``causal=True``: query i sees only keys j <= i (+ T_k - T_q when the queries are the
  last T_q positions of the keys, as when a cache holds earlier keys).
- :func:`causal_mask` returns the opposite kind, **True = may attend**, which is what
  ``scaled_dot_product_attention``'s boolean ``attn_mask`` expects.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import check_tensor


def causal_mask(t_q: int, t_k: int | None = None, device: torch.device | str | None = None) -> torch.Tensor:
    """(T_q, T_k) bool, True where query i may attend to key j, i.e. j <= i + (T_k - T_q).

    With T_q == T_k this is the lower triangle (``torch.ones(T, T).tril()``). With
    fewer queries than keys, the queries are the *last* T_q positions (bottom-right
    aligned), as in generation with cached keys. Note that
    ``scaled_dot_product_attention(..., is_causal=True)`` aligns top-left instead.
    """
    t_k = t_q if t_k is None else t_k
    if t_q < 1 or t_k < t_q:
        raise ValueError(f"causal_mask needs 1 <= T_q <= T_k, got T_q={t_q}, T_k={t_k}.")
    return torch.ones(t_q, t_k, dtype=torch.bool, device=device).tril(diagonal=t_k - t_q)


def attention_weights(q: torch.Tensor, k: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(Q Kᵀ / √d_k + bias) with masked scores set to -inf, written out (eq. 1 without V).

    q: (..., T_q, d_k); k: (..., T_k, d_k); attn_mask broadcastable to (..., T_q, T_k),
    as in ``F.scaled_dot_product_attention``: bool, True = may attend, or float, added
    to the scores (a position bias; -inf hides a key). Returns (..., T_q, T_k); each row sums to 1.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # Q Kᵀ / √d_k, (..., T_q, T_k)
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    elif attn_mask is not None:
        scores = scores + attn_mask
    return scores.softmax(dim=-1)


def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 1 materialising the (T_q, T_k) weights: the reference that the fused kernels beat.

    q: (..., T_q, d_k), k: (..., T_k, d_k), v: (..., T_k, d_v) -> (..., T_q, d_v).
    """
    return attention_weights(q, k, attn_mask) @ v


class MultiHeadAttention(nn.Module):
    """Multi-head attention (Vaswani et al. 2017, sec. 3.2.2) on ``scaled_dot_product_attention``.

    Self-attention: ``mha(x)``; cross-attention: ``mha(x, context)`` with queries from
    ``x`` and keys/values from ``context`` (e.g. the encoder's output, or text
    embeddings in latent diffusion), whose width may differ (``context_dim``).

    x: (B, T_q, d_model); context: (B, T_k, context_dim); returns (B, T_q, d_model).
    Parameters: ``q_proj`` (W^Q of all heads), ``kv_proj`` (W^K and W^V stacked),
    ``out_proj`` (W^O).

    Inside :func:`record_attention` the module also keeps its last attention
    weights, (B, H, T_q, T_k), in ``self.last_weights`` for figures.
    """

    def __init__(self, d_model: int, n_heads: int, context_dim: int | None = None,
                 dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if d_model < 1 or n_heads < 1 or d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be a positive multiple of n_heads ({n_heads}).")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.context_dim = context_dim or d_model
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)  # W^Q of all heads
        self.kv_proj = nn.Linear(self.context_dim, 2 * d_model, bias=bias)  # W^K and W^V
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)  # W^O
        self.record = False
        self.last_weights: torch.Tensor | None = None

    def split_heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        return t.view(b, n, self.n_heads, self.d_head).transpose(1, 2)  # (B, H, T, d_head)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, *,
                key_padding_mask: torch.Tensor | None = None, causal: bool = False,
                attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, T_q, C) -> (B, T_q, C). attn_bias: float, broadcastable to (B, H, T_q, T_k), added
        to the scores Q Kᵀ / √d_k before the softmax (e.g. ALiBi's distance penalty, Press et al. 2022).
        """
        check_tensor(x, "x", shape=("B", "T_q", self.d_model), dtype="floating")
        context = x if context is None else context
        b, t_q = x.shape[:2]
        check_tensor(context, "context", shape=(b, "T_k", self.context_dim), dtype="floating")
        t_k = context.shape[1]
        if causal and t_k < t_q:
            raise ValueError(f"causal attention needs at least as many keys as queries, got T_q={t_q}, T_k={t_k}.")
        q = self.split_heads(self.q_proj(x))  # (B, H, T_q, d_head)
        k, v = map(self.split_heads, self.kv_proj(context).chunk(2, dim=-1))  # (B, H, T_k, d_head) each

        mask = None  # bool, True = may attend (float once a bias is added), broadcast to (B, H, T_q, T_k)
        if key_padding_mask is not None:
            check_tensor(key_padding_mask, "key_padding_mask", shape=(b, t_k), dtype=torch.bool)
            mask = ~key_padding_mask[:, None, None, :]  # (B, 1, 1, T_k)
        if causal and (mask is not None or t_q != t_k or self.record):
            mask = causal_mask(t_q, t_k, x.device) if mask is None else mask & causal_mask(t_q, t_k, x.device)
        if attn_bias is not None:
            check_tensor(attn_bias, "attn_bias", dtype="floating")
            if attn_bias.dim() > 4 or not _broadcastable(attn_bias.shape, (b, self.n_heads, t_q, t_k)):
                raise ValueError(f"attn_bias of shape {tuple(attn_bias.shape)} does not broadcast to "
                                 f"(B, H, T_q, T_k) = {(b, self.n_heads, t_q, t_k)}.")
            if causal and mask is None:
                mask = causal_mask(t_q, t_k, x.device)
            bias = attn_bias.to(q.dtype)
            mask = bias if mask is None else torch.where(mask, bias, float("-inf"))
        use_is_causal = causal and mask is None  # lets SDPA pick its fused causal kernel

        if self.record:  # the explicit path, keeping the weights for figures
            weights = attention_weights(q, k, mask)
            self.last_weights = weights.detach()
            out = F.dropout(weights, self.dropout, self.training) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=use_is_causal,
                                                 dropout_p=self.dropout if self.training else 0.0)
        out = out.transpose(1, 2).reshape(b, t_q, self.d_model)  # Concat(head_1, ..., head_h), (B, T_q, C)
        return self.out_proj(out)  # ... W^O

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, n_heads={self.n_heads}, context_dim={self.context_dim}"


def _broadcastable(shape, target) -> bool:
    return all(a in (1, b) for a, b in zip(reversed(tuple(shape)), reversed(tuple(target))))


@contextlib.contextmanager
def record_attention(model: nn.Module):
    """Within the block, every :class:`MultiHeadAttention` in ``model`` keeps its weights.

    Yields a dict, filled when the block ends: module name -> (B, H, T_q, T_k) weights
    of the last call (e.g. ``"decoder.1.cross_attn"``)::

        with record_attention(model) as maps:
            model(src, tgt_in)
        maps["decoder.0.cross_attn"]
    """
    modules = {name: m for name, m in model.named_modules() if isinstance(m, MultiHeadAttention)}
    if not modules:
        raise ValueError(f"{type(model).__name__} contains no genbook MultiHeadAttention to record.")
    maps: dict[str, torch.Tensor] = {}
    for m in modules.values():
        m.record, m.last_weights = True, None
    try:
        yield maps
    finally:
        for name, m in modules.items():
            if m.last_weights is not None:
                maps[name] = m.last_weights
            m.record, m.last_weights = False, None


def sinusoidal_table(max_len: int, d_model: int) -> torch.Tensor:
    """The sinusoidal positional encodings of Vaswani et al. (2017, sec. 3.5), (max_len, d_model).

    PE(pos, 2i) = sin(pos / 10000^(2i/d_model)),  PE(pos, 2i+1) = cos(pos / 10000^(2i/d_model)).
    """
    if max_len < 1 or d_model < 2 or d_model % 2:
        raise ValueError(f"need max_len >= 1 and an even d_model >= 2, got max_len={max_len}, d_model={d_model}.")
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]  # (T, 1)
    inv_freq = 10000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)  # 1 / 10000^(2i/d)
    table = torch.empty(max_len, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * inv_freq)
    table[:, 1::2] = torch.cos(pos * inv_freq)
    return table.float()


class SinusoidalPositionalEncoding(nn.Module):
    """x + PE[:T] with the fixed sinusoidal table (no parameters). x: (B, T, d_model)."""

    def __init__(self, d_model: int, max_len: int = 1024):
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.register_buffer("table", sinusoidal_table(max_len, d_model), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor(x, "x", shape=("B", "T", self.d_model), dtype="floating")
        _check_length(x.shape[1], self.max_len)
        return x + self.table[: x.shape[1]]

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, max_len={self.max_len}"


class LearnedPositionalEncoding(nn.Module):
    """x + P[:T] with a learned (max_len, d_model) table, as in GPT and BERT. x: (B, T, d_model)."""

    def __init__(self, d_model: int, max_len: int = 1024):
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.weight = nn.Parameter(torch.randn(max_len, d_model) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor(x, "x", shape=("B", "T", self.d_model), dtype="floating")
        _check_length(x.shape[1], self.max_len)
        return x + self.weight[: x.shape[1]]

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, max_len={self.max_len}"


def positional_encoding(kind: str, d_model: int, max_len: int) -> nn.Module:
    """``"sinusoidal"`` or ``"learned"``."""
    kinds = {"sinusoidal": SinusoidalPositionalEncoding, "learned": LearnedPositionalEncoding}
    if kind not in kinds:
        raise ValueError(f"positional encoding must be one of {sorted(kinds)}, got {kind!r}.")
    return kinds[kind](d_model, max_len)


def _check_length(t: int, max_len: int) -> None:
    if t > max_len:
        raise ValueError(f"sequence of length {t} is longer than the positional encoding's max_len={max_len}; "
                         "build the model with a larger max_len (block_size) or crop the input.")
