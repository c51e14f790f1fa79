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
# # DALL·E: text and image tokens in one transformer
#
# Chapter 01 trained a GPT to continue text. DALL·E (Ramesh et al., 2021) makes
# text-to-image generation the same problem: turn an image into a short sequence
# of discrete tokens, write the caption's tokens in front of it, and train one
# decoder-only transformer to predict the whole sequence, one token after the
# other. To draw a picture of a caption, feed the caption and sample the image
# tokens. A second model, CLIP (Radford et al., 2021), trained to tell which
# caption belongs to which image, then picks the best of several drawings.
#
# We build every part on the captioned shapes of genbook ("a small red circle in
# the top left", "a blue square above a green star"), where an evaluator reads
# exactly what an image shows, so that *caption adherence* (the fraction of the
# facts a caption states that the image shows) measures each stage:
#
# 1. **stage 1, image tokens**: a discrete autoencoder turns a 32×32 image into
#    an 8×8 grid of tokens; its reconstructions bound everything downstream;
# 2. **text tokens**: byte-pair encoding (Sennrich et al., 2016) of the captions;
# 3. **stage 2, one transformer** over [text; image] tokens, with its loss split
#    into a text and an image term; does the caption carry information?
# 4. **sampling** with temperature, top-k and **classifier-free guidance**, made
#    fast by a **KV cache**;
# 5. **CLIP**, trained here, and zero-shot retrieval;
# 6. **reranking**: draw N images per caption, keep the one CLIP likes best; and
#    how much of its gain guidance already takes;
# 7. what came **after DALL·E**.

# %%
import math
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

import genbook
from genbook.clip import CLIP, ImageEncoder, TextEncoder, contrastive_loss
from genbook.data.shapes import SIZES, make_shapes
from genbook.data.tokenizers import train_bpe
from genbook.diffusion.guidance import drop_condition
from genbook.exercises.dalle import contrastive_loss_by_loops
from genbook.metrics.shapes_evaluator import (
    attribute_accuracies,
    caption_agreement,
    cell_targets,
    parse_caption,
    shapes_evaluator,
)
from genbook.nn import count_parameters
from genbook.nn.autoencoder import ConvDecoder, ConvEncoder
from genbook.nn.dalle import TextImageTransformer, modality_logits_mask
from genbook.quantize import FSQ, codebook_usage

cfg = genbook.profile(
    fast=dict(
        data=dict(n_train=20_000, n_test=1000, train_seed=91, test_seed=92),
        tokenizer=dict(levels=[8, 6, 5], widths=[16, 32], steps=2600, batch_size=8, lr=1e-2, warmup=100,
                       shape_weight=10.0, edge_weight=10.0, n_train=10_000),
        bpe=dict(vocab_size=400),
        transformer=dict(d_model=64, n_heads=4, n_layers=2, steps=1150, batch_size=32, lr=2e-2, warmup=60,
                         text_weight=1 / 8, p_uncond=0.1, seed=2),
        clip=dict(embed_dim=64, width=32, d_model=64, n_layers=2, steps=150, batch_size=128, lr=2e-3, warmup=15),
        sampling=dict(n_captions=200, rerank_n=16, n_speed=32, n_validation=40, validation_n=8,
                      candidates=[[1.0, 16, 1.0], [1.2, 16, 1.0], [1.0, 16, 1.5], [1.0, 16, 2.0], [1.0, 16, 3.0]]),
        # candidates: (temperature, top-k, guidance scale g); g = 1 is no guidance
    ),
    full=dict(
        data=dict(n_train=200_000, n_test=5000, train_seed=91, test_seed=92),
        tokenizer=dict(levels=[8, 5, 5, 5], widths=[64, 128], steps=20_000, batch_size=128, lr=1e-3, warmup=500,
                       shape_weight=10.0, edge_weight=30.0, n_train=200_000),
        bpe=dict(vocab_size=400),
        transformer=dict(d_model=256, n_heads=8, n_layers=8, steps=30_000, batch_size=128, lr=1e-3, warmup=1000,
                         text_weight=1 / 8, p_uncond=0.1, seed=2),
        clip=dict(embed_dim=128, width=64, d_model=128, n_layers=4, steps=5000, batch_size=512, lr=1e-3, warmup=200),
        sampling=dict(n_captions=500, rerank_n=32, n_speed=128, n_validation=200, validation_n=8,
                      candidates=[[1.0, None, 1.0], [1.0, 32, 1.0], [1.0, 16, 1.0], [1.2, 16, 1.0], [1.0, 16, 1.5],
                                  [1.0, 16, 2.0], [1.0, 16, 3.0]]),
    ),
)
device = genbook.device()
chapter_started = time.perf_counter()
print("profile:", genbook.profile_name(), "| device:", device)

# %% [markdown]
# ## The data and the judge
#
# Each image holds one or two shapes, each in a cell of a 3×3 grid, and its
# caption states count, colours, shapes and either size and position (one shape)
# or the relation between the two. genbook's evaluator, a small CNN trained on
# freshly drawn shapes, reads an image cell by cell; on real images with their
# own captions it agrees with nearly every fact, and on real images with someone
# else's caption with far fewer. These two numbers frame every adherence below.

# %%
D = cfg["data"]
train = make_shapes(D["n_train"], seed=D["train_seed"])
test = make_shapes(D["n_test"], seed=D["test_seed"])
evaluator = shapes_evaluator(device)
shuffle = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))
real_adherence = caption_agreement(test.images, test.captions, evaluator=evaluator)["adherence"]
wrong_caption_adherence = caption_agreement(test.images, [test.captions[i] for i in shuffle],
                                            evaluator=evaluator)["adherence"]
print(f"{len(train):,} training and {len(test):,} held-out images; "
      f"{len(set(train.captions)):,} distinct training captions")
print(f"adherence of real images to their own captions: {real_adherence:.3f}; to shuffled captions: "
      f"{wrong_caption_adherence:.3f}")
background_fraction = (train.images[:1000] <= -0.9).all(1).float().mean().item()  # black in every channel
print(f"background pixels: {background_fraction:.1%}")
fig, axes = plt.subplots(1, 6, figsize=(13, 2.6))
for ax, i in zip(axes, range(6)):
    ax.imshow((test.images[i].permute(1, 2, 0) + 1) / 2)
    ax.set_title(test.captions[i].replace(" in the", "\nin the").replace(" a ", "\na ", 1), fontsize=8)
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 1. Stage 1: image tokens
#
# A transformer predicts tokens from a vocabulary, so an image must become a
# short sequence of them. Raw pixels would do (ImageGPT reads a 32×32 image as
# 1,024 colour-palette tokens, Chen et al., 2020), but attention's cost grows
# with the square of the length. DALL·E first trains a **discrete autoencoder**
# that turns a 256×256 image into a 32×32 grid of tokens from a vocabulary of
# 8,192: 192 times fewer positions than pixels.
#
# **DALL·E's dVAE.** Its encoder outputs, at each grid cell, logits over the 8,192
# codes; training relaxes the discrete choice with the **Gumbel-softmax**
# (Jang et al., 2017; Maddison et al., 2017): a sample
# $\operatorname{softmax}((\ell + g)/\tau)$ with Gumbel noise $g$, which becomes
# one-hot as the temperature $\tau \to 0$, mixes the codebook vectors, and the
# evidence lower bound adds the KL divergence of the code distribution from a
# uniform prior. The **VQ-VAE** (van den Oord et al., 2017; chapter 03) instead
# picks the nearest codebook vector and copies gradients straight through the
# choice, with a codebook and a commitment loss. **Finite scalar quantization**
# (FSQ; Mentzer et al., 2024) drops the learned codebook altogether: the encoder
# outputs $d$ numbers per cell, each bounded and rounded to one of $L_i$ levels,
#
# $$
# \hat z_i = \operatorname{round}\!\Big(\tfrac{L_i - 1}{2} \tanh z_i\Big), \qquad
# \text{code} = \textstyle\sum_i \big(\hat z_i + \lfloor L_i / 2 \rfloor\big) \prod_{j < i} L_j ,
# $$
#
# (for even $L_i$ shifted by a half so that the grid is symmetric), with
# straight-through gradients for the rounding. The implicit codebook is the grid
# of $\prod_i L_i$ points, and nothing can collapse. We use genbook's `FSQ`
# between chapter 03's convolutional encoder and decoder: two stride-2 stages
# take 32×32 to an 8×8 grid, 64 tokens per image.
#
# The loss is the squared error of the reconstruction, with two twists. Nearly
# all pixels are black background (the fraction is printed above), and a plain
# mean lets the decoder settle for coloured blobs: pixels of the shapes weigh
# `1 + shape_weight` instead of 1. And a blob of the right colour in the right
# place is not yet a star: pixels on a band about the outlines (a 3×3
# dilation of the shape minus its erosion) weigh `edge_weight` more.

# %%
T = cfg["tokenizer"]


class ImageTokenizer(nn.Module):
    """32x32 RGB in [-1, 1] <-> an 8x8 grid of FSQ codes."""

    def __init__(self, levels, widths):
        super().__init__()
        self.quantizer = FSQ(levels)
        self.encoder = ConvEncoder(3, len(levels), widths)
        self.decoder = ConvDecoder(3, len(levels), widths[::-1])
        self.vocab_size = self.quantizer.num_codes

    def forward(self, images):
        return self.decoder(self.quantizer(self.encoder(images)).z_q)  # (B, 3, 32, 32), straight-through

    @torch.no_grad()
    def encode(self, images, batch_size=1000):
        """(B, 3, 32, 32) -> codes (B, 8, 8) int64."""
        return torch.cat([self.quantizer(self.encoder(images[i:i + batch_size])).codes
                          for i in range(0, len(images), batch_size)])

    @torch.no_grad()
    def decode(self, codes, batch_size=200):
        """codes (B, 8, 8) -> images (B, 3, 32, 32) in [-1, 1]; in chunks (cheaper on a CPU than one big batch)."""
        return torch.cat([self.decoder(self.quantizer.decode_codes(codes[i:i + batch_size])).clamp(-1, 1)
                          for i in range(0, len(codes), batch_size)])


def shape_pixels(x):
    """(B, 3, H, W) -> (B, 1, H, W) float, 1 where any channel is brighter than the black background."""
    return (x > -0.9).any(1, keepdim=True).float()


def outline_pixels(x):
    """(B, 3, H, W) -> (B, 1, H, W) float, 1 on a band about the shapes' outlines: dilation minus erosion (3x3)."""
    inside = shape_pixels(x)
    return F.max_pool2d(inside, 3, 1, 1) + F.max_pool2d(-inside, 3, 1, 1)  # max over 3x3 minus min over 3x3


def train_tokenizer(model):
    generator = genbook.seed_everything(1)
    images = train.images[:T["n_train"]]

    def step(x):
        weight = 1 + T["shape_weight"] * shape_pixels(x) + T["edge_weight"] * outline_pixels(x)  # (B, 1, H, W)
        return (weight * (model(x) - x) ** 2).mean()

    optimizer = torch.optim.Adam(model.parameters(), lr=T["lr"])
    start = time.perf_counter()
    history = genbook.fit(step, genbook.batches(images, batch_size=T["batch_size"], generator=generator,
                                                device=device),
                          T["steps"], model=model, optimizer=optimizer, desc="tokenizer",
                          lr_schedule=genbook.warmup_cosine(T["lr"], T["steps"], T["warmup"]))
    return {"loss": history["loss"], "seconds": time.perf_counter() - start}


genbook.seed_everything(0)
tokenizer = ImageTokenizer(T["levels"], T["widths"]).to(device)
tokenizer, tokenizer_info = genbook.load_or_train(tokenizer, train_tokenizer, chapter="09_dalle", name="tokenizer",
                                                  config={**T, "data": D})
tokenizer.eval()
test_codes = tokenizer.encode(test.images.to(device))  # (N, 8, 8)
reconstructions = tokenizer.decode(test_codes).cpu()
recon = caption_agreement(reconstructions, test.captions, evaluator=evaluator, per_image=True)
tokenizer_recon_adherence = recon["adherence"]
usage = codebook_usage(test_codes, tokenizer.vocab_size)
print(f"{count_parameters(tokenizer):,} parameters, {tokenizer.vocab_size} codes, a {tuple(test_codes.shape[1:])} "
      f"grid; {usage['used']} codes used on the held-out images (perplexity {usage['perplexity']:.0f})")
print(f"caption adherence of the reconstructions: {tokenizer_recon_adherence:.3f} "
      f"(real images {real_adherence:.3f}, shuffled captions {wrong_caption_adherence:.3f})")
recon_attributes = attribute_accuracies(evaluator.read(reconstructions), test.labels)
worst_attribute = min(recon_attributes, key=recon_attributes.get)
print("evaluator's accuracy on the reconstructions, per attribute:",
      {k: round(v, 3) for k, v in recon_attributes.items()}, "| worst:", worst_attribute)
recon_reading, cell_truth = evaluator.read(reconstructions), cell_targets(test.labels)
shape_accuracy_by_size = {}
for size_id, size_name in enumerate(SIZES):  # shape accuracy over the occupied cells of each size
    cells = (cell_truth["occupied"] == 1) & (cell_truth["size"] == size_id)
    shape_accuracy_by_size[size_name] = (recon_reading.shape[cells] == cell_truth["shape"][cells]).float().mean().item()
print("shape read correctly on the reconstructions, by size:", {k: round(v, 3) for k, v in shape_accuracy_by_size.items()})
assert shape_accuracy_by_size["small"] < shape_accuracy_by_size["large"]  # what the prose below says

fig, axes = plt.subplots(2, 1, figsize=(12, 2.2))
for ax, batch, title in [(axes[0], test.images[:16], "held-out images"),
                         (axes[1], reconstructions[:16], "decoded from their 64 tokens")]:
    ax.imshow(genbook.image_grid(batch, nrow=16))
    ax.set_title(title, fontsize=9)
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# Everything the transformer draws passes through this decoder, so the
# reconstructions' adherence is the ceiling of every sample below. The
# per-attribute accuracies above show what the 64 tokens keep and what the
# decoder loses first (the worst attribute is printed), and the shape accuracy
# split by size shows where: a small shape is only a few pixels across, and
# what tells a small circle from a small square or triangle is a handful of
# pixels on its outline, a tiny share of the squared error. The edge weight is
# one cure; the other is many small steps: the fast profile trains on batches of
# only `batch_size` images (printed below). We chose that while writing the chapter,
# by training this network with larger batches and fewer steps at about the same
# cost, which recovered fewer small shapes; this run trains only the chosen
# setting, so the comparison is not shown here: change `batch_size` and `steps`
# in `cfg`, keeping the training time about equal, to see it. The book's bar for
# this stage is 0.95.

# %%
BOOK_BARS = dict(tokenizer_recon_adherence=0.95, adherence_random_of_n=0.60)  # issue 17
print(f"tokenizer: {T['steps']} steps of {T['batch_size']} images; tokenizer_recon_adherence "
      f"{tokenizer_recon_adherence:.3f} (bar {BOOK_BARS['tokenizer_recon_adherence']}, margin "
      f"{tokenizer_recon_adherence - BOOK_BARS['tokenizer_recon_adherence']:+.3f})")
assert tokenizer_recon_adherence >= BOOK_BARS["tokenizer_recon_adherence"], tokenizer_recon_adherence

# %% [markdown]
# ## 2. Text tokens
#
# DALL·E encodes captions with byte-pair encoding (BPE; Sennrich et al., 2016) into
# at most 256 tokens of a 16,384-token vocabulary. Our captions use a few dozen
# words, so a BPE trained on them learns every word as one token (a leading
# space, shown as `Ġ`, is part of the word). Captions shorter than the longest
# are padded with `<pad>`; DALL·E uses a distinct padding token for each of the
# 256 positions, here one is enough.

# %%
bpe = train_bpe(train.captions, vocab_size=cfg["bpe"]["vocab_size"], special_tokens=("<pad>",))
PAD = bpe.token_to_id("<pad>")
train_ids, test_ids = bpe.encode_batch(train.captions), bpe.encode_batch(test.captions)
TEXT_LEN = max(map(len, train_ids))
assert max(map(len, test_ids)) <= TEXT_LEN


def pad_captions(ids):
    return torch.tensor([row + [PAD] * (TEXT_LEN - len(row)) for row in ids])  # (N, TEXT_LEN)


train_text, test_text = pad_captions(train_ids), pad_captions(test_ids)
print(f"BPE vocabulary {bpe.vocab_size} (256 bytes, merges, <pad>); captions of "
      f"{min(map(len, train_ids))}-{TEXT_LEN} tokens")
for caption in test.captions[:2]:
    print(f"{caption!r} -> {[bpe.id_to_token(i) for i in bpe.encode(caption)]}")

# %% [markdown]
# ## 3. Stage 2: one transformer over text and image tokens
#
# Write the caption's $L$ tokens $t_1 \dots t_L$ and the image's 64 tokens
# $z_1 \dots z_{64}$ (the grid in raster order) as one sequence. DALL·E models
# their joint distribution with one autoregressive transformer,
#
# $$
# p_\theta(t, z) = \prod_{i=1}^{L} p_\theta(t_i \mid t_{<i})\;\prod_{j=1}^{64} p_\theta(z_j \mid t, z_{<j}),
# $$
#
# and the second product is a text-to-image model. Three details make one
# transformer serve two modalities (Ramesh et al., 2021, sec. 2.2 and appendix B):
#
# - **separate embeddings**: text ids and image ids have their own tables, and
#   the output layer scores the **joint vocabulary** (text ids $0 \dots V_t - 1$, then
#   image ids $V_t \dots V_t + V_i - 1$);
# - **separate positions**: learned vectors for the text positions, and learned
#   row plus column vectors for the image grid;
# - **logits restricted to the right vocabulary**: the output at position $p$
#   predicts token $p + 1$, so it may score only text entries while $p + 1$ is a
#   text position and only image entries afterwards; the others are set to
#   $-\infty$ (exercise 9.2 writes this mask).
#
# genbook's `TextImageTransformer` (`genbook/nn/dalle.py`) holds these, with
# chapter 01's decoder blocks. The mask, for our lengths (white = allowed):

# %%
V_TEXT, V_IMAGE = bpe.vocab_size, tokenizer.vocab_size
N_IMAGE = test_codes[0].numel()
mask = modality_logits_mask(TEXT_LEN, N_IMAGE, V_TEXT, V_IMAGE)  # (N - 1, V)
print(f"sequence: {TEXT_LEN} text + {N_IMAGE} image tokens; joint vocabulary {V_TEXT} + {V_IMAGE} = "
      f"{V_TEXT + V_IMAGE}; mask {tuple(mask.shape)}")
fig, ax = plt.subplots(figsize=(7, 2.6))
ax.imshow(mask[::1, ::10].T, cmap="Greys_r", aspect="auto", interpolation="nearest")
ax.axvline(TEXT_LEN - 1.5, color="C3", lw=1)
ax.set(xlabel="input position p (its output predicts token p + 1)", ylabel="vocabulary entry / 10",
       title="logits mask: text entries until the caption ends, image entries after")
plt.tight_layout()
plt.show()

# %% [markdown]
# **The loss.** The cross-entropy of every next token, split in two: the mean
# over the caption's (non-padding) tokens and the mean over the image tokens.
# DALL·E weights them $1/8$ and $7/8$:
#
# $$
# \mathcal{L} = \tfrac{1}{8}\, \overline{\big[-\log p_\theta(t_i \mid t_{<i})\big]}
#  + \tfrac{7}{8}\, \overline{\big[-\log p_\theta(z_j \mid t, z_{<j})\big]} .
# $$
#
# Why weight at all: the model is wanted for its image term; the text term is
# there so that the transformer also learns the language of captions, which
# helps it read them, but a caption is short and cheap to model, and without
# the weights its per-token mean would count as much as the image's. The paper
# puts "primarily interested in image modelling" into the 7/8.
#
# For training we do not compute the masked entries at all: the model's
# `logits_by_modality` scores the text positions against the text vocabulary
# only and the image positions against the image vocabulary only. The
# log-softmax is the same as over the masked joint logits (an entry at $-\infty$
# adds nothing to the normaliser); the output layer does less work.
#
# **Caption dropout.** One change to DALL·E's recipe, for section 4's
# classifier-free guidance: a fraction `p_uncond` of the training sequences (0.1,
# as in Ho & Salimans, 2022) has its caption replaced by a *null caption*, so
# that the same transformer also learns $p_\theta(z_j \mid \varnothing, z_{<j})$,
# the image model without text. Our null caption is padding at every text
# position. No real caption starts with `<pad>`, so the model cannot mistake it
# for one; it needs no new vocabulary entry (a dedicated null token would be
# the other choice, and is what a model with a real start-of-text token would
# use); and the text loss, which skips padding, is zero for those sequences: the
# model is not taught to predict a caption of padding, only to draw images after it.

# %%
P = cfg["transformer"]
train_codes = tokenizer.encode(train.images.to(device)).cpu()  # (N, 8, 8)


def dalle_losses(model, text, codes):
    """text (B, L) BPE ids, codes (B, 8, 8) -> (text loss, image loss per token (B, 64)), in nats."""
    tokens = torch.cat([text, codes.flatten(1) + V_TEXT], dim=1)  # (B, N) joint ids: [text; image]
    text_logits, image_logits = model.logits_by_modality(tokens[:, :-1])  # (B, L - 1, V_t), (B, 64, V_i)
    text_nll = F.cross_entropy(text_logits.transpose(1, 2), text[:, 1:], reduction="none")  # t_2..t_L
    image_nll = F.cross_entropy(image_logits.transpose(1, 2), codes.flatten(1), reduction="none")  # z_1..z_64
    real = (text[:, 1:] != PAD).float()  # padding is not part of the caption
    return (text_nll * real).sum() / real.sum(), image_nll


NULL_CAPTION = torch.full((TEXT_LEN,), PAD)  # (L,) the unconditional "caption": padding only


def train_transformer(model):
    generator = genbook.seed_everything(P["seed"])
    drop_generator = torch.Generator(device).manual_seed(P["seed"])  # its own stream: the batches stay the same
    # AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay, fused where torch has the kernel (cheaper)
    optimizer = genbook.adam(model.parameters(), P["lr"], betas=(0.9, 0.95), weight_decay=0.01,
                             decoupled_weight_decay=True)

    def step(text, codes):
        text, _ = drop_condition(text, NULL_CAPTION, P["p_uncond"], generator=drop_generator)  # caption dropout
        text_loss, image_nll = dalle_losses(model, text, codes)  # dropped captions have no text loss: all padding
        return P["text_weight"] * text_loss + (1 - P["text_weight"]) * image_nll.mean()  # 1/8 : 7/8

    start = time.perf_counter()
    history = genbook.fit(step, genbook.batches(train_text, train_codes, batch_size=P["batch_size"],
                                                generator=generator, device=device),
                          P["steps"], model=model, optimizer=optimizer, grad_clip=1.0, desc="transformer",
                          lr_schedule=genbook.warmup_cosine(P["lr"], P["steps"], P["warmup"]))
    return {"loss": history["loss"], "seconds_per_step": (time.perf_counter() - start) / P["steps"]}


genbook.seed_everything(P["seed"] + 1)  # the initialisation; P["seed"] draws the batches
dalle = TextImageTransformer(V_TEXT, V_IMAGE, TEXT_LEN, tuple(test_codes.shape[1:]), P["d_model"], P["n_heads"],
                             P["n_layers"]).to(device)
dalle, dalle_info = genbook.load_or_train(dalle, train_transformer, chapter="09_dalle", name="transformer",
                                          config={**P, "data": D, "bpe": cfg["bpe"]},
                                          parent=tokenizer_info)  # trained on its codes: a changed tokenizer retrains it
dalle.eval()
print(f"{count_parameters(dalle):,} parameters, {P['steps']} steps of {P['batch_size']} sequences, "
      f"{1e3 * dalle_info['seconds_per_step']:.0f} ms per step when trained")

# %% [markdown]
# **Does the caption carry information?** If the transformer reads the caption,
# the image tokens of a held-out image are far more likely after its own caption
# than after another image's. We measure the image's negative log-likelihood in
# bits, $-\sum_j \log_2 p_\theta(z_j \mid t, z_{<j})$, under its true caption and
# under the caption of a random other image (the same shuffle as above). Two
# caption-free baselines sit above both: codes drawn uniformly, and codes drawn
# with their training frequencies, ignoring caption and position (a unigram
# model). The unigram number is also the price of a better tokenizer: one that
# keeps more detail spreads its codes more evenly (the perplexity printed in
# section 1), and the transformer has more bits to learn.

# %%
with torch.no_grad():  # (N_test, 64) nats per image token, in chunks of 250 images
    test_text_d, test_codes_d = test_text.to(device), test_codes.to(device)
    chunks = [slice(i, i + 250) for i in range(0, len(test), 250)]
    nll_true = torch.cat([dalle_losses(dalle, test_text_d[c], test_codes_d[c])[1] for c in chunks])
    shuffled_text = test_text_d[shuffle.to(device)]
    nll_shuffled = torch.cat([dalle_losses(dalle, shuffled_text[c], test_codes_d[c])[1] for c in chunks])
image_nll_bits_true_caption = (nll_true.sum(1) / math.log(2)).mean().item()
image_nll_bits_shuffled_caption = (nll_shuffled.sum(1) / math.log(2)).mean().item()
uniform_bits = N_IMAGE * math.log2(V_IMAGE)
code_counts = torch.bincount(train_codes.flatten(), minlength=V_IMAGE).double() + 1  # add-one smoothing
unigram_bits = -(code_counts / code_counts.sum()).log2()[test_codes.flatten().cpu()].sum().item() / len(test)
print(f"image NLL, bits per image: true caption {image_nll_bits_true_caption:.1f} "
      f"({image_nll_bits_true_caption / N_IMAGE:.2f} per token), shuffled caption "
      f"{image_nll_bits_shuffled_caption:.1f}, the codes' training frequencies alone (no caption, no position) "
      f"{unigram_bits:.1f}, uniform over the codes {uniform_bits:.0f}")
print(f"the caption is worth {image_nll_bits_shuffled_caption - image_nll_bits_true_caption:.1f} bits per image")
assert image_nll_bits_true_caption <= image_nll_bits_shuffled_caption - 5

fig, ax = plt.subplots(figsize=(7, 2.8))
bins = torch.linspace(0, float(max(nll_true.sum(1).max(), nll_shuffled.sum(1).max())) / math.log(2), 40)
for nll, label in [(nll_true, "true caption"), (nll_shuffled, "shuffled caption")]:
    ax.hist((nll.sum(1) / math.log(2)).cpu(), bins=bins, alpha=0.6, label=label)
ax.set(xlabel="image NLL (bits per image)", ylabel="held-out images", title="how surprising is the image?")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Sampling, and the KV cache
#
# To draw an image for a caption: feed the caption, take the logits of the last
# position (already restricted to the image vocabulary), divide by a temperature
# $\tau$, optionally keep the top $k$, draw a token, append it, repeat 64 times,
# and decode the grid with the tokenizer's decoder.
#
# Done naively, step $j$ runs the transformer over all $L + j$ tokens again,
# although the keys and values of the earlier positions are the same as at the
# previous step (causal attention: earlier positions never see later ones). A
# **KV cache** keeps them: each step computes the query, key and value of the
# one new token and attends over the cached keys, so a step costs $O(L + j)$
# instead of $O((L + j)^2)$ in attention and $O(1)$ instead of $O(L + j)$ in
# the feed-forward layers. genbook's `KVCache` does this for chapter 01's GPT and
# for this transformer: `model.new_cache(B)` and `model(new_tokens, cache=cache)`.
#
# **Classifier-free guidance.** Chapter 08 steered a diffusion model towards its
# caption by extrapolating from the unconditional prediction to the conditional
# one (Ho & Salimans, 2022). The same works for an autoregressive model, on the
# logits of the next token: Make-A-Scene (Gafni et al., 2022) and Parti (Yu et
# al., 2022) guide their image-token transformers this way. Thanks to the caption
# dropout of section 3 one transformer gives both the conditional logits
# $\ell_c = \ell_\theta(c, z_{<j})$ and the unconditional ones
# $\ell_\varnothing = \ell_\theta(\varnothing, z_{<j})$ of the next image token, and we sample from
#
# $$
# \tilde\ell = \ell_\varnothing + g\,(\ell_c - \ell_\varnothing), \qquad
# \tilde p(z_j \mid c, z_{<j}) \propto p_\theta(z_j \mid \varnothing, z_{<j})
#   \left(\frac{p_\theta(z_j \mid c, z_{<j})}{p_\theta(z_j \mid \varnothing, z_{<j})}\right)^{g},
# $$
#
# (the softmax's normalisers are constants of each row, so logits and
# log-probabilities give the same $\tilde p$). The ratio is an implicit classifier,
# how much more likely the token is with the caption than without it; $g = 1$ is
# the plain conditional model, $g > 1$ sharpens it towards the tokens that the
# caption makes likely. Both rows of a caption, conditional and unconditional,
# extend with the *same* drawn token, and they go through the transformer as one
# batch of $2B$ sequences with one KV cache: guidance doubles each step's batch,
# not the number of steps. At $g = 1$ the unconditional rows are not computed at
# all. Only the image entries are guided: the text entries are $-\infty$ in both
# rows, and $-\infty - (-\infty)$ is not a number (exercise 9.3 writes the
# guided logits over the whole masked vocabulary).
#
# The sampler asks the model only for what it draws from: `next_image_logits`
# scores the last position against the image vocabulary alone (the text entries
# are $-\infty$ there anyway), and top-k draws among the $k$ best logits
# instead of setting the others to $-\infty$ (the same distribution).

# %%
S = cfg["sampling"]


@torch.inference_mode()
def sample_image_tokens(model, text, temperature=1.0, top_k=None, guidance=1.0, generator=None, kv_cache=True):
    """text (B, L) -> image codes (B, rows, cols), drawn one token at a time.

    guidance g != 1 also runs the null caption, as rows B..2B-1 of the same batch, and samples from
    uncond + g (cond - uncond).
    """
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be None or a positive int, got {top_k!r}.")
    b = len(text)
    rows = text if guidance == 1 else torch.cat([text, NULL_CAPTION.to(text.device).expand_as(text)])  # (B or 2B, L)
    cache = model.new_cache(len(rows)) if kv_cache else None
    tokens = new = rows  # `new`: what the cached model has not read yet
    for _ in range(model.n_image_tokens):
        # (B or 2B, V_i): the next token's logits over the image vocabulary; without a cache, re-read every token
        logits = model.next_image_logits(new if kv_cache else tokens, cache=cache)
        if guidance != 1:
            cond, uncond = logits[:b], logits[b:]
            logits = uncond + guidance * (cond - uncond)  # classifier-free guidance, (B, V_i)
        candidates = None
        if top_k is not None and top_k < logits.shape[-1]:  # draw among the k best only: the others have p = 0
            logits, candidates = logits.topk(top_k, dim=-1)  # (B, k) each
        z = torch.multinomial((logits / temperature).softmax(-1), 1, generator=generator)  # (B, 1)
        if candidates is not None:
            z = candidates.gather(1, z)  # (B, 1) image ids
        new = (z + V_TEXT).repeat(len(rows) // b, 1)  # joint ids; the same token for a caption's two rows
        tokens = torch.cat([tokens, new], dim=1)
    return (tokens[:b, TEXT_LEN:] - V_TEXT).view(b, *model.grid)


speed_text = test_text[:S["n_speed"]].to(device)
timing, same_tokens = {}, {}
for g in (1.0, 2.0):  # the cache must give the same tokens with and without guidance
    for kv_cache in (False, True):
        start = time.perf_counter()
        codes = sample_image_tokens(dalle, speed_text, temperature=1.0, top_k=None, guidance=g, kv_cache=kv_cache,
                                    generator=torch.Generator(device).manual_seed(0))
        timing[g, kv_cache] = (time.perf_counter() - start, codes)
    same_tokens[g] = torch.equal(timing[g, False][1], timing[g, True][1])
kv_cache_speedup = timing[1.0, False][0] / timing[1.0, True][0]
print(f"{S['n_speed']} images of {N_IMAGE} tokens after {TEXT_LEN} text tokens: without the cache "
      f"{timing[1.0, False][0]:.2f} s, with it {timing[1.0, True][0]:.2f} s: {kv_cache_speedup:.1f}x faster; "
      f"the same tokens: {same_tokens[1.0]}")
print(f"guided (g = 2, a batch of {2 * S['n_speed']} rows): without the cache {timing[2.0, False][0]:.2f} s, "
      f"with it {timing[2.0, True][0]:.2f} s; the same tokens: {same_tokens[2.0]}; guidance costs "
      f"{timing[2.0, True][0] / timing[1.0, True][0]:.1f}x the unguided cached time")
assert same_tokens[1.0] and same_tokens[2.0] and kv_cache_speedup >= 2

fig, ax = plt.subplots(figsize=(6, 1.8))
ax.barh(["with KV cache", "without"], [timing[1.0, True][0], timing[1.0, False][0]], color=["C2", "C7"])
ax.set(xlabel=f"seconds to sample {S['n_speed']} images", title=f"KV cache: {kv_cache_speedup:.1f}x faster")
plt.tight_layout()
plt.show()

# %% [markdown]
# The two samplers drew the same tokens from the same random numbers: the cache
# changes the cost, not the model. The cache costs memory instead: two tensors
# of (batch, heads, length, head width) per layer, which for DALL·E's 64 layers
# and 1,280 positions is what limits the batch size when sampling on a GPU.
#
# **Temperature, top-k, guidance.** Top-k cuts off the long tail of unlikely codes, each
# of which, once drawn, becomes a stray speck or a wrong colour that the rest of
# the image must live with. The temperature pulls the other way or the same
# way: below 1 it sharpens every distribution, which also favours the most
# frequent code, black background, so that shapes come out too small or not at
# all; above 1 it flattens the distribution among the codes top-k kept, so the
# rarer codes that draw the shapes get more of their due. Which helps is an
# empirical question, and the answer must not be read off the captions the
# results are reported on. The guidance scale is the same kind of knob. We try a
# few settings of all three, $g = 1$ (no guidance) among them, on **validation
# captions**: held-out images whose caption text is not among the test captions
# below, `validation_n` samples each, and keep the setting with the best adherence there.

# %%
n_captions, rerank_n = S["n_captions"], S["rerank_n"]
captions = test.captions[:n_captions]  # the test captions: every result below is measured on them
test_caption_set = set(captions)
validation = [i for i in range(n_captions, len(test)) if test.captions[i] not in test_caption_set][:S["n_validation"]]
assert len(validation) == S["n_validation"] and not set(test.captions[i] for i in validation) & test_caption_set
validation_text = test_text[validation].repeat_interleave(S["validation_n"], 0).to(device)
validation_captions = [test.captions[i] for i in validation for _ in range(S["validation_n"])]
validation_adherence = {}
for temperature, top_k, guidance in S["candidates"]:
    codes = sample_image_tokens(dalle, validation_text, temperature, top_k, guidance,
                                generator=torch.Generator(device).manual_seed(2))
    validation_adherence[temperature, top_k, guidance] = caption_agreement(
        tokenizer.decode(codes).cpu(), validation_captions, evaluator=evaluator)["adherence"]
    print(f"validation ({len(validation)} captions x {S['validation_n']}): temperature {temperature}, top-k {top_k}, "
          f"guidance {guidance}: adherence {validation_adherence[temperature, top_k, guidance]:.3f}")
temperature, top_k, guidance = max(validation_adherence, key=validation_adherence.get)
# the run compares g = 1 with a guided g: the chosen one, or the best guided candidate if g = 1 won
compared_g = guidance if guidance != 1 else max((c for c in validation_adherence if c[2] != 1),
                                                key=validation_adherence.get)[2]
print(f"chosen on the validation captions: temperature {temperature}, top-k {top_k}, guidance {guidance}")

# %% [markdown]
# Now the test captions, `rerank_n` samples each, with that temperature and
# top-k, twice: without guidance ($g = 1$) and with the guided scale, from the same
# random numbers. The same trained model, the same captions, the same seeds:
# the two runs differ in $g$ alone.

# %%
sample_captions = [c for c in captions for _ in range(rerank_n)]
runs = {}
for g in (1.0, compared_g):
    start = time.perf_counter()
    codes = sample_image_tokens(dalle, test_text[:n_captions].repeat_interleave(rerank_n, 0).to(device),
                                temperature, top_k, g, generator=torch.Generator(device).manual_seed(1))
    images = tokenizer.decode(codes).cpu()  # (C·N, 3, 32, 32), caption-major
    ms = 1e3 * (time.perf_counter() - start) / len(images)
    runs[g] = dict(samples=images, ms_per_image=ms,
                   scores=caption_agreement(images, sample_captions, evaluator=evaluator, per_image=True))
    print(f"temperature {temperature}, top-k {top_k}, guidance {g}: {len(images)} samples in {ms:.1f} ms per "
          f"image; adherence {runs[g]['scores']['adherence']:.3f}")
samples, random_scores = runs[guidance]["samples"], runs[guidance]["scores"]  # the chosen setting
sampling_ms_per_image = runs[guidance]["ms_per_image"]
adherence_random_of_n = random_scores["adherence"]
adherence_random_unguided, adherence_random_guided = (runs[g]["scores"]["adherence"] for g in (1.0, compared_g))
print(f"random-of-N (chosen setting): {adherence_random_of_n:.3f} (reconstructions {tokenizer_recon_adherence:.3f}, "
      f"shuffled captions {wrong_caption_adherence:.3f}); g = 1: {adherence_random_unguided:.3f}, g = {compared_g}: "
      f"{adherence_random_guided:.3f}")


def adherence_by_shapes(scores, caption_list):
    """{1: adherence over the one-shape captions, 2: over the two-shape captions}, from per-image counts."""
    n_shapes = torch.tensor([len(parse_caption(c).objects) for c in caption_list])
    return {n: (scores["agreed"][n_shapes == n].sum() / scores["stated"][n_shapes == n].sum()).item() for n in (1, 2)}


sample_by_shapes = adherence_by_shapes(random_scores, sample_captions)
recon_by_shapes = adherence_by_shapes(recon, test.captions)
print(f"random-of-N by caption: one shape {sample_by_shapes[1]:.3f}, two shapes {sample_by_shapes[2]:.3f} "
      f"(reconstructions: {recon_by_shapes[1]:.3f} and {recon_by_shapes[2]:.3f})")
assert sample_by_shapes[2] < sample_by_shapes[1] and abs(recon_by_shapes[1] - recon_by_shapes[2]) < 0.05  # prose

# %% [markdown]
# The mean adherence over all samples is what a randomly picked one of the
# `rerank_n` samples of a caption scores on average: **random-of-N**. Split by
# caption, it shows where the transformer falls short of its tokenizer: the
# reconstructions of both kinds of caption score alike, but the samples of
# two-shape captions, which must bind two colours to two shapes and place them
# in the stated relation, score far lower than those of one-shape captions.
#
# ## 5. CLIP
#
# CLIP (Radford et al., 2021) learns an image encoder $f$ and a text encoder $g$
# into one space of unit vectors, such that an image and its caption point the
# same way. For a batch of $B$ pairs, the similarity of image $i$ and caption $j$
# is a scaled cosine, $s_{ij} = e^{\tau}\, f(x_i)^\top g(y_j)$, with a learned
# log-temperature $\tau$, and the loss asks every image to pick its own caption
# among the $B$ (a softmax over row $i$) and every caption its own image (a
# softmax over column $j$):
#
# $$
# \mathcal{L} = \frac{1}{2B} \sum_{i=1}^{B}\Big[ -\log \frac{e^{s_{ii}}}{\sum_j e^{s_{ij}}}\Big]
#             + \frac{1}{2B} \sum_{j=1}^{B}\Big[ -\log \frac{e^{s_{jj}}}{\sum_i e^{s_{ij}}}\Big].
# $$
#
# In code (the paper's Figure 3), checked against a loop over the batch:

# %%
def clip_loss(logits):
    """logits (B, B), row i = image i, column j = caption j; the pairs are on the diagonal."""
    labels = torch.arange(len(logits), device=logits.device)
    image_to_text = F.cross_entropy(logits, labels)  # softmax over each row
    text_to_image = F.cross_entropy(logits.T, labels)  # softmax over each column
    return (image_to_text + text_to_image) / 2


check_logits = torch.randn(8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 4
loop_value = contrastive_loss_by_loops(check_logits, torch.arange(8))
print(f"clip_loss {clip_loss(check_logits):.6f}, loop {loop_value:.6f}, genbook {contrastive_loss(check_logits):.6f}")
assert abs(clip_loss(check_logits).item() - loop_value) < 1e-9
assert abs(contrastive_loss(check_logits).item() - loop_value) < 1e-9

# %% [markdown]
# **Repeated captions.** Our captions come from templates, so a batch often holds
# the same caption twice. Both copies are the same text with the same embedding;
# the loss above would still call one of them wrong for each image, and would
# push apart two images that fit one caption equally well. genbook's
# `contrastive_loss(logits, groups)` counts every pair with equal captions as a
# positive, $-\log \sum_{j \in P_i} \operatorname{softmax}_j(s_{i\cdot})$, which is
# `clip_loss` when all captions differ (exercise 9.1 writes it). How often does it matter?

# %%
C = cfg["clip"]
_, train_groups = torch.unique(train_text, dim=0, return_inverse=True)  # equal ids = equal captions
probe = torch.randint(len(train), (100, C["batch_size"]), generator=torch.Generator().manual_seed(0))
with_repeats = sum(len(train_groups[row].unique()) < C["batch_size"] for row in probe) / len(probe)
print(f"batches of {C['batch_size']} with a repeated caption: {with_repeats:.0%}")


def train_clip(model):
    generator = genbook.seed_everything(4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=C["lr"], weight_decay=0.01)

    def step(images, text, groups):
        return contrastive_loss(model(images, text), groups)

    history = genbook.fit(step, genbook.batches(train.images, train_text, train_groups, batch_size=C["batch_size"],
                                                generator=generator, device=device),
                          C["steps"], model=model, optimizer=optimizer, desc="CLIP",
                          lr_schedule=genbook.warmup_cosine(C["lr"], C["steps"], C["warmup"]))
    return {"loss": history["loss"]}


genbook.seed_everything(5)
clip = CLIP(ImageEncoder(C["embed_dim"], C["width"]),
            TextEncoder(V_TEXT, TEXT_LEN, PAD, C["embed_dim"], C["d_model"], 4, C["n_layers"])).to(device)
clip, clip_info = genbook.load_or_train(clip, train_clip, chapter="09_dalle", name="clip",
                                        config={**C, "data": D, "bpe": cfg["bpe"]})
clip.eval()
print(f"CLIP: {count_parameters(clip):,} parameters; learned temperature 1/{clip.scale.item():.1f}")

# %% [markdown]
# **Zero-shot retrieval.** For each held-out image, CLIP ranks 100 held-out
# captions (its own and those of 99 other images) by similarity; it is right if
# the top caption is its own (or the same text). Chance is 1 in 100.

# %%
with torch.no_grad():
    image_emb = clip.encode_images(test.images.to(device))
    text_emb = clip.encode_texts(test_text.to(device))
hits = []
for start in range(0, len(test) - 99, 100):
    best = (image_emb[start:start + 100] @ text_emb[start:start + 100].T).argmax(1).tolist()
    hits += [test.captions[start + b] == test.captions[start + i] for i, b in enumerate(best)]
clip_top1_of_100, clip_chance = sum(hits) / len(hits), 1 / 100
print(f"top-1 of 100 held-out captions: {clip_top1_of_100:.3f} over {len(hits)} images (chance {clip_chance})")
assert clip_top1_of_100 >= 0.5

k = 8  # the first k held-out images against their k captions
fig, ax = plt.subplots(figsize=(6, 5.5))
ax.imshow((image_emb[:k] @ text_emb[:k].T).cpu(), cmap="viridis")
ax.set_yticks(range(k), [f"image {i}" for i in range(k)], fontsize=7)
ax.set_xticks(range(k), test.captions[:k], rotation=60, ha="right", fontsize=7)
ax.set_title("CLIP cosine similarity: images (rows) and captions (columns)", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 6. Reranking, and guidance
#
# DALL·E drew 512 samples per caption and showed the 32 that CLIP ranked
# highest. We keep the best of `rerank_n`: **best-of-N** against random-of-N,
# same samples, same evaluator. The book asks random-of-N to reach 0.60 and
# best-of-N to beat it by 0.05.
#
# Reranking and guidance both spend sampling compute on adherence: reranking
# draws N images and throws N − 1 away, guidance runs every image twice. Do they
# add up, or does one take the other's gain? The two runs of section 4 answer it:
# random- and best-of-N at $g = 1$ and at the guided scale, on the same captions
# from the same random numbers, and the gain of reranking at each. A last line
# compares them at equal cost: guidance runs two rows of the transformer per
# image, so guided best-of-N/2 costs what unguided best-of-N does. Every number
# comes with a 95% interval from a paired bootstrap over the test captions
# (resample the captions with replacement, recompute every number on the same
# resample), so a difference counts only where its interval excludes zero.

# %%
with torch.no_grad():
    caption_emb = text_emb[:n_captions, None, :]  # (C, 1, E)
    for run in runs.values():
        emb = clip.encode_images(run["samples"].to(device)).view(n_captions, rerank_n, -1)  # (C, N, E)
        run["clip"] = (emb * caption_emb).sum(-1).cpu()  # cosine of each sample with its caption, (C, N)


def per_caption(scores, pick=None, first=rerank_n):
    """Facts (agreed, stated), each (C,) float64: summed over a caption's first `first` samples, or of sample `pick`."""
    agreed, stated = (scores[k].double().view(n_captions, rerank_n) for k in ("agreed", "stated"))
    if pick is None:
        return agreed[:, :first].sum(1), stated[:, :first].sum(1)
    return agreed[torch.arange(n_captions), pick], stated[torch.arange(n_captions), pick]


half_n = rerank_n // 2
counts = {}  # (g, "random" | "best" | "best of half") -> per-caption facts
for g, run in runs.items():
    counts[g, "random"] = per_caption(run["scores"])
    counts[g, "best"] = per_caption(run["scores"], run["clip"].argmax(1))  # CLIP's choice among all N
    counts[g, "best of half"] = per_caption(run["scores"], run["clip"][:, :half_n].argmax(1))  # among the first N/2
resample = torch.randint(n_captions, (2000, n_captions), generator=torch.Generator().manual_seed(3))
point = {key: (a.sum() / s.sum()).item() for key, (a, s) in counts.items()}
boot = {key: a[resample].sum(1) / s[resample].sum(1) for key, (a, s) in counts.items()}  # (2000,) each


def bounds(x):
    """(low, high): the 95% bootstrap interval of a (2000,) tensor."""
    return tuple(x.quantile(torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist())


def interval(x, sign="+"):
    """The 95% bootstrap interval of a (2000,) tensor, as a string."""
    lo, hi = bounds(x)
    return f"[{lo:{sign}.3f}, {hi:{sign}.3f}]"


g0, g1 = 1.0, compared_g
print(f"{'':30s}{'g = 1':>10s}{f'g = {g1}':>10s}   guided - unguided [95% interval]")
for name, key in [(f"random-of-{rerank_n}", "random"), (f"best-of-{rerank_n}", "best"),
                  (f"best-of-{half_n}", "best of half")]:
    print(f"{name:30s}{point[g0, key]:10.3f}{point[g1, key]:10.3f}   {point[g1, key] - point[g0, key]:+.3f} "
          f"{interval(boot[g1, key] - boot[g0, key])}")
gain = {g: point[g, "best"] - point[g, "random"] for g in runs}
boot_gain = {g: boot[g, "best"] - boot[g, "random"] for g in runs}
print(f"{'gain of reranking':30s}{gain[g0]:+10.3f}{gain[g1]:+10.3f}   {gain[g1] - gain[g0]:+.3f} "
      f"{interval(boot_gain[g1] - boot_gain[g0])}")
print(f"intervals of the reranking gain: g = 1 {interval(boot_gain[g0])}, g = {g1} {interval(boot_gain[g1])}")
matched = point[g1, "best of half"] - point[g0, "best"]
print(f"at equal cost ({rerank_n} transformer rows per caption and step): guided best-of-{half_n} "
      f"{point[g1, 'best of half']:.3f} against unguided best-of-{rerank_n} {point[g0, 'best']:.3f}: "
      f"{matched:+.3f} {interval(boot[g1, 'best of half'] - boot[g0, 'best'])}")

adherence_best_of_n = point[guidance, "best"]  # the chosen setting
adherence_best_unguided, adherence_best_guided = point[g0, "best"], point[g1, "best"]
best = runs[guidance]["clip"].argmax(1)  # (C,), for the figure below
random_interval, gain_interval = interval(boot[guidance, "random"], sign=""), interval(boot_gain[guidance])
print(f"chosen setting (g = {guidance}): random-of-N {adherence_random_of_n:.3f} (bar "
      f"{BOOK_BARS['adherence_random_of_n']}, margin {adherence_random_of_n - BOOK_BARS['adherence_random_of_n']:+.3f}; "
      f"interval {random_interval}), best-of-N {adherence_best_of_n:.3f}, a gain of "
      f"{adherence_best_of_n - adherence_random_of_n:+.3f} (bar +0.05; interval {gain_interval})")
assert adherence_random_of_n >= BOOK_BARS["adherence_random_of_n"], adherence_random_of_n
assert adherence_best_of_n >= adherence_random_of_n + 0.05, (adherence_best_of_n, adherence_random_of_n)


def verdict(x):
    """Whether a bootstrapped difference (2000,) is clearly above zero, clearly below, or neither."""
    lo, hi = bounds(x)
    return "clearly higher" if lo > 0 else "clearly lower" if hi < 0 else "no difference the intervals resolve"


guidance_random_gain = boot[g1, "random"] - boot[g0, "random"]  # what guidance adds to one sample
reranking_gain_change = boot_gain[g1] - boot_gain[g0]  # what guidance does to the gain of reranking
print(f"guided (g = {g1}) against unguided: random-of-{rerank_n} {verdict(guidance_random_gain)}; "
      f"best-of-{rerank_n} {verdict(boot[g1, 'best'] - boot[g0, 'best'])}; the gain of reranking "
      f"{verdict(reranking_gain_change)}; at equal cost (best-of-{half_n} guided against best-of-{rerank_n} "
      f"unguided) {verdict(boot[g1, 'best of half'] - boot[g0, 'best'])}")
assert bounds(guidance_random_gain)[0] > 0 and bounds(reranking_gain_change)[1] < 0  # the prose below

# %% [markdown]
# **Guidance and reranking overlap.** Guidance makes the typical sample follow
# its caption better: random-of-N is clearly higher with it (asserted: the
# interval of the difference lies above zero). But reranking gains clearly less
# after guidance (asserted as well), and what is left of the two together is
# printed in the best-of-N row: whether guided best-of-N beats unguided
# best-of-N, and whether guidance beats spending the same compute on more
# samples to rerank. Both methods buy adherence by discarding the samples that
# do not fit the caption: reranking throws away finished images, guidance the
# unlikely-given-the-caption tokens as they are drawn. When CLIP can already
# find a faithful image among the N, the guided run has fewer bad ones to
# throw away, and the two gains are not additive. Parti uses both, on prompts
# far harder than ours. We keep the validation's
# choice for the samples shown below: it is what the bar on random-of-N asks
# about, and what a user who draws one image without a reranker gets.
#
# Each row: a held-out caption and its samples, CLIP's choice framed.

# %%
shown = 6
fig, axes = plt.subplots(shown, rerank_n, figsize=(0.8 * rerank_n + 1.5, 0.9 * shown))
for r in range(shown):
    for c in range(rerank_n):
        ax = axes[r, c]
        ax.imshow((samples[r * rerank_n + c].permute(1, 2, 0) + 1) / 2)
        ax.set_xticks([])
        ax.set_yticks([])
        chosen = c == int(best[r])
        for spine in ax.spines.values():
            spine.set_color("C3" if chosen else "white")
            spine.set_linewidth(3 if chosen else 0)
    axes[r, 0].set_ylabel(captions[r].replace(" in the ", "\n").replace(" a ", "\na ", 1), fontsize=6,
                          rotation=0, ha="right", va="center")
fig.suptitle(f"{rerank_n} samples per caption (guidance {guidance}); red frame: CLIP's best-of-{rerank_n}",
             fontsize=10)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 7. After DALL·E
#
# | model | text | image generator | what changed, and why |
# |---|---|---|---|
# | DALL·E (Ramesh et al., 2021) | BPE tokens in the same transformer | autoregressive over dVAE tokens, CLIP reranking | text-to-image as language modelling; one 12-billion-parameter transformer |
# | DALL·E 2 (Ramesh et al., 2022) | CLIP text embedding | a *prior* maps it to a CLIP image embedding, a diffusion *decoder* draws from that | generating in CLIP's space puts semantics first; diffusion draws better images than token-by-token sampling |
# | Make-A-Scene (Gafni et al., 2022) | BPE tokens, plus optional scene-layout tokens | autoregressive over VQ tokens, classifier-free guidance on the logits | guidance, carried over from diffusion to the token model as in section 4, made it follow the text more closely; a layout gives control beyond words |
# | Parti (Yu et al., 2022) | an encoder–decoder transformer: text encoder, image-token decoder | autoregressive over ViT-VQGAN tokens, up to 20 billion parameters, guidance and reranking | DALL·E's recipe scaled up, with both of section 6's ways to spend sampling compute |
# | Imagen (Saharia et al., 2022) | a frozen T5 language model's encoder | cascaded pixel diffusion (64 → 256 → 1024) with classifier-free guidance | a bigger *text* encoder helped more than a bigger image model |
# | Stable Diffusion (Rombach et al., 2022) | CLIP text encoder via cross-attention | diffusion in an autoencoder's latent space (chapter 08) | the latent space makes diffusion cheap enough for one GPU |
# | DALL·E 3 (Betker et al., 2023) | long, descriptive captions | diffusion | training on *recaptioned* images (written by a captioning model) made prompts followed far more closely |
#
# The two stages of this chapter survive in all of them: an autoencoder that
# makes images short (a latent grid instead of pixels) and a large model of that
# short representation conditioned on text. What changed is the second stage's
# family (diffusion instead of autoregression) and the text side (pretrained,
# larger encoders; better captions).
#
# ## Results

# %%
wall_s = time.perf_counter() - chapter_started
record = genbook.report(
    "09_dalle",
    metrics={
        "tokenizer_recon_adherence": tokenizer_recon_adherence,
        "image_nll_bits_true_caption": image_nll_bits_true_caption,
        "adherence_random_of_n": adherence_random_of_n,
        "adherence_best_of_n": adherence_best_of_n,
        "clip_top1_of_100": clip_top1_of_100,
        "kv_cache_speedup": kv_cache_speedup,
        "rerank_n": rerank_n,
    },
    baselines={
        "image_nll_bits_shuffled_caption": image_nll_bits_shuffled_caption,
        "clip_chance": clip_chance,
        "real_image_adherence": real_adherence,
        "shuffled_caption_adherence": wrong_caption_adherence,
        "adherence_random_of_n_unguided": adherence_random_unguided,
        "adherence_best_of_n_unguided": adherence_best_unguided,
        "image_nll_bits_uniform": uniform_bits,
        "image_nll_bits_unigram_codes": unigram_bits,
    },
    timings={
        "sampling_ms_per_image": sampling_ms_per_image,
        "sampling_ms_per_image_unguided": runs[1.0]["ms_per_image"],
        "uncached_sampling_ms": 1e3 * timing[1.0, False][0],
        "cached_sampling_ms": 1e3 * timing[1.0, True][0],
        "guided_cached_sampling_ms": 1e3 * timing[2.0, True][0],
        "transformer_ms_per_step": 1e3 * dalle_info["seconds_per_step"],
    },
    n_captions=n_captions,
    guidance={"chosen": guidance, "compared": compared_g, "p_uncond": P["p_uncond"],
              "reranking_gain": {str(g): gain[g] for g in runs}, "best_of_half_guided_minus_best_unguided": matched},
    random_of_n_by_caption_shapes={"one": sample_by_shapes[1], "two": sample_by_shapes[2]},
    sampling={"temperature": temperature, "top_k": top_k, "guidance": guidance,
              "chosen_on_validation_captions": len(validation)},
    n_heldout=len(test),
    retrained=not (tokenizer_info["cached"] and dalle_info["cached"] and clip_info["cached"]),
    cpu_s=round(time.process_time(), 1),  # CPU seconds of this kernel: about the wall time on an idle core
)
for kind in ("metrics", "baselines", "timings"):
    print(kind, {k: float(f"{v:.4g}") for k, v in record[kind].items()})

# %% [markdown]
# ## Exercises
#
# **Exercise 9.1: repeated captions as positives.** Extend `clip_loss` to take
# `groups`, a (B,) tensor with equal ids for equal captions, and count every
# image–caption pair of one group as correct: image $i$'s term becomes
# $-\log \sum_{j \in P_i} \operatorname{softmax}_j(s_{i\cdot})$ with
# $P_i = \{j : \text{groups}_j = \text{groups}_i\}$, and caption $j$'s term the
# same over column $j$. (Hint: set the logits outside $P_i$ to $-\infty$ and use
# `logsumexp`.)

# %% tags=["exercise"]
def symmetric_contrastive_loss(logits, groups):
    """logits (B, B), groups (B,) int64 -> scalar."""
    # BEGIN SOLUTION
    positive = groups[:, None] == groups[None, :]  # (B, B)
    on_positives = logits.masked_fill(~positive, float("-inf"))
    image_to_text = (logits.logsumexp(1) - on_positives.logsumexp(1)).mean()
    text_to_image = (logits.logsumexp(0) - on_positives.logsumexp(0)).mean()
    return (image_to_text + text_to_image) / 2
    # END SOLUTION


# %%
from genbook.exercises.dalle import check_modality_mask, check_symmetric_contrastive_loss

check_symmetric_contrastive_loss(symmetric_contrastive_loss)
print("exercise 9.1 passes")

# %% [markdown]
# **Exercise 9.2: the modality mask.** Write `modality_mask(text_len, n_image_tokens,
# text_vocab, image_vocab)`: a bool tensor of shape (N − 1, V), N = text_len +
# n_image_tokens and V = text_vocab + image_vocab, True where the logits at input
# position p may score vocabulary entry v. Mind which token position p predicts.

# %% tags=["exercise"]
def modality_mask(text_len, n_image_tokens, text_vocab, image_vocab):
    """(N - 1, V) bool, True = allowed."""
    # BEGIN SOLUTION
    predicts_text = torch.arange(1, text_len + n_image_tokens) < text_len  # the modality of token p + 1
    text_entry = torch.arange(text_vocab + image_vocab) < text_vocab
    return predicts_text[:, None] == text_entry[None, :]
    # END SOLUTION


# %%
check_modality_mask(modality_mask)
print("exercise 9.2 passes")

# %% [markdown]
# **Exercise 9.3: guided logits.** Write `guided_logits(cond, uncond, g)` for
# section 4's sampler: `cond` and `uncond` are (B, V) next-token logits over the
# joint vocabulary with and without the caption, $-\infty$ at the same masked
# entries; return $\ell_\varnothing + g\,(\ell_c - \ell_\varnothing)$ on the other
# entries and $-\infty$ on the masked ones. Mind that $g = 1$ must give the
# conditional logits, and what $-\infty - (-\infty)$ is.

# %% tags=["exercise"]
def guided_logits(cond, uncond, g):
    """cond, uncond (B, V) with -inf at the same entries, g float -> (B, V) guided logits."""
    # BEGIN SOLUTION
    allowed = torch.isfinite(cond)
    safe_cond, safe_uncond = cond.masked_fill(~allowed, 0.0), uncond.masked_fill(~allowed, 0.0)
    return (safe_uncond + g * (safe_cond - safe_uncond)).masked_fill(~allowed, float("-inf"))
    # END SOLUTION


# %%
from genbook.exercises.dalle_guidance import check_guided_logits

check_guided_logits(guided_logits)
print("exercise 9.3 passes")

# %% [markdown]
# **Exercise 9.4 (no check): the 1/8 : 7/8 weighting.** Retrain the transformer
# with `text_weight=0.5` and with `text_weight=0.0` (no text loss). Compare the
# image NLL under true and shuffled captions and the adherence of random-of-N.
# Does learning to model captions help the model read them?
#
# **Exercise 9.5 (no check): temperature, top-k and guidance.** Sample the validation
# captions with temperatures 0.5, 0.7 and 1.2, with `top_k` 2, 4 and 64, and with
# guidance scales 0 (the unconditional model), 5 and 10. How
# does adherence move, and which fact (colour, shape, position, ...) moves it?
# What happens to the variety of the samples of one caption (count the distinct
# positions and sizes the evaluator reads for one-shape captions)? Does
# best-of-N still gain as much?
#
# **Exercise 9.6 (no check): a dVAE.** Replace FSQ by DALL·E's Gumbel-softmax
# relaxation: the encoder outputs logits over K codes per cell, the decoder
# reads $\operatorname{softmax}((\ell + g)/\tau)$ times a codebook, with $\tau$
# annealed from 1 to 1/16 and a KL term to the uniform prior. Compare the
# reconstructions' adherence at the same number of steps.
#
# ## References
#
# - A. Ramesh, M. Pavlov, G. Goh, S. Gray, C. Voss, A. Radford, M. Chen, I. Sutskever, "Zero-Shot
#   Text-to-Image Generation" (DALL·E), ICML 2021, arXiv:2102.12092.
# - A. Radford, J. W. Kim, C. Hallacy, A. Ramesh, G. Goh, S. Agarwal, G. Sastry, A. Askell, P. Mishkin,
#   J. Clark, G. Krueger, I. Sutskever, "Learning Transferable Visual Models From Natural Language
#   Supervision" (CLIP), ICML 2021, arXiv:2103.00020.
# - A. van den Oord, O. Vinyals, K. Kavukcuoglu, "Neural Discrete Representation Learning" (VQ-VAE),
#   NeurIPS 2017, arXiv:1711.00937.
# - F. Mentzer, D. Minnen, E. Agustsson, M. Tschannen, "Finite Scalar Quantization: VQ-VAE Made Simple",
#   ICLR 2024, arXiv:2309.15505.
# - E. Jang, S. Gu, B. Poole, "Categorical Reparameterization with Gumbel-Softmax", ICLR 2017;
#   C. J. Maddison, A. Mnih, Y. W. Teh, "The Concrete Distribution", ICLR 2017.
# - R. Sennrich, B. Haddow, A. Birch, "Neural Machine Translation of Rare Words with Subword Units",
#   ACL 2016, arXiv:1508.07909.
# - M. Chen, A. Radford, R. Child, J. Wu, H. Jun, D. Luan, I. Sutskever, "Generative Pretraining from
#   Pixels" (ImageGPT), ICML 2020.
# - A. Ramesh, P. Dhariwal, A. Nichol, C. Chu, M. Chen, "Hierarchical Text-Conditional Image Generation
#   with CLIP Latents" (DALL·E 2), arXiv:2204.06125, 2022.
# - C. Saharia et al., "Photorealistic Text-to-Image Diffusion Models with Deep Language Understanding"
#   (Imagen), NeurIPS 2022, arXiv:2205.11487.
# - J. Betker et al., "Improving Image Generation with Better Captions" (DALL·E 3), OpenAI 2023.
# - R. Rombach, A. Blattmann, D. Lorenz, P. Esser, B. Ommer, "High-Resolution Image Synthesis with
#   Latent Diffusion Models", CVPR 2022, arXiv:2112.10752.
# - R. Pope et al., "Efficiently Scaling Transformer Inference", MLSys 2023, arXiv:2211.05102 (KV caching).
# - J. Ho, T. Salimans, "Classifier-Free Diffusion Guidance", NeurIPS 2021 Workshop on Deep Generative
#   Models and Downstream Applications; arXiv:2207.12598, 2022.
# - O. Gafni, A. Polyak, O. Ashual, S. Sheynin, D. Parikh, Y. Taigman, "Make-A-Scene: Scene-Based
#   Text-to-Image Generation with Human Priors", ECCV 2022, arXiv:2203.13131.
# - J. Yu, Y. Xu, J. Y. Koh, T. Luong, G. Baid, Z. Wang, V. Vasudevan, A. Ku, Y. Yang, B. K. Ayan,
#   B. Hutchinson, W. Han, Z. Parekh, X. Li, H. Zhang, J. Baldridge, Y. Wu, "Scaling Autoregressive Models
#   for Content-Rich Text-to-Image Generation" (Parti), TMLR 2022, arXiv:2206.10789.
