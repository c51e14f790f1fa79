"""The UNet that predicts noise (or a score, or a velocity) in chapters 05 to 08.

Ronneberger, Fischer & Brox (2015), "U-Net: Convolutional Networks for Biomedical
Image Segmentation": an encoder that halves the resolution level by level, a
decoder that doubles it back, and skip connections that hand each decoder level
the encoder's features at the same resolution. Ho, Jain & Abbeel (2020, sec. 4
and appendix B) made it the network of diffusion models by adding

* a **time embedding**: the timestep t, written in sinusoids of geometric
  frequencies (Vaswani et al. 2017, sec. 3.5) and passed through an MLP, is
  added to the features of every residual block, so one network serves all t;
* **residual blocks** (He et al. 2016) with **group normalisation** (Wu & He 2018),
  which, unlike batch norm, does not couple the samples of a batch;
* **self-attention** at the lowest resolution (here 7×7 = 49 positions), so
  that distant parts of the image can agree (a sleeve with the other sleeve).

The optional ``num_classes`` adds a learned class embedding to the time
embedding (class-conditional models, classifier-free guidance in chapter 08);
class ``num_classes`` is reserved for "no label", which is also what
``forward(x, t)`` without ``y`` uses.

The optional ``context_dim`` adds **cross-attention** to a sequence of context
tokens (text embeddings) after every residual block of the chosen levels, as in
latent diffusion (Rombach et al. 2022, sec. 3.3): queries from the image
features, keys and values from the tokens, softmax(Q Kᵀ / √d) V (Vaswani et al.
2017, eq. 1). A UNet built without it has exactly the parameters it had before.

Shapes: ``forward(x, t, y=None, context=None, context_padding_mask=None)`` takes
x (B, C, H, W) with H and W divisible by 2^(levels − 1), t (B,) (or a scalar,
broadcast), y (B,) int64, context (B, T, context_dim) and context_padding_mask
(B, T) bool (True marks padding); it returns (B, C_out, H, W).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import check_tensor
from .attention import MultiHeadAttention


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of (real-valued) timesteps t (B,) -> (B, dim).

    emb(t)_i = sin(t ω_i) for i < dim/2 and cos(t ω_{i − dim/2}) after, with
    ω_i = max_period^(−i / (dim/2)): the positional encoding of Vaswani et al.
    (2017) evaluated at position t, as in Ho et al. (2020).
    """
    check_tensor(t, "t", shape=("B",))
    if dim < 2 or dim % 2:
        raise ValueError(f"dim must be an even number >= 2, got {dim}.")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]  # (B, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def _groups(channels: int, groups: int) -> int:
    """The largest divisor of ``channels`` that is at most ``groups`` (GroupNorm needs one)."""
    return math.gcd(channels, groups)


class ResidualBlock(nn.Module):
    """h = conv(SiLU(GN(x))); inject emb; h = conv(dropout(SiLU(GN(h)))); return skip(x) + h.

    x: (B, C_in, H, W), emb: (B, emb_dim) -> (B, C_out, H, W). The embedding is injected
    as a per-channel bias, h + Linear(emb) (Ho et al. 2020), or with ``scale_shift=True`` as
    GN(h) · (1 + scale) + shift before the second convolution (Nichol & Dhariwal 2021's
    "AdaGN"). The second convolution starts at zero, so a new block is the identity map
    (plus the 1×1 skip).
    """

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, groups: int = 8, dropout: float = 0.0,
                 scale_shift: bool = True):
        super().__init__()
        self.scale_shift = scale_shift
        self.norm1 = nn.GroupNorm(_groups(in_channels, groups), in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_channels if scale_shift else out_channels)
        self.norm2 = nn.GroupNorm(_groups(out_channels, groups), out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C_out, H, W)
        e = self.emb(emb)[:, :, None, None]  # (B, C_out or 2 C_out, 1, 1)
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift  # time (and class) modulate the normalised features
        else:
            h = self.norm2(h + e)  # time (and class) injected as a per-channel bias
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class SelfAttention2d(nn.Module):
    """Multi-head self-attention over the H·W positions of a feature map, with a residual connection.

    x: (B, C, H, W) -> (B, C, H, W). softmax(Q Kᵀ / √d) V (Vaswani et al. 2017, eq. 1) is computed
    by ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels on a GPU).
    """

    def __init__(self, channels: int, heads: int = 4, groups: int = 8):
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads}).")
        self.heads = heads
        self.norm = nn.GroupNorm(_groups(channels, groups), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)  # (B, 3, heads, d, HW)
        q, k, v = (z.contiguous() for z in qkv.transpose(-1, -2).unbind(1))  # each (B, heads, HW, d)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, d)
        return x + self.out(out.transpose(-1, -2).reshape(b, c, h, w))


class CrossAttention2d(nn.Module):
    """Cross-attention from the H·W positions of a feature map to T context tokens, with a residual.

    x: (B, C, H, W), context: (B, T, context_dim), padding_mask: (B, T) bool, True = padding
    -> (B, C, H, W). Q = GN(x) W^Q (each position a query), K = context W^K, V = context W^V;
    softmax(Q Kᵀ / √d) V per head (Vaswani et al. 2017, eq. 1), W^O, added to x. The attention
    is genbook's :class:`~genbook.nn.attention.MultiHeadAttention` (``self.attn``), so
    :func:`~genbook.nn.attention.record_attention` returns its maps, (B, heads, H·W, T).
    W^O starts at zero: a new block is the identity (Rombach et al. 2022's ``proj_out``).
    """

    def __init__(self, channels: int, context_dim: int, heads: int = 4, groups: int = 8):
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads}).")
        self.channels, self.context_dim = channels, context_dim
        self.norm = nn.GroupNorm(_groups(channels, groups), channels)
        self.attn = MultiHeadAttention(channels, heads, context_dim=context_dim)
        nn.init.zeros_(self.attn.out_proj.weight)
        nn.init.zeros_(self.attn.out_proj.bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor,
                padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        queries = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C): one query per position
        out = self.attn(queries, context, key_padding_mask=padding_mask)  # (B, HW, C)
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class Downsample(nn.Module):
    """Halve H and W with a stride-2 3×3 convolution. (B, C, H, W) -> (B, C, H/2, W/2)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour upsampling, then a 3×3 convolution. (B, C, H, W) -> (B, C, 2H, 2W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """The diffusion UNet of Ho et al. (2020), small enough for a CPU at the book's fast profile.

    in_channels: channels of the images (1 for Fashion-MNIST).
    channels: feature channels per resolution level, e.g. (32, 64, 64): level i works at
        H / 2^i; with L levels, H and W must be divisible by 2^(L − 1) (28 -> 14 -> 7 for 3 levels).
    blocks: residual blocks per level on the way down (the way up has one more, as in Ho et al.).
    attention: self-attention in the middle block, at the lowest resolution.
    heads: attention heads; groups: GroupNorm groups (reduced to a divisor of the channels).
    time_scale: t is multiplied by this before the sinusoidal embedding: 1 for integer
        timesteps 0..T−1 (chapter 05), about 1000 for continuous t in [0, 1] (chapters 06, 07).
    num_classes: None for an unconditional model; otherwise y in 0..num_classes − 1 selects a
        learned class embedding, and y = num_classes (or no y) means "unconditional".
    out_channels: defaults to in_channels (ε, score or velocity have the image's shape).
    scale_shift: inject the embedding as GroupNorm scale and shift (AdaGN, Nichol & Dhariwal 2021) instead
        of as a bias added to the features (Ho et al. 2020).
    patch_size: p > 1 folds each p×p patch of pixels into channels first (``pixel_unshuffle``, as the
        patches of a ViT or DiT) and unfolds the output at the end: the network then runs at H/p,
        which on a CPU costs about p² times less. H and W must then be divisible by p · 2^(L − 1).
    context_dim: None (no text); otherwise the width of the context tokens that ``forward`` then
        requires, attended to by a :class:`CrossAttention2d` after every residual block of the
        levels in ``cross_attention_levels`` (default: every level; the middle block counts as the
        last level).
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: Sequence[int] = (32, 64, 64),
        blocks: int = 1,
        attention: bool = True,
        heads: int = 4,
        groups: int = 8,
        dropout: float = 0.0,
        time_scale: float = 1.0,
        num_classes: int | None = None,
        out_channels: int | None = None,
        patch_size: int = 1,
        scale_shift: bool = True,
        context_dim: int | None = None,
        cross_attention_levels: Sequence[int] | None = None,
    ):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if not channels or any(c < 1 for c in channels):
            raise ValueError(f"channels must be a non-empty sequence of positive ints, got {channels}.")
        if blocks < 1:
            raise ValueError(f"blocks must be >= 1, got {blocks}.")
        if patch_size < 1:
            raise ValueError(f"patch_size must be >= 1, got {patch_size}.")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be None or a positive int, got {num_classes}.")
        if context_dim is not None and (isinstance(context_dim, bool) or not isinstance(context_dim, int)
                                        or context_dim < 1):
            raise ValueError(f"context_dim must be None or a positive int, got {context_dim!r}.")
        if cross_attention_levels is not None and context_dim is None:
            raise ValueError("cross_attention_levels was given but context_dim is None: set context_dim=... "
                             "(the width of the context tokens) to add cross-attention.")
        xattn_levels = set(range(len(channels))) if cross_attention_levels is None else set(cross_attention_levels)
        if context_dim is not None and not xattn_levels <= set(range(len(channels))):
            raise ValueError(f"cross_attention_levels must be level indices in 0..{len(channels) - 1}, "
                             f"got {sorted(xattn_levels)}.")
        self.in_channels = in_channels
        self.out_channels = out_channels or in_channels
        self.channels = channels
        self.levels = len(channels)
        self.time_scale = float(time_scale)
        self.num_classes = num_classes
        self.patch_size = patch_size
        self.context_dim = context_dim
        self.cross_attention_levels = tuple(sorted(xattn_levels)) if context_dim is not None else ()
        self.base = channels[0]
        emb_dim = 4 * channels[0]
        self.emb_dim = emb_dim

        # time embedding: sinusoids -> MLP (Ho et al. 2020, appendix B)
        self.time_mlp = nn.Sequential(nn.Linear(channels[0], emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        # class embedding (+1 row: the "no label" token of classifier-free guidance)
        self.class_emb = nn.Embedding(num_classes + 1, emb_dim) if num_classes is not None else None

        def res(cin: int, cout: int) -> ResidualBlock:
            return ResidualBlock(cin, cout, emb_dim, groups, dropout, scale_shift)

        def xattn(level: int, width: int) -> CrossAttention2d | None:
            if level in self.cross_attention_levels:
                return CrossAttention2d(width, context_dim, heads, groups)
            return None

        # cross-attention after a residual block, keyed by the block's index in `down` / `up`
        # (separate containers, so that a UNet without context keeps its parameter names)
        self.down_xattn, self.up_xattn = nn.ModuleDict(), nn.ModuleDict()

        self.stem = nn.Conv2d(in_channels * patch_size**2, channels[0], 3, padding=1)
        # down path: `blocks` residual blocks per level, then halve the resolution (not after the last level)
        self.down = nn.ModuleList()
        skip_channels = [channels[0]]
        c = channels[0]
        for level, width in enumerate(channels):
            for _ in range(blocks):
                self.down.append(res(c, width))
                if (block := xattn(level, width)) is not None:
                    self.down_xattn[str(len(self.down) - 1)] = block
                c = width
                skip_channels.append(c)
            if level < self.levels - 1:
                self.down.append(Downsample(c))
                skip_channels.append(c)
        # middle, at the lowest resolution: residual block, self-attention, residual block
        self.mid1 = res(c, c)
        self.mid_attn = SelfAttention2d(c, heads, groups) if attention else nn.Identity()
        self.mid_xattn = xattn(self.levels - 1, c)
        self.mid2 = res(c, c)
        # up path: `blocks + 1` residual blocks per level, each eating one skip; then double the resolution
        self.up = nn.ModuleList()
        for level in reversed(range(self.levels)):
            width = channels[level]
            for _ in range(blocks + 1):
                self.up.append(res(c + skip_channels.pop(), width))
                if (block := xattn(level, width)) is not None:
                    self.up_xattn[str(len(self.up) - 1)] = block
                c = width
            if level > 0:
                self.up.append(Upsample(c))
        self.out_norm = nn.GroupNorm(_groups(c, groups), c)
        self.out_conv = nn.Conv2d(c, self.out_channels * patch_size**2, 3, padding=1)
        nn.init.zeros_(self.out_conv.weight)  # the untrained network predicts 0
        nn.init.zeros_(self.out_conv.bias)

    def embed(self, t: torch.Tensor, y: torch.Tensor | None, batch: int) -> torch.Tensor:
        """The (B, emb_dim) vector added in every residual block: MLP(sinusoids(t)) [+ class embedding]."""
        emb = self.time_mlp(timestep_embedding(t * self.time_scale, self.base))
        if self.class_emb is not None:
            if y is None:
                y = torch.full((batch,), self.num_classes, dtype=torch.long, device=t.device)
            emb = emb + self.class_emb(y)
        return emb

    def forward(self, x: torch.Tensor, t: torch.Tensor | float, y: torch.Tensor | None = None,
                context: torch.Tensor | None = None, context_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, H, W), t (B,) or scalar, y (B,) int64 or None, context (B, T, context_dim) or None,
        context_padding_mask (B, T) bool (True = padding) or None -> (B, C_out, H, W)."""
        check_tensor(x, "x", shape=("B", self.in_channels, "H", "W"), dtype="floating")
        b, _, h, w = x.shape
        factor = self.patch_size * 2 ** (self.levels - 1)
        if h % factor or w % factor:
            raise ValueError(f"x's height and width must be divisible by patch_size * 2^(levels - 1) = {factor} "
                             f"for this UNet ({self.levels} levels, patch_size {self.patch_size}), got {h}x{w}. "
                             "Pad the images, or use fewer levels or a smaller patch.")
        if not torch.is_tensor(t):
            t = torch.tensor(float(t), device=x.device)
        if t.dim() == 0:
            t = t.expand(b)
        check_tensor(t, "t", shape=(b,))
        if y is not None:
            if self.num_classes is None:
                raise ValueError("y was given but this UNet is unconditional: build it with num_classes=... .")
            check_tensor(y, "y", shape=(b,), dtype=torch.int64)
        self._check_context(context, context_padding_mask, b)
        emb = self.embed(t.to(x.device), y, b)  # (B, emb_dim)

        def cross(block: CrossAttention2d | None, h: torch.Tensor) -> torch.Tensor:
            return h if block is None else block(h, context, context_padding_mask)

        if self.patch_size > 1:
            x = F.pixel_unshuffle(x, self.patch_size)  # (B, C p², H/p, W/p)
        h = self.stem(x)  # (B, c0, H/p, W/p)
        skips = [h]
        for i, layer in enumerate(self.down):
            h = cross(_get(self.down_xattn, i), layer(h, emb)) if isinstance(layer, ResidualBlock) else layer(h)
            skips.append(h)
        h = self.mid2(cross(self.mid_xattn, self.mid_attn(self.mid1(h, emb))), emb)  # (B, c_last, H/2^(L-1), ...)
        for i, layer in enumerate(self.up):
            if isinstance(layer, ResidualBlock):
                h = cross(_get(self.up_xattn, i), layer(torch.cat([h, skips.pop()], dim=1), emb))
            else:
                h = layer(h)
        out = self.out_conv(F.silu(self.out_norm(h)))  # (B, C_out p², H/p, W/p)
        return F.pixel_shuffle(out, self.patch_size) if self.patch_size > 1 else out  # (B, C_out, H, W)


    def _check_context(self, context, padding_mask, b: int) -> None:
        if self.context_dim is None:
            if context is not None or padding_mask is not None:
                raise ValueError("context was given but this UNet has no cross-attention: build it with "
                                 "context_dim=... (the width of the context tokens).")
            return
        if context is None:
            raise ValueError(f"this UNet attends to context tokens (context_dim={self.context_dim}): pass "
                             f"context of shape (B, T, {self.context_dim}), e.g. a text encoder's output "
                             "(an empty caption's for the unconditional model).")
        check_tensor(context, "context", shape=(b, "T", self.context_dim), dtype="floating")
        if padding_mask is not None:
            check_tensor(padding_mask, "context_padding_mask", shape=(b, context.shape[1]), dtype=torch.bool)
            if padding_mask.device.type == "cpu" and padding_mask.all(1).any():  # no GPU sync per step
                raise ValueError("context_padding_mask hides every token of some sequence (True marks padding): "
                                 "each caption needs at least one token to attend to.")


def _get(blocks: nn.ModuleDict, index: int) -> nn.Module | None:
    return blocks[str(index)] if str(index) in blocks else None


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
