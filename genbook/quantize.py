"""Discrete bottlenecks: the VQ-VAE's vector quantizer and finite scalar quantization (FSQ).

* ``VectorQuantizer`` (van den Oord et al. 2017, "Neural Discrete Representation Learning"):
  each latent vector z_e is replaced by its nearest codebook entry e_k; gradients pass
  straight through the rounding (eq. 3's stop-gradients), and the loss adds the codebook
  term ‖sg[z_e] − e‖² and the commitment term β‖z_e − sg[e]‖² (β = 0.25). Options: the
  codebook learned by exponential moving averages instead of its loss term (Razavi et al.
  2019, "Generating Diverse High-Fidelity Images with VQ-VAE-2", appendix A.1 of the 2017
  paper) and restarts of dead codes at encoder outputs (Dhariwal et al. 2020, Jukebox;
  Zeghidour et al. 2021).
* ``FSQ`` (Mentzer et al. 2024, "Finite Scalar Quantization: VQ-VAE Made Simple"): bound
  each of d channels to L_i levels and round; the codebook is the grid, implicit, of size Π L_i.
* ``codebook_usage``: the share of codes used and the perplexity exp(H) of code frequencies,
  measured over a whole data set (a batch's perplexity depends on the batch size).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from genbook.validation import check_tensor


class Quantized(NamedTuple):
    """What a quantizer returns: ``z_q`` (B, D, H, W) with straight-through gradients,
    ``codes`` (B, H, W) int64, and ``loss``, the scalar to add to the reconstruction loss."""

    z_q: torch.Tensor
    codes: torch.Tensor
    loss: torch.Tensor


def nearest_code(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codebook row for each row of z: (N, D), (K, D) -> (N,) int64.

    ‖z − e_k‖² = ‖z‖² − 2 z·e_k + ‖e_k‖²: one matmul instead of an (N, K, D) difference tensor;
    ‖z‖² is the same for every k and is left out of the argmin.
    """
    check_tensor(z, "z", shape=("N", "D"), dtype="floating")
    check_tensor(codebook, "codebook", shape=("K", z.shape[1]), dtype="floating")
    return (codebook.square().sum(1) - 2 * z @ codebook.T).argmin(1)


class VectorQuantizer(nn.Module):
    """Nearest-codebook quantization of (B, D, H, W) latents with K codes of dimension D.

    ema=False: the codebook is a parameter trained by the codebook loss ‖sg[z_e] − e‖².
    ema=True: cluster sizes N_k and sums m_k are averaged, N_k ← γN_k + (1 − γ)n_k,
        m_k ← γm_k + (1 − γ)Σ_{i: k(i)=k} z_i, and e_k = m_k / N_k (Laplace-smoothed N_k).
    restart_below: in training, codes whose averaged cluster size falls below this many
        vectors per batch are moved onto random encoder outputs of the batch (0 disables).
    init: "random" (N(0, 1) codes) or "data" (the first training batch's encoder outputs).
    """

    def __init__(self, num_codes: int, code_dim: int, *, beta: float = 0.25, ema: bool = True,
                 decay: float = 0.99, restart_below: float = 0.0, init: str = "random", eps: float = 1e-5):
        super().__init__()
        for name, value in (("num_codes", num_codes), ("code_dim", code_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}.")
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay!r}.")
        if init not in ("random", "data"):
            raise ValueError(f"init must be 'random' or 'data', got {init!r}.")
        if beta < 0 or restart_below < 0:
            raise ValueError(f"beta and restart_below must be >= 0, got {beta!r} and {restart_below!r}.")
        self.num_codes, self.code_dim, self.beta, self.ema = num_codes, code_dim, beta, ema
        self.decay, self.restart_below, self.init, self.eps = decay, restart_below, init, eps
        self.codebook = nn.Parameter(torch.randn(num_codes, code_dim), requires_grad=not ema)  # e (K, D)
        self.register_buffer("cluster_size", torch.ones(num_codes))  # N_k (EMA)
        self.register_buffer("cluster_sum", self.codebook.detach().clone())  # m_k (EMA)
        self.register_buffer("initialised", torch.tensor(init == "random"))

    def forward(self, z_e: torch.Tensor) -> Quantized:
        check_tensor(z_e, "z_e", shape=("B", self.code_dim, "H", "W"), dtype="floating")
        b, d, h, w = z_e.shape
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, d)  # (B·H·W, D)
        if self.training and not bool(self.initialised):
            self._initialise(flat.detach())
        codes = nearest_code(flat.detach().float(), self.codebook.float())  # (B·H·W,)
        e = self.codebook[codes].to(z_e.dtype)  # (B·H·W, D)
        if self.training and self.ema:
            self._ema_update(flat.detach().float(), codes)
        commitment = self.beta * F.mse_loss(flat, e.detach())  # β ‖z_e − sg[e]‖²
        loss = commitment if self.ema else commitment + F.mse_loss(e, flat.detach())  # + ‖sg[z_e] − e‖²
        z_q = flat + (e - flat).detach()  # straight-through: forward e, backward identity
        return Quantized(z_q.reshape(b, h, w, d).permute(0, 3, 1, 2), codes.reshape(b, h, w), loss)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, H, W) int64 -> latents (B, D, H, W) for the decoder."""
        check_tensor(codes, "codes", shape=("B", "H", "W"), dtype=torch.int64)
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.num_codes):
            raise ValueError(f"codes must lie in 0..{self.num_codes - 1}, got {codes.min()}..{codes.max()}.")
        return self.codebook[codes].permute(0, 3, 1, 2)

    @torch.no_grad()
    def _initialise(self, flat: torch.Tensor) -> None:
        index = torch.randint(len(flat), (self.num_codes,), device=flat.device)
        self.codebook.data.copy_(flat[index].float())
        self.cluster_sum.copy_(self.codebook.data)
        self.initialised.fill_(True)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, codes: torch.Tensor) -> None:
        one_hot = F.one_hot(codes, self.num_codes).type_as(flat)  # (N, K)
        self.cluster_size.lerp_(one_hot.sum(0), 1 - self.decay)  # N_k
        self.cluster_sum.lerp_(one_hot.T @ flat, 1 - self.decay)  # m_k
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.num_codes * self.eps) * total  # Laplace
        self.codebook.data.copy_(self.cluster_sum / smoothed.unsqueeze(1))  # e_k = m_k / N_k
        if self.restart_below > 0:
            dead = self.cluster_size < self.restart_below
            n_dead = int(dead.sum())
            if n_dead:
                fresh = flat[torch.randint(len(flat), (n_dead,), device=flat.device)]
                self.codebook.data[dead] = fresh
                self.cluster_sum[dead] = fresh
                self.cluster_size[dead] = 1.0


class FSQ(nn.Module):
    """Finite scalar quantization: (B, d, H, W) -> the nearest point of a grid with levels[i] values per channel.

    Each channel is bounded to (−(L−1)/2, (L−1)/2) by a shifted tanh, rounded (straight-through), and
    rescaled to [−1, 1]. For even L the grid is offset by ½ so that it is symmetric (Mentzer et al. 2024,
    appendix A.1). The implicit codebook has Π levels entries; ``codes`` index it in mixed radix.
    """

    def __init__(self, levels):
        super().__init__()
        levels = tuple(levels)
        if not levels or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 2 for n in levels):
            raise ValueError(f"levels must be a non-empty sequence of ints >= 2, got {levels!r}.")
        self.levels = levels
        self.code_dim, self.num_codes = len(levels), math.prod(levels)
        radix = [math.prod(levels[:i]) for i in range(len(levels))]
        self.register_buffer("_levels", torch.tensor(levels, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("_radix", torch.tensor(radix, dtype=torch.int64).view(1, -1, 1, 1))

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """(L−1)/2 · tanh(z + shift) − offset: values that round to L integers (shift puts 0 at 0)."""
        half = (self._levels - 1) / 2
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half)
        return half * torch.tanh(z + shift) - offset

    def forward(self, z: torch.Tensor) -> Quantized:
        check_tensor(z, "z", shape=("B", self.code_dim, "H", "W"), dtype="floating")
        bounded = self.bound(z)
        rounded = bounded + (torch.round(bounded) - bounded).detach()  # straight-through rounding
        half_width = torch.div(self._levels, 2, rounding_mode="floor")
        z_q = rounded / half_width  # in [−1, 1]
        digits = (torch.round(bounded).detach() + half_width).long()  # 0..L−1 per channel
        codes = (digits * self._radix).sum(1)  # (B, H, W)
        return Quantized(z_q, codes, z.new_zeros(()))

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, H, W) int64 -> grid points (B, d, H, W) in [−1, 1]."""
        check_tensor(codes, "codes", shape=("B", "H", "W"), dtype=torch.int64)
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.num_codes):
            raise ValueError(f"codes must lie in 0..{self.num_codes - 1}, got {codes.min()}..{codes.max()}.")
        digits = torch.div(codes.unsqueeze(1), self._radix, rounding_mode="floor") % self._levels.long()
        half_width = torch.div(self._levels, 2, rounding_mode="floor")
        return (digits.float() - half_width) / half_width


def codebook_usage(codes: torch.Tensor, num_codes: int) -> dict:
    """Usage of a codebook over a data set's codes (any shape, int64 in 0..num_codes−1).

    Returns ``used`` (distinct codes), ``usage`` (used / num_codes), ``perplexity`` exp(H) of the
    code frequencies (num_codes when all are equally used, 1 when one code takes all) and ``entropy_bits``.
    """
    check_tensor(codes, "codes", dtype=torch.int64)
    if isinstance(num_codes, bool) or not isinstance(num_codes, int) or num_codes < 1:
        raise ValueError(f"num_codes must be a positive int, got {num_codes!r}.")
    if codes.numel() == 0:
        raise ValueError("codes is empty: measure usage over a data set's codes.")
    if codes.min() < 0 or codes.max() >= num_codes:
        raise ValueError(f"codes must lie in 0..{num_codes - 1}, got {codes.min().item()}..{codes.max().item()}.")
    counts = torch.bincount(codes.flatten().cpu(), minlength=num_codes).double()
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum().item()
    used = int((counts > 0).sum())
    return {"used": used, "usage": used / num_codes, "perplexity": math.exp(entropy),
            "entropy_bits": entropy / math.log(2)}
