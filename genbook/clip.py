"""CLIP: an image encoder and a text encoder trained to agree (Radford et al. 2021, "Learning
Transferable Visual Models From Natural Language Supervision", arXiv:2103.00020).

Both encoders map into one space of unit vectors; the similarity of image i and text j is
the scaled cosine s_ij = exp(τ) · ⟨f(x_i), g(y_j)⟩ with a learned log-scale τ (the paper's
learned temperature, initialised at 1/0.07 and clipped at 100). The loss is the symmetric
cross-entropy of Figure 3: each image should pick its own caption among the batch's
captions, and each caption its own image.

Captions repeat in a batch of the captioned shapes ("a red circle above a blue star" can
describe many images), and two copies of one caption are the same text: their columns of
s are identical, so no model can tell them apart, and two images of one caption are both
right for it. :func:`contrastive_loss` therefore takes ``groups`` (equal ids = equal
captions) and counts the probability of every positive pair as correct: −log of the sum
over the positives (``groups=None`` is the paper's one-hot version).

Shapes: B batch, E embedding width, L caption length.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .nn.transformer import EncoderBlock
from .validation import check_tensor


def positive_pairs(groups: torch.Tensor) -> torch.Tensor:
    """(B,) group ids -> (B, B) bool, True where example i and caption j have the same group."""
    check_tensor(groups, "groups", shape=("B",), dtype=torch.long)
    return groups[:, None] == groups[None, :]


def contrastive_loss(logits: torch.Tensor, groups: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE of CLIP (Radford et al. 2021, Figure 3) with repeated captions as positives.

    logits: (B, B), logits[i, j] = scaled similarity of image i and caption j (the pairs on
    the diagonal belong together). groups: (B,) int64, equal where captions are equal, or None
    (all distinct). With P_i = {j : groups[j] = groups[i]}, image i's term is
    −log Σ_{j ∈ P_i} softmax_j(logits[i, :]), the probability it gives to any caption of its
    group; caption j's term is the same over column j. The loss is the mean of the two
    directions' means; with all captions distinct it is the paper's cross-entropy.
    """
    check_tensor(logits, "logits", shape=("B", "B"), dtype="floating")
    b = logits.shape[0]
    if logits.shape[1] != b:
        raise ValueError(f"logits must have shape (B, B), one row per image and one column per caption of the "
                         f"same batch, got {tuple(logits.shape)}.")
    if groups is None:
        positive = torch.eye(b, dtype=torch.bool, device=logits.device)
    else:
        check_tensor(groups, "groups", dtype=torch.long)
        if tuple(groups.shape) != (b,):
            raise ValueError(f"groups must have shape (B,) = ({b},) like the logits, got {tuple(groups.shape)}.")
        positive = positive_pairs(groups.to(logits.device))
    hidden = torch.full_like(logits, float("-inf"))
    on_positives = torch.where(positive, logits, hidden)  # the positives' logits, -inf elsewhere
    image_to_text = (logits.logsumexp(1) - on_positives.logsumexp(1)).mean()  # -log Σ_{j∈P_i} p(j | image i)
    text_to_image = (logits.logsumexp(0) - on_positives.logsumexp(0)).mean()  # -log Σ_{i∈P_j} p(i | caption j)
    return (image_to_text + text_to_image) / 2


class ImageEncoder(nn.Module):
    """A small CNN for 32x32 RGB: three stride-2 convolutions, then a linear layer (no pooling, so
    it keeps where things are). (B, 3, 32, 32) -> (B, E), not normalised."""

    def __init__(self, embed_dim: int = 64, width: int = 32, image_size: int = 32):
        super().__init__()
        if image_size % 8:
            raise ValueError(f"image_size must be a multiple of 8, got {image_size!r}.")
        w, side = width, image_size // 8
        self.image_size = image_size
        self.net = nn.Sequential(
            nn.Conv2d(3, w, 3, stride=2, padding=1), nn.GELU(),  # (B, w, 16, 16)
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.GELU(),  # (B, 2w, 8, 8)
            nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1), nn.GELU(),  # (B, 2w, 4, 4)
            nn.Flatten(), nn.Linear(2 * w * side * side, embed_dim),
        )  # fmt: skip

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_tensor(images, "images", shape=("B", 3, self.image_size, self.image_size), dtype="floating")
        return self.net(images)


class TextEncoder(nn.Module):
    """Token embeddings + learned positions, bidirectional encoder blocks, the mean over real
    (non-padding) tokens, a linear layer. ids (B, L) int64, ``pad_id`` marks padding -> (B, E)."""

    def __init__(self, vocab_size: int, max_len: int, pad_id: int, embed_dim: int = 64, d_model: int = 64,
                 n_heads: int = 4, n_layers: int = 2):
        super().__init__()
        if not 0 <= pad_id < vocab_size:
            raise ValueError(f"pad_id must lie in 0..{vocab_size - 1}, got {pad_id!r}.")
        self.vocab_size, self.max_len, self.pad_id = vocab_size, max_len, pad_id
        self.tokens = nn.Embedding(vocab_size, d_model)
        self.positions = nn.Parameter(torch.randn(max_len, d_model) * 0.02)
        self.blocks = nn.ModuleList(EncoderBlock(d_model, n_heads) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.proj = nn.Linear(d_model, embed_dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        check_tensor(ids, "ids", shape=("B", "L"), dtype=torch.long)
        if ids.shape[1] > self.max_len:
            raise ValueError(f"captions of {ids.shape[1]} tokens exceed max_len={self.max_len}.")
        if bool(((ids < 0) | (ids >= self.vocab_size)).any()):
            raise ValueError(f"ids must lie in 0..{self.vocab_size - 1}, got values in "
                             f"[{int(ids.min())}, {int(ids.max())}].")
        padding = ids == self.pad_id  # (B, L)
        if bool(padding.all(1).any()):
            raise ValueError("every caption needs at least one token that is not padding.")
        h = self.tokens(ids) + self.positions[: ids.shape[1]]  # (B, L, d)
        for block in self.blocks:
            h = block(h, key_padding_mask=padding)
        h = self.norm(h)
        real = (~padding).unsqueeze(-1).to(h.dtype)  # (B, L, 1)
        return self.proj((h * real).sum(1) / real.sum(1))  # mean over the caption's tokens, (B, E)


class CLIP(nn.Module):
    """Two encoders into one space and a learned temperature (Radford et al. 2021, Figure 3).

    ``model(images, ids)`` -> logits (B_images, B_texts) = exp(τ) · I_e T_eᵀ with I_e, T_e the
    L2-normalised embeddings; exp(τ) starts at 1/0.07 and is clipped at 100 as in the paper.
    """

    def __init__(self, image_encoder: nn.Module, text_encoder: nn.Module, init_temperature: float = 0.07,
                 max_scale: float = 100.0):
        super().__init__()
        if not (0 < init_temperature and 1 / init_temperature <= max_scale):
            raise ValueError(f"need 0 < init_temperature and 1 / init_temperature <= max_scale, got "
                             f"{init_temperature!r} and {max_scale!r}.")
        self.image_encoder, self.text_encoder = image_encoder, text_encoder
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / init_temperature)))  # τ
        self.max_log_scale = math.log(max_scale)

    @property
    def scale(self) -> torch.Tensor:
        """exp(τ), clipped at max_scale."""
        return self.log_scale.clamp(max=self.max_log_scale).exp()

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_encoder(images), dim=-1)  # (B, E), unit vectors

    def encode_texts(self, ids: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_encoder(ids), dim=-1)  # (B, E), unit vectors

    def forward(self, images: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return self.scale * self.encode_images(images) @ self.encode_texts(ids).T  # (B_images, B_texts)
