"""DALL·E's transformer: one decoder over [text tokens; image tokens] (Ramesh et al. 2021, sec. 2.2).

A caption's BPE tokens (``text_len`` of them, padded) are followed by the image's
``grid[0] x grid[1]`` tokens from a discrete image tokenizer, read in raster order.
One stack of causal decoder blocks models the whole sequence,

    p(text, image) = Π_i p(t_i | t_<i) · Π_j p(z_j | text, z_<j),

so that text-to-image generation is language modelling: feed the caption, sample
the image tokens one by one. As in the paper:

* each modality has its own token embedding, and its own positions: learned
  vectors for the text positions, learned row + column vectors for the image grid;
* one output layer scores the joint vocabulary, text ids 0..V_t−1 followed by image
  ids V_t..V_t+V_i−1, and :func:`modality_logits_mask` restricts each position's logits
  to the vocabulary of the token it predicts (text after text, image after the caption).

Shapes: B batch, N = text_len + grid[0]·grid[1] tokens per example, C = d_model,
V = text_vocab + image_vocab. Inputs are joint-vocabulary ids.
"""

from __future__ import annotations

import torch
from torch import nn

from ..validation import check_tensor
from .transformer import DecoderBlock, KVCache


def modality_logits_mask(text_len: int, n_image_tokens: int, text_vocab: int, image_vocab: int) -> torch.Tensor:
    """(N − 1, V) bool, True where the logits at input position p may score vocabulary entry v.

    The logits at position p predict token p + 1: a text token while p + 1 < text_len
    (entries 0..text_vocab−1), an image token afterwards (entries text_vocab..V−1).
    """
    for name, value in (("text_len", text_len), ("n_image_tokens", n_image_tokens), ("text_vocab", text_vocab),
                        ("image_vocab", image_vocab)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")
    n = text_len + n_image_tokens
    predicts_text = torch.arange(1, n) < text_len  # (N − 1,): the modality of token p + 1
    is_text_entry = torch.arange(text_vocab + image_vocab) < text_vocab  # (V,)
    return predicts_text[:, None] == is_text_entry[None, :]


class TextImageTransformer(nn.Module):
    """A decoder-only transformer over [text; image] tokens, DALL·E-style (see the module docstring).

    tokens: (B, T) joint-vocabulary ids of positions start..start+T−1 (text ids < text_vocab
    at positions < text_len, image ids text_vocab.. afterwards) -> logits (B, T, V) for the
    next token, −inf outside the vocabulary of the modality it belongs to.
    """

    def __init__(self, text_vocab: int, image_vocab: int, text_len: int, grid: tuple[int, int],
                 d_model: int = 128, n_heads: int = 4, n_layers: int = 4, d_ff: int | None = None,
                 dropout: float = 0.0):
        super().__init__()
        grid = tuple(grid)
        if len(grid) != 2 or not all(isinstance(g, int) and not isinstance(g, bool) and g >= 1 for g in grid):
            raise ValueError(f"grid must be two positive ints (rows, columns), got {grid!r}.")
        mask = modality_logits_mask(text_len, grid[0] * grid[1], text_vocab, image_vocab)  # checks the ints
        self.text_vocab, self.image_vocab, self.text_len, self.grid = text_vocab, image_vocab, text_len, grid
        self.n_image_tokens = grid[0] * grid[1]
        self.seq_len = text_len + self.n_image_tokens  # N
        self.text_embed = nn.Embedding(text_vocab, d_model)
        self.image_embed = nn.Embedding(image_vocab, d_model)
        self.text_pos = nn.Parameter(torch.zeros(text_len, d_model))
        self.image_row = nn.Parameter(torch.zeros(grid[0], d_model))
        self.image_col = nn.Parameter(torch.zeros(grid[1], d_model))
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(DecoderBlock(d_model, n_heads, d_ff, dropout, norm_first=True,
                                                 cross_attention=False) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, text_vocab + image_vocab, bias=False)
        self.register_buffer("logits_mask", mask, persistent=False)  # (N − 1, V)
        for p in (self.text_embed.weight, self.image_embed.weight, self.text_pos, self.image_row, self.image_col):
            nn.init.normal_(p, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def positions(self) -> torch.Tensor:
        """(N, C): text position vectors, then row + column vectors of the image grid in raster order."""
        image = (self.image_row[:, None, :] + self.image_col[None, :, :]).reshape(self.n_image_tokens, -1)
        return torch.cat([self.text_pos, image])

    def embed(self, tokens: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Joint ids (B, T) at positions start.. -> (B, T, C), each modality through its own table."""
        t = tokens.shape[1]
        is_text = (torch.arange(start, start + t, device=tokens.device) < self.text_len)[None, :]  # (1, T)
        in_text = (tokens >= 0) & (tokens < self.text_vocab)
        in_image = (tokens >= self.text_vocab) & (tokens < self.text_vocab + self.image_vocab)
        bad = torch.where(is_text, ~in_text, ~in_image)
        if bool(bad.any()):
            b, p = (int(i) for i in bad.nonzero()[0])
            kind, lo, hi = (("a text", 0, self.text_vocab) if start + p < self.text_len
                            else ("an image", self.text_vocab, self.text_vocab + self.image_vocab))
            raise ValueError(f"tokens[{b}, {p}] = {int(tokens[b, p])} is at position {start + p}, {kind} "
                             f"position, so it must lie in {lo}..{hi - 1} (joint ids: text first, then image).")
        text = self.text_embed(tokens.clamp(max=self.text_vocab - 1))
        image = self.image_embed((tokens - self.text_vocab).clamp(min=0))
        return torch.where(is_text[..., None], text, image) + self.positions()[start:start + t]

    def forward(self, tokens: torch.Tensor, *, cache: KVCache | None = None) -> torch.Tensor:
        """tokens (B, T) -> masked logits (B, T, V). With ``cache`` the tokens continue the cached positions."""
        check_tensor(tokens, "tokens", shape=("B", "T"), dtype=torch.long)
        start = 0 if cache is None else cache.length
        if start + tokens.shape[1] > self.seq_len - 1:
            raise ValueError(f"tokens of positions {start}..{start + tokens.shape[1] - 1} do not fit: the model "
                             f"reads at most N - 1 = {self.seq_len - 1} positions (the last token is only predicted).")
        self._check_cache(cache, len(tokens))
        logits = self.head(self.hidden(tokens, start, cache))  # (B, T, V)
        allowed = self.logits_mask[start:start + tokens.shape[1]]  # (T, V)
        return logits.masked_fill(~allowed, float("-inf"))

    def next_image_logits(self, tokens: torch.Tensor, *, cache: KVCache | None = None) -> torch.Tensor:
        """tokens (B, T) -> (B, V_i) logits of the image token after the last one, image ids from 0.

        For sampling: ``forward``'s logits at the last position, image entries only (the rest are
        masked there), without scoring the text vocabulary or the earlier positions. With ``cache``
        the tokens continue the cached positions, as in ``forward``.
        """
        check_tensor(tokens, "tokens", shape=("B", "T"), dtype=torch.long)
        start = 0 if cache is None else cache.length
        end = start + tokens.shape[1]  # the position of the predicted token
        if not self.text_len <= end <= self.seq_len - 1:
            raise ValueError(f"tokens of positions {start}..{end - 1} predict the token at position {end}; an image "
                             f"token needs {self.text_len} <= position <= {self.seq_len - 1}.")
        self._check_cache(cache, len(tokens))
        h = self.hidden(tokens, start, cache)[:, -1]  # (B, C)
        return h @ self.head.weight[self.text_vocab:].T  # (B, V_i)

    def _check_cache(self, cache: KVCache | None, batch_size: int) -> None:
        if cache is not None and (len(cache) != len(self.blocks) or cache.batch_size != batch_size):
            raise ValueError(f"cache is for {len(cache)} layers and batch {cache.batch_size}; the model has "
                             f"{len(self.blocks)} layers and tokens a batch of {batch_size}: use new_cache(B).")

    def hidden(self, tokens: torch.Tensor, start: int = 0, cache: KVCache | None = None) -> torch.Tensor:
        """tokens (B, T) at positions start.. -> the final normalized hidden states (B, T, C)."""
        h = self.drop(self.embed(tokens, start))  # (B, T, C)
        for i, block in enumerate(self.blocks):
            h = block(h, cache=None if cache is None else cache[i])
        return self.norm(h)

    def logits_by_modality(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole sequences less their last token, (B, N − 1) joint ids -> (text logits (B, text_len − 1, V_t),
        image logits (B, n_image_tokens, V_i)).

        The entries of ``forward``'s logits that the mask allows, split by modality and computed
        without the masked ones (each position scores only its own vocabulary, not the joint one).
        Their log-softmax equals ``forward``'s; the class ids are each
        vocabulary's own (image ids start at 0). Meant for training.
        """
        check_tensor(tokens, "tokens", shape=("B", self.seq_len - 1), dtype=torch.long)
        h = self.hidden(tokens)  # (B, N − 1, C)
        split = self.text_len - 1  # positions 0..text_len − 2 predict text tokens 1..text_len − 1
        text_logits = h[:, :split] @ self.head.weight[:self.text_vocab].T  # (B, text_len − 1, V_t)
        image_logits = h[:, split:] @ self.head.weight[self.text_vocab:].T  # (B, n_image_tokens, V_i)
        return text_logits, image_logits

    def new_cache(self, batch_size: int) -> KVCache:
        """An empty :class:`KVCache` for ``batch_size`` sequences (N − 1 positions)."""
        weight = self.head.weight
        return KVCache.for_blocks(self.blocks, batch_size, self.seq_len - 1, weight.device, weight.dtype)
