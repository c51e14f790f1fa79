"""Neural-network parts shared by the chapters: attention, positional encodings, transformers.

Written and explained in chapter 01 (patches in chapter 02); reused by BERT and ViT (02), the VQ-VAE prior (03),
latent diffusion's cross-attention (08) and DALL·E (09).
"""

from .attention import (
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
from .patches import patchify, unpatchify
from .transformer import (
    GPT,
    DecoderBlock,
    EncoderBlock,
    EncoderDecoder,
    TokenEmbedding,
    count_parameters,
    feed_forward,
    top_k_filter,
)

__all__ = [
    "GPT", "DecoderBlock", "EncoderBlock", "EncoderDecoder", "LearnedPositionalEncoding", "MultiHeadAttention",
    "SinusoidalPositionalEncoding", "TokenEmbedding", "attention_weights", "causal_mask", "count_parameters",
    "feed_forward", "naive_attention", "patchify", "positional_encoding", "record_attention", "sinusoidal_table",
    "top_k_filter", "unpatchify",
]
