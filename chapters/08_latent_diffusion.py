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
# # Latent diffusion and guidance
#
# Chapters 05 and 07 denoised every pixel of every image at every step. Most of that
# work goes into detail that a good autoencoder reproduces anyway. Rombach et al. (2022)
# split the job in two: an **autoencoder** compresses an image to a small latent grid
# once, and a **diffusion model runs in that latent space**, where each step is many
# times cheaper; the decoder turns the final latent back into pixels. Add a **text
# encoder** whose tokens the denoiser reads through **cross-attention**, and
# **classifier-free guidance** (Ho & Salimans 2022) to make it follow the text, and you
# have the recipe of Stable Diffusion.
#
# We build all of it small enough to train on a laptop CPU in a few minutes, on the
# captioned shapes of genbook ("a small red circle in the top left", "a blue square above
# a green star"). Their labels are exact, so we can *measure* whether an image follows
# its caption (caption adherence, read by genbook's shapes evaluator), not only look.
#
# 1. **Why latents**: an autoencoder from 32×32×3 pixels to an 8×8×4 latent, the latent
#    scale factor, and the cost of a denoiser step in pixels against latents, measured;
# 2. **text conditioning**: a tokenizer, a small transformer text encoder, and
#    cross-attention, written out and checked against PyTorch;
# 3. **diffusion in the latent space** with chapter 07's flow matching;
# 4. **classifier-free guidance**: the caption dropped for 10% of the training examples,
#    the guided prediction, and a sweep of the guidance scale measuring adherence and
#    quality (FD) together;
# 5. **where the model looks**: cross-attention maps of the words of a caption, and how much
#    of a noun's attention falls on its shape.

# %%
import math
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

import genbook
from genbook.data.shapes import SHAPES, make_shapes
from genbook.data.tokenizers import train_wordpiece
from genbook.diffusion.guidance import drop_condition, guidance_nfe, guided_model
from genbook.flow import OTPath, nfe, odeint
from genbook.metrics import caption_agreement, save_samples, shapes_evaluator, timed_sampling
from genbook.metrics.shapes_evaluator import facts_agreed, parse_caption
from genbook.metrics.shapes_protocol import evaluate_shapes, real_shapes, shapes_baselines
from genbook.nn.attention import record_attention
from genbook.nn.autoencoder import ConvDecoder, ConvEncoder
from genbook.nn.transformer import EncoderBlock, TokenEmbedding
from genbook.nn.unet import CrossAttention2d, UNet, count_parameters

device = genbook.device()
generator = genbook.seed_everything(0)
chapter_start = time.perf_counter()
print("device:", device, "| profile:", genbook.profile_name())

# %%
cfg = genbook.profile(
    fast=dict(
        n_train=20_000, data_seed=10,
        autoencoder=dict(widths=[16, 32], latent_channels=4, steps=600, batch_size=32, lr=3e-3, warmup=20,
                         kl_weight=1e-6, fg_weight=10.0),
        text=dict(vocab_size=160, d_model=64, layers=1, heads=4, max_len=12),
        unet=dict(channels=[16, 32], blocks=1, attention=True, heads=1),
        train=dict(steps=515, batch_size=128, lr=3e-3, warmup=40, ema=0.99, p_uncond=0.1),
        sampler=dict(method="midpoint", steps=4),
        scales=[1.0, 2.5, 5.0],
        n_eval=1000, sample_batch=500, timing=dict(latent_steps=4, pixel_steps=1),
        xattn=dict(n=500, times=[0.3, 0.5, 0.7]), grid_captions=6,
    ),
    full=dict(
        n_train=200_000, data_seed=10,
        autoencoder=dict(widths=[64, 128], latent_channels=4, steps=8000, batch_size=128, lr=1e-3, warmup=200,
                         kl_weight=1e-6, fg_weight=10.0),
        text=dict(vocab_size=160, d_model=256, layers=4, heads=8, max_len=12),
        unet=dict(channels=[128, 256], blocks=2, attention=True, heads=8),
        train=dict(steps=20_000, batch_size=256, lr=5e-4, warmup=500, ema=0.999, p_uncond=0.1),
        sampler=dict(method="midpoint", steps=20),
        scales=[0.0, 1.0, 1.5, 2.5, 4.0, 6.0, 8.0],
        n_eval=5000, sample_batch=1000, timing=dict(latent_steps=20, pixel_steps=10),
        xattn=dict(n=2000, times=[0.2, 0.35, 0.5, 0.65, 0.8]), grid_captions=8,
    ),
)
print(cfg)

# %% [markdown]
# ## The data: captioned shapes
#
# Each image holds one or two shapes, each in its own cell of a 3×3 grid; one-shape
# captions state size, colour, shape and cell, two-shape captions state colours, shapes
# and the relation between them. The shapes evaluator reads an image cell by cell and
# scores **caption adherence**: the share of the facts a caption states that the
# evaluator finds in the image (5 facts for one shape: count, colour, shape, size,
# position; 6 for two: count, both colours, both shapes, the relation).

# %%
data = make_shapes(cfg["n_train"], seed=cfg["data_seed"])
x_train, captions_train = data.images, data.captions
print("training images:", tuple(x_train.shape), "| e.g.", captions_train[:3])
evaluator = shapes_evaluator(device)
fig, axes = plt.subplots(1, 6, figsize=(13, 2.6))
for ax, image, caption in zip(axes, x_train[:6], captions_train[:6]):
    ax.imshow((image.permute(1, 2, 0) + 1) / 2)
    ax.set_title(caption.replace(" in the", "\nin the").replace(" a ", "\na "), fontsize=8)
    ax.axis("off")
plt.show()

# %% [markdown]
# ## 1. Why latents
#
# ### The autoencoder
#
# Latent diffusion's first stage is an autoencoder $\mathcal E, \mathcal D$ with
# $z = \mathcal E(x)$ of shape $h\times w\times c$ for an image of $H\times W\times 3$, downsampling
# factor $f = H/h$ (Rombach et al. 2022, sec. 3.1). Ours is genbook's `ConvEncoder`/`ConvDecoder`
# (chapter 03's): $f = 4$, from 32×32×3 = 3,072 numbers to 8×8×4 = 256.
#
# The latent space must be *smooth* for a Gaussian diffusion to work in it. Rombach et al.
# offer two regularisers: a slight KL penalty towards $\mathcal N(0, I)$, as in a VAE
# ("KL-reg."), or a vector quantizer absorbed into the decoder ("VQ-reg."). We take the
# **KL-regularised** one, Stable Diffusion's choice: diffusion and flow matching add
# *Gaussian* noise to continuous latents, and a KL autoencoder gives continuous latents
# directly (a VQ or FSQ grid, chapter 03, is the natural input of an autoregressive prior,
# chapter 09's DALL·E). The encoder outputs a mean and a log-variance per latent number,
#
# $$
# \mathcal L_{\rm AE} = \big\|m\odot(x - \mathcal D(z))\big\|^2 + \lambda_{\rm KL}\, D_{\rm KL}\big(\mathcal N(\mu, \sigma^2)\,\|\,\mathcal N(0, I)\big),
# \qquad z = \mu + \sigma\odot\varepsilon ,
# $$
#
# with a *small* weight $\lambda_{\rm KL}$ (Rombach et al. use $10^{-6}$): just enough to keep
# the latents from spreading without bound, far too little to make them $\mathcal N(0, I)$.
# Stable Diffusion's autoencoder adds a perceptual loss and a patch discriminator, which spend
# its capacity on what people see rather than on flat regions. Our images are mostly black
# background: the shapes cover a few percent of the pixels, so a plain squared error is
# dominated by pixels that are easy. The weight $m$ plays the perceptual loss's part here, a
# cheap one: `fg_weight` on pixels of a shape (and their one-pixel rim), 1 on the background.

# %%
class KLAutoencoder(nn.Module):
    """x (B, 3, 32, 32) -> mean, log-variance (B, c, 8, 8) -> x̂ (B, 3, 32, 32)."""

    def __init__(self, widths, latent_channels):
        super().__init__()
        self.encoder = ConvEncoder(3, 2 * latent_channels, widths)  # μ and log σ² stacked on the channels
        self.decoder = ConvDecoder(3, latent_channels, widths[::-1])

    def encode(self, x):
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z):
        return self.decoder(z)


def train_autoencoder(model):
    opt = cfg["autoencoder"]
    optimizer = torch.optim.Adam(model.parameters(), lr=opt["lr"])

    def step(x):
        mean, logvar = model.encode(x)
        z = mean + (0.5 * logvar).exp() * torch.randn_like(mean)  # z = μ + σ ε (reparametrisation)
        shape_pixels = F.max_pool2d((x > -0.9).any(1, keepdim=True).float(), 3, 1, 1)  # shapes and their rim
        weight = 1 + (opt["fg_weight"] - 1) * shape_pixels  # m: fg_weight on shapes, 1 on the background
        reconstruction = (weight * (model.decode(z) - x).square()).mean()  # ‖m ⊙ (x − D(z))‖² per pixel
        kl = 0.5 * (mean.square() + logvar.exp() - 1 - logvar).sum((1, 2, 3)).mean()  # KL(N(μ, σ²) ‖ N(0, I))
        return reconstruction + opt["kl_weight"] * kl

    data_iter = genbook.batches(x_train, batch_size=opt["batch_size"], generator=generator, device=device)
    history = genbook.fit(step, data_iter, opt["steps"], model=model, optimizer=optimizer, log_every=50,
                          lr_schedule=genbook.warmup_cosine(opt["lr"], opt["steps"], opt["warmup"]),
                          desc="autoencoder")
    return {"history": history}


torch.manual_seed(0)
autoencoder, ae_info = genbook.load_or_train(
    KLAutoencoder(cfg["autoencoder"]["widths"], cfg["autoencoder"]["latent_channels"]).to(device),
    train_autoencoder, chapter="08_latent_diffusion", name="autoencoder",
    config={**cfg["autoencoder"], "n_train": cfg["n_train"], "data_seed": cfg["data_seed"]})
n_params_autoencoder = count_parameters(autoencoder.encoder) + count_parameters(autoencoder.decoder)
autoencoder.eval().requires_grad_(False)
print(f"autoencoder: {n_params_autoencoder:,} parameters,",
      "loaded" if ae_info["cached"] else "trained")

# %% [markdown]
# ### The latent scale factor
#
# With so little KL pressure, nothing fixes the *scale* of the latents: their standard
# deviation is whatever the autoencoder settled on. A diffusion model, though, assumes data
# of about unit variance: its noise $\mathcal N(0, I)$ at the end of the path must swamp the
# data, and its schedules were tuned for data in $[-1, 1]$. Rombach et al. (sec. 4.3.2 and
# appendix G) therefore rescale the latents by one number, $1/\hat\sigma$, the inverse standard
# deviation of the latents of a batch of training images, before diffusion, and divide by it
# again before decoding. Stable Diffusion's **0.18215** is exactly that: $1/\hat\sigma$ measured
# once on its KL-f8 autoencoder's latents of training images, and then frozen as a constant in
# every codebase (the latents had a standard deviation of about 5.5). Ours, measured on our
# training images now:

# %%
@torch.no_grad()
def encode_all(images, batch=1000):
    return torch.cat([autoencoder.encode(images[i:i + batch].to(device))[0].cpu() for i in range(0, len(images), batch)])


latents_raw = encode_all(x_train)  # the means μ = E(x): (N, c, 8, 8); we diffuse the means, not samples of z
scale_factor = 1.0 / latents_raw.std().item()
latents = latents_raw * scale_factor
print(f"latents: {tuple(latents.shape)}, std before scaling {latents_raw.std():.4f} -> scale factor "
      f"{scale_factor:.5f} (Stable Diffusion's: 0.18215); per channel std after scaling: "
      + ", ".join(f"{s:.2f}" for s in latents.std((0, 2, 3)).tolist()))
assert abs(latents.std().item() - 1) < 1e-3

# %% [markdown]
# How good are the reconstructions? They are the **ceiling** of everything that follows: a
# latent model can at best produce what the decoder can draw. We measure it with caption
# adherence on held-out images (`real_shapes`, a draw that no model trained on), next to the
# real images themselves and to real images paired with *shuffled* captions (what a model
# that ignores its caption would score).

# %%
n_eval = cfg["n_eval"]
real = real_shapes(n_eval)  # held-out images with their captions (the real-vs-real floor's draw)
with torch.no_grad():
    reconstructions = torch.cat([autoencoder.decode(autoencoder.encode(real.images[i:i + 500].to(device))[0]).cpu()
                                 for i in range(0, n_eval, 500)]).clamp(-1, 1)
adherence_reconstructions = caption_agreement(reconstructions, real.captions, evaluator=evaluator)["adherence"]
start = time.perf_counter()
baselines = shapes_baselines(n_eval, evaluator=evaluator)
print(f"baselines at n = {n_eval} ({time.perf_counter() - start:.1f} s):")
for key, value in baselines.items():
    print(f"  {key:22s} {value:8.3f}")
print(f"  {'adherence_reconstr.':22s} {adherence_reconstructions:8.3f}   (autoencoder reconstructions, true captions)")
mse_reconstructions = (reconstructions - real.images).square().mean().item()
print(f"reconstruction MSE per pixel: {mse_reconstructions:.4f}")
fig, axes = plt.subplots(2, 1, figsize=(12, 2.4))
genbook.show_images(real.images[:16], nrow=16, ax=axes[0], title="held-out images")
genbook.show_images(reconstructions[:16], nrow=16, ax=axes[1], title="their reconstructions D(E(x))")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 2. Text conditioning
#
# ### Tokens and a text encoder
#
# A caption becomes a sequence of token ids with genbook's WordPiece tokenizer (BERT's, chapter
# 02), trained here on the training captions; every word of the shapes grammar ends up a token of
# its own, which will let us ask where each *word* looks. A caption is wrapped as
# `[CLS] ... [SEP]` and padded with `[PAD]` to a fixed length; the **empty caption**, `[CLS] [SEP]`,
# is the "no text" condition that classifier-free guidance needs (Stable Diffusion also uses
# the encoding of the empty string).
#
# The **text encoder** is a small transformer encoder (chapter 01's blocks): token and position
# embeddings, pre-norm self-attention blocks (`cfg["text"]["layers"]` of them), a final LayerNorm;
# its output, one vector per token, is the context the image model attends to. It is trained
# jointly with the denoiser.
# Big systems freeze a pretrained one instead: Stable Diffusion uses CLIP's text tower (Radford
# et al. 2021), Imagen (Saharia et al. 2022) a frozen T5-XXL language model, and Imagen's main
# finding was that **scaling the text encoder improves alignment and fidelity more than scaling
# the image model** (their fig. 4a–b). DALL·E 2 (Ramesh et al. 2022) takes a third route: a
# *prior* maps the CLIP text embedding to a CLIP image embedding, which a diffusion decoder turns
# into pixels. All three use classifier-free guidance.
#
# Our fast profile goes the other way, for cost: its text encoder has a single block and the
# UNet's attention a single head. On a CPU at this size, attention from every latent position to
# a dozen tokens takes about half of a training step (as much as all the rest), and fewer
# heads and text blocks make a step cheaper; the time saved buys more training steps of the
# denoiser. In the comparisons made while writing this chapter (two seeds, equal training time),
# the extra steps raised caption adherence more than the second block and the three extra heads
# did; this run does not repeat them (exercise 8.5 redoes the text-encoder half).

# %%
tokenizer = train_wordpiece(sorted(set(captions_train)), vocab_size=cfg["text"]["vocab_size"])
pad_id, cls_id, sep_id = (tokenizer.token_to_id(s) for s in ("[PAD]", "[CLS]", "[SEP]"))
words = sorted({w for c in set(captions_train) for w in c.split()})
split = [w for w in words if len(tokenizer.encode(w)) != 1]
print(f"vocabulary: {tokenizer.vocab_size} tokens; {len(words)} caption words, split into pieces: {split}")
assert not split


def tokenize(captions, max_len=cfg["text"]["max_len"]):
    """Captions -> (N, max_len) int64 ids: [CLS] tokens [SEP] [PAD] ..."""
    ids = torch.full((len(captions), max_len), pad_id, dtype=torch.long)
    for i, tokens in enumerate(tokenizer.encode_batch(list(captions))):
        row = [cls_id, *tokens, sep_id]
        if len(row) > max_len:
            raise ValueError(f"caption {captions[i]!r} has {len(row)} tokens, more than max_len={max_len}.")
        ids[i, :len(row)] = torch.tensor(row)
    return ids


ids_train = tokenize(captions_train)
null_ids = tokenize([""])[0]  # the empty caption: [CLS] [SEP] [PAD] ...
print(captions_train[0], "->", ids_train[0].tolist(), "->", tokenizer.decode(ids_train[0].tolist()))
print("empty caption ->", null_ids.tolist())


class TextEncoder(nn.Module):
    """ids (B, T) -> token vectors (B, T, d) and the padding mask (B, T) (True = padding)."""

    def __init__(self, vocab_size, d_model, layers, heads, max_len):
        super().__init__()
        self.embed = TokenEmbedding(vocab_size, d_model, max_len, "learned")
        self.blocks = nn.ModuleList(EncoderBlock(d_model, heads, dropout=0.0) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, ids):
        padding = ids == pad_id
        h = self.embed(ids)  # (B, T, d)
        for block in self.blocks:
            h = block(h, key_padding_mask=padding)  # bidirectional self-attention over the caption
        return self.norm(h), padding


# %% [markdown]
# ### Cross-attention
#
# The denoiser reads the text through **cross-attention** (Rombach et al. 2022, sec. 3.3 and
# eq. 3): the image features $\varphi(z_t)$, flattened to $N = h\cdot w$ positions, provide the
# queries, the $T$ text tokens $\tau_\theta(y)$ the keys and values,
#
# $$
# \mathrm{Attention}(Q, K, V) = \mathrm{softmax}\Big(\frac{QK^\top}{\sqrt d}\Big) V, \qquad
# Q = W_Q\,\varphi(z_t),\quad K = W_K\,\tau_\theta(y),\quad V = W_V\,\tau_\theta(y),
# $$
#
# Vaswani et al.'s (2017) attention with queries and keys from different sequences. Each image
# position takes a weighted average of the token vectors, weighted by how well its query
# matches each token's key: a position where a circle should appear can look up "circle". Padding
# tokens get weight 0. genbook's UNet puts such a block (`CrossAttention2d`: GroupNorm, attention,
# a residual) after every residual block when built with `context_dim`. Here is the computation
# from scratch, checked against genbook's module and against `torch.nn.MultiheadAttention`
# with the same weights copied in.

# %%
def cross_attention_scratch(x, context, padding, w_q, w_k, w_v, w_o, heads):
    """x (B, C, h, w) image features, context (B, T, d_ctx) -> (B, C, h, w) (without the residual).

    Weights as nn.Linear stores them: w_q (C, C), w_k and w_v (C, d_ctx), w_o (C, C); biases left out.
    """
    b, c, h, w = x.shape
    q = x.flatten(2).transpose(1, 2) @ w_q.T  # (B, N, C): one query per image position
    k, v = context @ w_k.T, context @ w_v.T  # (B, T, C): keys and values from the text
    split = lambda m: m.view(b, -1, heads, c // heads).transpose(1, 2)  # (B, heads, ·, C / heads)
    q, k, v = split(q), split(k), split(v)
    scores = q @ k.transpose(-1, -2) / math.sqrt(c // heads)  # Q Kᵀ / √d: (B, heads, N, T)
    scores = scores.masked_fill(padding[:, None, None, :], float("-inf"))  # padding gets weight 0
    out = scores.softmax(-1) @ v  # (B, heads, N, C / heads)
    out = out.transpose(1, 2).reshape(b, h * w, c) @ w_o.T  # concatenate the heads, W_O
    return out.transpose(1, 2).reshape(b, c, h, w)


torch.manual_seed(1)
block = CrossAttention2d(32, context_dim=24, heads=4)
nn.init.normal_(block.attn.out_proj.weight)  # it starts at zero (an identity block); make it count
for layer in (block.attn.q_proj, block.attn.kv_proj, block.attn.out_proj):
    nn.init.zeros_(layer.bias)
x_probe, ctx_probe = torch.randn(3, 32, 4, 4), torch.randn(3, 7, 24)
pad_probe = torch.tensor([[False] * 7, [False] * 5 + [True] * 2, [False] * 2 + [True] * 5])
w_k, w_v = block.attn.kv_proj.weight.chunk(2, dim=0)
with torch.no_grad():
    normed = block.norm(x_probe)
    ours = cross_attention_scratch(normed, ctx_probe, pad_probe, block.attn.q_proj.weight, w_k, w_v,
                                   block.attn.out_proj.weight, heads=4)
    genbook_out = block(x_probe, ctx_probe, pad_probe) - x_probe  # its residual branch
    reference = nn.MultiheadAttention(32, 4, kdim=24, vdim=24, batch_first=True, bias=False)
    reference.q_proj_weight.copy_(block.attn.q_proj.weight)
    reference.k_proj_weight.copy_(w_k)
    reference.v_proj_weight.copy_(w_v)
    reference.out_proj.weight.copy_(block.attn.out_proj.weight)
    torch_out, _ = reference(normed.flatten(2).transpose(1, 2), ctx_probe, ctx_probe, key_padding_mask=pad_probe)
    torch_out = torch_out.transpose(1, 2).reshape(3, 32, 4, 4)
err_genbook, err_torch = (ours - genbook_out).abs().max().item(), (ours - torch_out).abs().max().item()
print(f"max |scratch - genbook CrossAttention2d| = {err_genbook:.1e}; "
      f"max |scratch - torch.nn.MultiheadAttention| = {err_torch:.1e}")
assert err_genbook < 1e-4 and err_torch < 1e-4
with torch.no_grad():  # padding really is ignored: change the padded tokens, nothing moves
    changed = ctx_probe.clone()
    changed[pad_probe] = 100.0
    assert torch.allclose(block(x_probe, changed, pad_probe), block(x_probe, ctx_probe, pad_probe), atol=1e-5)

# %% [markdown]
# ### The cost of a step: pixels against latents
#
# The denoiser is genbook's UNet with cross-attention. To measure what the latent space
# buys, we time one training step (forward, backward, Adam) of the *same* network (same
# channels, blocks, attention and cross-attention; only the input and output channels
# differ) at the same batch size, on 32×32×3 pixels and on 8×8×4 latents. The first calls
# are warm-up and not timed; the machine's other load affects both alike.

# %%
text_encoder_cfg = {k: cfg["text"][k] for k in ("vocab_size", "d_model", "layers", "heads", "max_len")}


def new_unet(in_channels, out_channels=None):
    return UNet(in_channels=in_channels, out_channels=out_channels, time_scale=1000.0,
                context_dim=cfg["text"]["d_model"], **cfg["unet"]).to(device)


def ms_per_training_step(net, inputs, steps, warmup=1):
    """Median wall ms of one flow-matching training step of `net` on `inputs` (B, C, H, W)."""
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    b = len(inputs)
    context = torch.randn(b, cfg["text"]["max_len"], cfg["text"]["d_model"], device=device)
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        t = torch.rand(b, device=device)
        loss = (net(inputs, t, context=context) - inputs).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(1000 * (time.perf_counter() - start))
    return sorted(times)[len(times) // 2]


batch = cfg["train"]["batch_size"]
torch.manual_seed(0)
latent_step_ms = ms_per_training_step(new_unet(latents.shape[1]), latents[:batch].to(device),
                                      cfg["timing"]["latent_steps"])
pixel_step_ms = ms_per_training_step(new_unet(3), x_train[:batch].to(device), cfg["timing"]["pixel_steps"])
print(f"one training step at batch {batch}: pixel space (32x32x3) {pixel_step_ms:.0f} ms, "
      f"latent space (8x8x{latents.shape[1]}) {latent_step_ms:.0f} ms: {pixel_step_ms / latent_step_ms:.1f}x cheaper")
fig, ax = plt.subplots(figsize=(5, 2.2))
ax.barh(["latent 8x8x4", "pixels 32x32x3"], [latent_step_ms, pixel_step_ms], color=["tab:green", "tab:gray"])
ax.set_xlabel(f"ms per training step (batch {batch}, same UNet)")
plt.tight_layout()
plt.show()
assert latent_step_ms <= 0.4 * pixel_step_ms, (latent_step_ms, pixel_step_ms)

# %% [markdown]
# The ratio follows from the number of positions: 16 times fewer at every level of the
# UNet (64 against 1,024 at the top), so the convolutions, the bulk of the cost, shrink
# about as much; fixed per-layer costs keep the measured ratio below 16 on a CPU at this
# tiny size. The autoencoder is paid once: the training latents were encoded once above.
#
# ## 3. Diffusion in the latent space
#
# Which generative process runs on the latents is a free choice: Rombach et al. used DDPM's
# ε-prediction (chapter 05), Stable Diffusion 3 (Esser et al. 2024) switched to rectified
# flow. We use **flow matching** with the optimal-transport path of chapter 07 (genbook's
# `OTPath` and `odeint`): its straight paths sample well with few solver steps, which keeps
# the guidance sweep below affordable on a CPU, and its regression loss is the simplest. The
# loss, now on scaled latents $z_1$ and with the caption $y$,
#
# $$
# \mathcal L = \mathbb E_{t,\,z_0\sim\mathcal N(0,I),\,(z_1,y)}\big\|v_\theta(z_t, t, \tau_\theta(\tilde y)) - (z_1 - (1-\sigma_{\min})z_0)\big\|^2,
# \qquad z_t = (1-(1-\sigma_{\min})t)\,z_0 + t\,z_1,
# $$
#
# where $\tilde y$ is the caption, replaced by the empty caption for a share $p_{\rm uncond}$ of
# the examples (next section). $t$ is drawn logit-normal, as in chapter 07. The text encoder
# and the UNet learn together.

# %%
class TextToLatent(nn.Module):
    """v_θ(z_t, t, y): the UNet with cross-attention to the text encoder's tokens."""

    def __init__(self):
        super().__init__()
        self.text = TextEncoder(**text_encoder_cfg)
        c = latents.shape[1]
        self.coords = cfg.get("coord_channels", False)
        self.unet = new_unet(c + 2 if self.coords else c, out_channels=c)

    def forward(self, z, t, ids):
        context, padding = self.text(ids)  # (B, T, d), (B, T)
        if self.coords:  # two channels holding each position's row and column in [-1, 1]
            b, _, h, w = z.shape
            rows, cols = torch.meshgrid(torch.linspace(-1, 1, h, device=z.device),
                                        torch.linspace(-1, 1, w, device=z.device), indexing="ij")
            z = torch.cat([z, torch.stack([rows, cols]).expand(b, 2, h, w)], dim=1)
        return self.unet(z, t, context=context, context_padding_mask=padding)


path = OTPath(1e-3)


def train_text_to_latent(model):
    opt = cfg["train"]
    optimizer = torch.optim.Adam(model.parameters(), lr=opt["lr"])
    ema = genbook.EMA(model, opt["ema"])

    def step(z1, ids):
        ids, _ = drop_condition(ids, null_ids.to(ids.device), opt["p_uncond"])  # empty caption for ~10%
        z0 = torch.randn_like(z1)  # noise
        t = torch.sigmoid(torch.randn(len(z1), device=z1.device))  # logit-normal t
        z_t = path.sample(z0, z1, t)  # (1 − (1 − σ_min) t) z0 + t z1
        u_t = path.target(z0, z1, t)  # z1 − (1 − σ_min) z0
        return (model(z_t, t, ids) - u_t).square().mean()  # L_CFM with the caption

    batch_order = torch.Generator().manual_seed(5)  # its own: the same batches whether or not the autoencoder was cached
    data_iter = genbook.batches(latents, ids_train, batch_size=opt["batch_size"], generator=batch_order, device=device)
    history = genbook.fit(step, data_iter, opt["steps"], model=model, optimizer=optimizer, ema=ema, grad_clip=1.0,
                          log_every=25, lr_schedule=genbook.warmup_cosine(opt["lr"], opt["steps"], opt["warmup"]),
                          desc="latent flow matching")
    model.load_state_dict(ema.model.state_dict())
    return {"history": history}


torch.manual_seed(0)
start = time.perf_counter()
model, model_info = genbook.load_or_train(
    TextToLatent().to(device), train_text_to_latent, chapter="08_latent_diffusion", name="text_to_latent",
    config={**cfg["train"], **cfg["unet"], **cfg["text"], "autoencoder": cfg["autoencoder"], "n_train": cfg["n_train"],
            "scale_factor": round(scale_factor, 6), "coord_channels": cfg.get("coord_channels", False)},
    parent=ae_info)  # trained on the autoencoder's latents: a changed autoencoder retrains it
n_params_text, n_params_unet = count_parameters(model.text), count_parameters(model.unet)
model.eval().requires_grad_(False)
print(f"text encoder {n_params_text:,} + UNet {n_params_unet:,} parameters,",
      "loaded" if model_info["cached"] else f"trained in {time.perf_counter() - start:.0f} s")
genbook.plot_losses(model_info["history"], title="CFM loss in the latent space")
plt.show()

# %% [markdown]
# ## 4. Classifier-free guidance
#
# A conditional model samples from $p(z \mid y)$, which in a small model is often a washed-out
# compromise that follows the caption only loosely. Dhariwal & Nichol (2021) sharpened it with
# a separate classifier's gradient, $\nabla\log p(y \mid z_t)$. Ho & Salimans (2022) noticed that
# the model itself contains such a classifier: by Bayes' rule
# $\nabla\log p(y\mid z_t) = \nabla\log p(z_t\mid y) - \nabla\log p(z_t)$, the difference of a
# conditional and an unconditional score. So train **one** network for both, by replacing the
# caption with the empty caption for about 10% of the training examples (above, `drop_condition`),
# and at sampling time extrapolate from the unconditional prediction through the conditional one:
#
# $$
# \tilde v_\theta(z_t, t, y) = v_\theta(z_t, t, \varnothing) + s\,\big(v_\theta(z_t, t, y) - v_\theta(z_t, t, \varnothing)\big).
# $$
#
# $s = 1$ is the plain conditional model, $s = 0$ the unconditional one, $s > 1$ follows the
# implicit classifier further: towards images that are typical of *this* caption and not of
# others. (Ho & Salimans write $w = s - 1$, eq. 6, for ε; the combination is linear, so it
# holds for the velocity of flow matching too: $v$ is an affine function of ε and $z_t$.) Every
# guided step costs two network evaluations, done as one call on a doubled batch by genbook's
# `guided_model`. The sampler, written out with the guided velocity, checked against genbook:

# %%
@torch.no_grad()
def guided_sample(model, noise, ids, scale, steps):
    """Midpoint steps of dz/dt = ṽ(z, t) from t = 0 (noise) to t = 1 (latent)."""
    null = null_ids.to(ids.device).expand_as(ids)

    def v_tilde(z, t):
        v_cond, v_uncond = model(z, t, ids), model(z, t, null)
        return v_uncond + scale * (v_cond - v_uncond)  # ṽ = v_∅ + s (v_c − v_∅)

    z, h = noise, 1.0 / steps
    for n in range(steps):
        t = torch.full((len(z),), n * h, device=z.device)
        z = z + h * v_tilde(z + 0.5 * h * v_tilde(z, t), t + 0.5 * h)  # midpoint rule
    return z


probe_ids = tokenize(real.captions[:8]).to(device)
probe_noise = torch.randn(8, *latents.shape[1:], generator=torch.Generator().manual_seed(7)).to(device)
ours = guided_sample(model, probe_noise, probe_ids, 3.0, 4)
with torch.no_grad():
    theirs = odeint(guided_model(model, probe_ids, null_ids.to(device), 3.0), probe_noise, steps=4, method="midpoint")
print(f"max |scratch guided sampler - genbook guided_model + odeint| = {(ours - theirs).abs().max():.1e}")
assert torch.allclose(ours, theirs, atol=1e-4)

# %% [markdown]
# ### The guidance sweep
#
# For each guidance scale we draw `n_eval` images, one per caption of the held-out draw
# (the same captions, and the same starting noise, at every scale: only $s$ differs), decode
# them, and measure **caption adherence** and **FD** in the shapes evaluator's feature space
# (`evaluate_shapes`: the 14 logits per grid cell that the evaluator reads, 126 numbers per
# image; not Inception FID) against a held-out reference set, with a bootstrap interval,
# and precision/recall. Sampling is timed by `timed_sampling`, without the evaluation.

# %%
sampler = cfg["sampler"]
eval_ids = tokenize(real.captions)


def decode(z):
    return autoencoder.decode(z / scale_factor).clamp(-1, 1)  # undo the scale factor, then D


def sampler_for(scale):
    """A `timed_sampling` batch function: the next b captions, fresh noise from the generator."""
    done = [0]

    def sample_batch(b, g):
        ids = eval_ids[done[0]:done[0] + b].to(device)
        done[0] += b
        noise = torch.randn(b, *latents.shape[1:], generator=g, device=g.device).to(device)
        z = odeint(guided_model(model, ids, null_ids.to(device), scale), noise, steps=sampler["steps"],
                   method=sampler["method"])
        return decode(z)

    return sample_batch


sweep, sweep_images, costs = [], {}, {}
for scale in cfg["scales"]:
    nfe_per_image = nfe(sampler["method"], sampler["steps"]) * guidance_nfe(scale)
    images, cost = timed_sampling(sampler_for(scale), n_eval, batch_size=cfg["sample_batch"], nfe=nfe_per_image,
                                  device=device, seed=1234)
    result = evaluate_shapes(images, real.captions, n=n_eval, evaluator=evaluator)
    sweep.append(dict(scale=scale, nfe=nfe_per_image, ms_per_image=cost["ms_per_image"], **result))
    sweep_images[scale], costs[scale] = images, cost
print(f"{'scale':>6} {'NFE':>4} {'adherence':>9} {'exact':>6} {'FD':>8} {'± (95%)':>8} {'precision':>9} "
      f"{'recall':>7} {'ms/image':>9}")
for r in sweep:
    print(f"{r['scale']:6.2f} {r['nfe']:4d} {r['adherence']:9.3f} {r['exact']:6.3f} {r['fd']:8.2f} {r['fd_ci']:8.2f} "
          f"{r['precision']:9.3f} {r['recall']:7.3f} {r['ms_per_image']:9.2f}")
print(f"baselines: adherence real {baselines['adherence_real']:.3f}, reconstructions {adherence_reconstructions:.3f}, "
      f"shuffled captions {baselines['adherence_shuffled']:.3f}; FD real vs real {baselines['fd_real_vs_real']:.2f}, "
      f"blurred {baselines['fd_blurred']:.2f}, PCA-Gaussian {baselines['fd_pca_gaussian']:.2f}")

# %%
scales = [r["scale"] for r in sweep]
fig, (ax_a, ax_f) = plt.subplots(1, 2, figsize=(11, 3.6))
ax_a.plot(scales, [r["adherence"] for r in sweep], "o-", label="model")
ax_a.axhline(baselines["adherence_real"], color="k", ls=":", label="real images")
ax_a.axhline(adherence_reconstructions, color="tab:green", ls="--", label="reconstructions (ceiling)")
ax_a.axhline(baselines["adherence_shuffled"], color="tab:red", ls="--", label="shuffled captions")
ax_a.set(xlabel="guidance scale s", ylabel="caption adherence", title="adherence rises with guidance")
ax_a.legend(fontsize=8)
ax_f.errorbar(scales, [r["fd"] for r in sweep], yerr=[r["fd_ci"] for r in sweep], fmt="o-", capsize=3, label="model")
for key, style, label in (("fd_pca_gaussian", "--", "PCA-Gaussian"), ("fd_blurred", "-.", "blurred real"),
                          ("fd_real_vs_real", ":", "real vs real")):
    ax_f.axhline(baselines[key], color="0.4", ls=style, label=label)
ax_f.set(xlabel="guidance scale s", ylabel=f"shapes FD (n = {n_eval})", yscale="log", title="quality against guidance")
ax_f.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# The captions × guidance scales grid: each row one caption, each column one scale, the same
# starting noise in a row.

# %%
n_grid = cfg["grid_captions"]
fig, axes = plt.subplots(n_grid, len(scales), figsize=(1.9 * len(scales) + 2.5, 1.9 * n_grid))
for row in range(n_grid):
    for col, scale in enumerate(scales):
        ax = axes[row, col]
        ax.imshow((sweep_images[scale][row].permute(1, 2, 0) + 1) / 2)
        ax.set_xticks([])
        ax.set_yticks([])
        if row == 0:
            ax.set_title(f"s = {scale:g}")
    axes[row, 0].set_ylabel(real.captions[row].replace(" in the", "\nin the").replace(" of a", " of\na")
                            .replace("above a", "above\na").replace("below a", "below\na"), fontsize=7,
                            rotation=0, ha="right", va="center")
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Which facts fail?
#
# Adherence averages over facts of different kinds. Split by kind (both shapes' colours pooled,
# and both shapes' nouns), the same reading of the evaluator says *what* the model gets wrong, next
# to the same split for the autoencoder's reconstructions, the ceiling of each kind. A kind where the
# samples sit near chance (1/6 for a colour, 1/4 for a shape or a relation, 1/2 for a size, 1/9 for a cell) is one the model
# has not learned; a kind where the reconstructions already fall short is lost in the autoencoder.

# %%
FACT_KINDS = {1: ("count", "colour", "shape", "size", "position"),  # facts of a one-shape caption, in order
              2: ("count", "colour", "shape", "colour", "shape", "relation")}  # two shapes: colours, nouns, relation


def adherence_by_fact(images, captions):
    """{fact kind: share of the captions' facts of that kind that the evaluator finds in the images}."""
    reading = evaluator.read(images)
    agreed, stated = {}, {}
    for i, caption in enumerate(captions):
        claim = parse_caption(caption)
        for kind, holds in zip(FACT_KINDS[len(claim.objects)], facts_agreed(claim, reading.objects(i))):
            agreed[kind] = agreed.get(kind, 0) + holds
            stated[kind] = stated.get(kind, 0) + 1
    return {kind: agreed[kind] / stated[kind] for kind in ("count", "colour", "shape", "size", "position", "relation")}


fact_rows = {"reconstructions": adherence_by_fact(reconstructions, real.captions),
             "model, s = 1": adherence_by_fact(sweep_images[1.0], real.captions)}
best = max(sweep, key=lambda r: r["adherence"])
fact_rows[f"model, s = {best['scale']:g}"] = adherence_by_fact(sweep_images[best["scale"]], real.captions)
chance = {"colour": 1 / 6, "shape": 1 / 4, "size": 1 / 2, "position": 1 / 9, "relation": 1 / 4}
kinds = list(fact_rows["reconstructions"])
print(f"{'':18s}" + "".join(f"{kind:>9s}" for kind in kinds))
for name, row in {**fact_rows, "chance": chance}.items():
    print(f"{name:18s}" + "".join(f"{row[kind]:9.3f}" if kind in row else f"{'-':>9s}" for kind in kinds))
best_facts = fact_rows[f"model, s = {best['scale']:g}"]
weakest = min(chance, key=lambda kind: (best_facts[kind] - chance[kind]) / (fact_rows["reconstructions"][kind] - chance[kind]))
print(f"weakest kind at s = {best['scale']:g} (the least of the way from chance to the ceiling): {weakest} ({best_facts[weakest]:.3f} against "
      f"{fact_rows['reconstructions'][weakest]:.3f} for the reconstructions, chance {chance[weakest]:.3f})")


# %% [markdown]
# The bars of issue 16 for this chapter, against this run's baselines:
#
# - the best scale reaches an adherence of at least 0.80, and at least 0.05 above the same
#   model without guidance ($s = 1$);
# - its FD is at most half the PCA-Gaussian's.
#
# The fast profile does not reach all of them: the table printed below says which hold in
# this run. The cell asserts those that the fast profile supports: guidance adds at least 0.05
# of adherence over $s = 1$, the FD at the best scale is at most half the PCA-Gaussian's, and
# the model follows its captions far better than real images with shuffled captions. The
# absolute adherence bar of 0.80 is not asserted here: in the fast profile the model stays
# well below the autoencoder's ceiling (printed above), after a training run of a few hundred
# steps; the full profile, with a larger autoencoder and denoiser trained far longer, is sized
# for it. The split by kind of fact above says where the gap lies in this run: a kind whose row
# for the model sits near chance while the reconstructions' row is far above it is the one that
# a longer training run of the denoiser has to buy; a kind where the reconstructions themselves
# fall short needs a better autoencoder first.

# %%
best = max(sweep, key=lambda r: r["adherence"])
no_guidance = next(r for r in sweep if r["scale"] == 1.0)
print(f"best scale s = {best['scale']:g}: adherence {best['adherence']:.3f} (without guidance "
      f"{no_guidance['adherence']:.3f}, {best['adherence'] - no_guidance['adherence']:+.3f}; ceiling "
      f"{adherence_reconstructions:.3f}; shuffled captions {baselines['adherence_shuffled']:.3f})")
print(f"FD at s = {best['scale']:g}: {best['fd']:.2f} = {best['fd'] / baselines['fd_pca_gaussian']:.2f} x PCA-Gaussian "
      f"({baselines['fd_pca_gaussian']:.2f}); blurred real images {baselines['fd_blurred']:.2f}")
issue_bars = {
    "adherence_best >= 0.80": best["adherence"] >= 0.80,
    "adherence_best >= adherence_no_guidance + 0.05": best["adherence"] >= no_guidance["adherence"] + 0.05,
    "fd_best_guidance <= 0.5 x fd_pca_gaussian": best["fd"] <= 0.5 * baselines["fd_pca_gaussian"],
    "latent_step_ms <= 0.4 x pixel_step_ms": latent_step_ms <= 0.4 * pixel_step_ms,
}
for bar, met in issue_bars.items():
    print(f"  {'met    ' if met else 'NOT MET'}  {bar}")
assert best["adherence"] > baselines["adherence_shuffled"] + 0.1, (best, baselines)
assert best["adherence"] >= no_guidance["adherence"] + 0.05, (best, no_guidance)
assert best["fd"] <= 0.5 * baselines["fd_pca_gaussian"], (best, baselines)

# %% [markdown]
# ## 5. Where the model looks
#
# `record_attention` keeps the weights of every cross-attention layer of the UNet. We take
# held-out images with their captions, encode and noise them to a few times $t$ of the path,
# run the model once at each, and average the maps over heads, over the layers at the 8×8
# resolution and over the times. For a word, its map says how much attention each latent
# position pays to it. Figure: the maps of the words of one caption.

# %%
xcfg = cfg["xattn"]
xattn_real = real_shapes(xcfg["n"]) if xcfg["n"] != n_eval else real
xattn_ids = tokenize(xattn_real.captions).to(device)
z_clean = encode_all(xattn_real.images).to(device) * scale_factor
maps = 0
xattn_noise = torch.Generator().manual_seed(8)  # the same noise whether the models were trained or loaded
with torch.no_grad():
    for t_value in xcfg["times"]:
        t = torch.full((len(z_clean),), t_value, device=device)
        z_t = path.sample(torch.randn(z_clean.shape, generator=xattn_noise).to(device), z_clean, t)
        with record_attention(model.unet) as recorded:
            model(z_t, t, xattn_ids)
        top = [w for w in recorded.values() if w.shape[2] == z_clean.shape[2] * z_clean.shape[3]]  # 8x8 layers
        maps = maps + torch.stack(top).mean((0, 2)) / len(xcfg["times"])  # (B, 64, T): layers and heads averaged
maps = maps.cpu()
print(f"{len(top)} cross-attention layers at 8x8; maps {tuple(maps.shape)} (images, positions, tokens)")

example = 0
tokens = [tokenizer.id_to_token(i) for i in xattn_ids[example].tolist() if i != pad_id]
fig, axes = plt.subplots(1, len(tokens) + 1, figsize=(1.6 * (len(tokens) + 1), 2.1))
axes[0].imshow((xattn_real.images[example].permute(1, 2, 0) + 1) / 2)
axes[0].set_title("image", fontsize=8)
for ax, j, token in zip(axes[1:], range(len(tokens)), tokens):
    ax.imshow(maps[example, :, j].reshape(8, 8), cmap="magma")
    ax.set_title(token, fontsize=8)
for ax in axes:
    ax.axis("off")
fig.suptitle(xattn_real.captions[example], fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# A number for it: for each shape of each image, take the map of its **noun** ("circle",
# "star", ...), normalised over the 64 positions, and add up the share that falls inside
# the grid cell that holds the shape (a latent position covers a 4×4 pixel block; blocks that
# straddle a cell border count with the fraction of their area inside). Uniform attention
# puts $1/9$ inside any cell; the same measure applied to uniform maps gives that baseline.

# %%
def cell_overlap(cell, side=8, size=32):
    """(side*side,) share of each latent position's pixel block inside 3x3 grid cell `cell`."""
    lo = torch.arange(side) * (size / side)  # block edges in pixels
    def axis(k):
        return ((torch.minimum(lo + size / side, torch.tensor((k + 1) * size / 3))
                 - torch.maximum(lo, torch.tensor(k * size / 3))).clamp(min=0) / (size / side))
    return (axis(cell // 3)[:, None] * axis(cell % 3)[None, :]).flatten()


shape_token_ids = {tokenizer.token_to_id(name): k for k, name in enumerate(SHAPES)}
shares, uniform_shares = [], []
for i in range(len(xattn_ids)):
    row = xattn_ids[i].tolist()
    noun_slots = [j for j, token in enumerate(row) if token in shape_token_ids]  # first noun = first shape
    for slot, j in enumerate(noun_slots):
        cell = int(xattn_real.labels["position"][i, slot])
        weights = maps[i, :, j] / maps[i, :, j].sum()  # where the noun's attention comes from, sums to 1
        shares.append((weights * cell_overlap(cell)).sum().item())
        uniform_shares.append((torch.full((64,), 1 / 64) * cell_overlap(cell)).sum().item())
xattn_in_cell_share, xattn_uniform_share = sum(shares) / len(shares), sum(uniform_shares) / len(uniform_shares)
print(f"share of a noun's attention inside its shape's cell: {xattn_in_cell_share:.3f} over {len(shares)} nouns; "
      f"uniform attention: {xattn_uniform_share:.4f} (1/9 = {1 / 9:.4f}); ratio {xattn_in_cell_share / xattn_uniform_share:.1f}")
fig, ax = plt.subplots(figsize=(5, 2.8))
ax.hist(shares, bins=30, color="tab:purple", alpha=0.8)
ax.axvline(xattn_uniform_share, color="k", ls="--", label="uniform attention (1/9)")
ax.axvline(xattn_in_cell_share, color="tab:purple", label="mean")
ax.set(xlabel="share of the noun's attention inside its cell", ylabel="nouns")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
assert abs(xattn_uniform_share - 1 / 9) < 1e-6
issue_bars["xattn_in_cell_share > 2 x xattn_uniform_share"] = xattn_in_cell_share > 2 * xattn_uniform_share
print(f"issue 16 bar xattn_in_cell_share > 2 x uniform: {'met' if issue_bars['xattn_in_cell_share > 2 x xattn_uniform_share'] else 'NOT MET'}")
assert xattn_in_cell_share > xattn_uniform_share, (xattn_in_cell_share, xattn_uniform_share)

# %% [markdown]
# ## Results
#
# The final samples (at the best scale) and their cost are saved for the capstone.

# %%
save_samples("08_latent_diffusion", "guided", sweep_images[best["scale"]], cost=costs[best["scale"]],
             guidance_scale=best["scale"], sampler=sampler["method"], steps=sampler["steps"],
             captions=list(real.captions))
metrics = {
    "adherence_best": best["adherence"],
    "guidance_best": best["scale"],
    "adherence_no_guidance": no_guidance["adherence"],
    "fd_best_guidance": best["fd"],
    "fd_no_guidance": no_guidance["fd"],
    "xattn_in_cell_share": xattn_in_cell_share,
    "scale_factor": scale_factor,
    **{f"adherence_s{r['scale']:g}": r["adherence"] for r in sweep},
    **{f"fd_s{r['scale']:g}": r["fd"] for r in sweep},
    **{f"adherence_{kind}_best": value for kind, value in best_facts.items()},  # the facts split by kind
}
baseline_values = {
    **baselines,
    "adherence_reconstructions": adherence_reconstructions,
    "xattn_uniform_share": xattn_uniform_share,
    **{f"adherence_{kind}_reconstructions": value for kind, value in fact_rows["reconstructions"].items()},
}
timings = {"latent_step_ms": latent_step_ms, "pixel_step_ms": pixel_step_ms,
           **{f"ms_per_image_s{s:g}": c["ms_per_image"] for s, c in costs.items()}}
record = genbook.report("08_latent_diffusion", metrics=metrics, baselines=baseline_values, timings=timings,
                        n_eval=n_eval, sampler=f"{sampler['method']} {sampler['steps']} steps",
                        issue_bars={bar: bool(met) for bar, met in issue_bars.items()})
for section in ("metrics", "baselines", "timings"):
    for key, value in record[section].items():
        print(f"{section:9s} {key:28s} {value:10.4f}")
print(f"chapter wall time so far: {time.perf_counter() - chapter_start:.0f} s")

# %% [markdown]
# ## Exercises
#
# **Exercise 8.1: the guided prediction.** Write `guided_velocity(v_cond, v_uncond, scale)`
# returning $\tilde v = v_\varnothing + s\,(v_c - v_\varnothing)$ for tensors of any shape, with this
# chapter's convention ($s = 1$: no guidance; Ho & Salimans' $w$ is $s - 1$).

# %% tags=["exercise"]
def guided_velocity(v_cond, v_uncond, scale):
    """ṽ = v_∅ + s (v_c − v_∅)."""
    # BEGIN SOLUTION
    direction = v_cond - v_uncond  # what the caption adds to the unconditional prediction
    return v_uncond + scale * direction
    # END SOLUTION


# %%
from genbook.exercises.latent_diffusion import check_guided_velocity

check_guided_velocity(guided_velocity)
print("guided_velocity: correct")

# %% [markdown]
# **Exercise 8.2: cross-attention with a padding mask.** Write single-head cross-attention
# `cross_attention(queries, context, w_q, w_k, w_v, padding_mask)`: queries (B, N, C) from the
# image, context (B, T, C_ctx) from the text, weights w_q (C, d), w_k and w_v (C_ctx, d), and
# padding_mask (B, T) bool with True on padding tokens (or None). Return
# $\mathrm{softmax}(QK^\top/\sqrt d)\,V$ of shape (B, N, d), padding tokens getting weight 0.

# %% tags=["exercise"]
def cross_attention(queries, context, w_q, w_k, w_v, padding_mask):
    """softmax(Q Kᵀ / √d) V with Q = queries w_q, K = context w_k, V = context w_v; padding hidden."""
    # BEGIN SOLUTION
    q, k, v = queries @ w_q, context @ w_k, context @ w_v  # (B, N, d), (B, T, d), (B, T, d)
    scores = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])  # (B, N, T)
    if padding_mask is not None:
        scores = scores.masked_fill(padding_mask[:, None, :], float("-inf"))
    return scores.softmax(-1) @ v
    # END SOLUTION


# %%
from genbook.exercises.latent_diffusion import check_cross_attention

check_cross_attention(cross_attention)
print("cross_attention: correct")

# %% [markdown]
# **Exercise 8.3: the latent scale factor.** Write `latent_scale_factor(latents)` for latents
# (B, c, h, w): the one number that gives the scaled latents a standard deviation of 1, as
# computed in section 1 (and as Stable Diffusion's 0.18215 was). Then answer in words: why one
# number for all channels rather than one per channel, and why not divide by the root mean
# square?

# %% tags=["exercise"]
def latent_scale_factor(latents):
    """1 / (standard deviation of all latent values)."""
    # BEGIN SOLUTION
    return 1.0 / latents.std().item()
    # END SOLUTION


# %%
from genbook.exercises.latent_diffusion import check_latent_scale_factor

check_latent_scale_factor(latent_scale_factor)
print("latent_scale_factor: correct")

# %% [markdown]
# **Exercise 8.4 (no check): how often to drop the caption.** Train with `p_uncond` of 0.0,
# 0.1 and 0.3 (the setting is part of the checkpoint's key, so each trains anew) and redo the
# sweep. Without dropout, what does guidance extrapolate from? Where does the best scale move,
# and what happens to adherence at $s = 1$?
#
# **Exercise 8.5 (no check): Imagen's lesson, small.** Freeze the text encoder at its random
# initialisation (train only the UNet), then give it one more layer and twice the width (and
# train it again). Compare adherence at the best scale with this chapter's, at the same UNet. Which
# facts (colour, shape, position, relation) suffer most from a weak text encoder?
#
# **Exercise 8.6 (no check): negative prompts.** Replace the empty caption in the guided
# sampler by a caption to avoid, e.g. "a small red circle in the centre", and sample "a small
# blue circle in the centre" at $s = 3$. Stable Diffusion's "negative prompt" is exactly this
# substitution. Measure how often the evaluator reads red in the images with and without it.
#
# ## References
#
# - R. Rombach, A. Blattmann, D. Lorenz, P. Esser, B. Ommer, "High-Resolution Image Synthesis
#   with Latent Diffusion Models", CVPR 2022 (the autoencoder, sec. 3.1; cross-attention
#   conditioning, sec. 3.3 and eq. 3; the scale factor, sec. 4.3.2 and appendix G).
# - J. Ho, T. Salimans, "Classifier-Free Diffusion Guidance", NeurIPS 2021 Workshop on Deep
#   Generative Models (arXiv:2207.12598, 2022), eq. 6.
# - P. Dhariwal, A. Nichol, "Diffusion Models Beat GANs on Image Synthesis", NeurIPS 2021
#   (classifier guidance).
# - C. Saharia, W. Chan, S. Saxena, et al., "Photorealistic Text-to-Image Diffusion Models with
#   Deep Language Understanding" (Imagen), NeurIPS 2022 (frozen T5 text encoder; fig. 4).
# - A. Ramesh, P. Dhariwal, A. Nichol, C. Chu, M. Chen, "Hierarchical Text-Conditional Image
#   Generation with CLIP Latents" (DALL·E 2), arXiv:2204.06125, 2022.
# - A. Radford, J. W. Kim, C. Hallacy, et al., "Learning Transferable Visual Models From Natural
#   Language Supervision" (CLIP), ICML 2021.
# - A. Vaswani, N. Shazeer, N. Parmar, et al., "Attention Is All You Need", NeurIPS 2017 (eq. 1).
# - P. Esser, S. Kulal, A. Blattmann, et al., "Scaling Rectified Flow Transformers for
#   High-Resolution Image Synthesis" (Stable Diffusion 3), ICML 2024.
# - Y. Lipman, R. T. Q. Chen, H. Ben-Hamu, M. Nickel, M. Le, "Flow Matching for Generative
#   Modeling", ICLR 2023.
# - N. Halko, P.-G. Martinsson, J. A. Tropp, "Finding Structure with Randomness", SIAM Review
#   2011 (the randomised SVD of the PCA-Gaussian baseline).
