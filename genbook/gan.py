"""Generative adversarial networks: the two losses, the DCGAN pair (optionally class-conditional), mode coverage.

Taught in chapter 04. Goodfellow et al. (2014), "Generative Adversarial Nets", eq. 1:

    min_G max_D V(D, G) = E_{x ~ p_data}[log D(x)] + E_{z ~ p_z}[log(1 − D(G(z)))].

The discriminator returns a *logit* ℓ, with D = σ(ℓ), so that every log is computed
stably: log σ(ℓ) = −softplus(−ℓ) and log(1 − σ(ℓ)) = −softplus(ℓ).

* :func:`discriminator_loss` is −V(D, G) on a batch (D ascends V by descending it);
* :func:`generator_loss` is either the *minimax* loss log(1 − D(G(z))) of eq. 1 or
  the *non-saturating* loss −log D(G(z)) that Goodfellow et al. recommend (sec. 3):
  same fixed point, strong gradients when D confidently rejects G's samples;
* :class:`DCGANGenerator` / :class:`DCGANDiscriminator` follow the architecture
  guidelines of Radford, Metz & Chintala (2016) at 28×28; with ``num_classes`` the
  generator reads a label embedding next to z (Mirza & Osindero 2014) and the
  discriminator adds a projection term ⟨embed(y), φ(x)⟩ (Miyato & Koyama 2018);
* :func:`mode_coverage` counts the modes of a known mixture that samples reach
  (the 2D test of mode collapse, e.g. Metz et al. 2017; Srivastava et al. 2017).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .validation import check_tensor

GENERATOR_LOSSES = ("non_saturating", "minimax")


def _check_logits(logits, name: str) -> torch.Tensor:
    """Discriminator logits: a float tensor (B,) or (B, 1) with B >= 1; returned as (B,)."""
    check_tensor(logits, name, dtype="floating", min_batch=1)
    if logits.dim() == 2 and logits.shape[1] == 1:
        logits = logits.squeeze(1)
    if logits.dim() != 1:
        raise ValueError(f"{name} must have shape (B,) or (B, 1) (one logit per sample), got {tuple(logits.shape)}.")
    return logits


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """−V(D, G) of eq. 1 on a batch: −mean log D(x) − mean log(1 − D(G(z))), with D = σ(logit).

    real_logits: (B,) or (B, 1) logits on data; fake_logits: (B',) or (B', 1) on generated samples.
    Equals binary cross-entropy with targets 1 for real and 0 for fake. Returns a scalar.
    """
    real_logits = _check_logits(real_logits, "real_logits")
    fake_logits = _check_logits(fake_logits, "fake_logits")
    # −log σ(ℓ) = softplus(−ℓ);  −log(1 − σ(ℓ)) = softplus(ℓ)
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor, kind: str = "non_saturating") -> torch.Tensor:
    """The generator's loss on D's logits for G(z), (B,) or (B, 1); returns a scalar.

    ``"minimax"``: mean log(1 − D(G(z))), the generator's term of eq. 1 (it saturates:
    its gradient vanishes when D(G(z)) → 0, i.e. early in training).
    ``"non_saturating"``: −mean log D(G(z)) (Goodfellow et al. 2014, sec. 3).
    """
    if kind not in GENERATOR_LOSSES:
        raise ValueError(f"kind must be one of {GENERATOR_LOSSES}, got {kind!r}.")
    fake_logits = _check_logits(fake_logits, "fake_logits")
    if kind == "minimax":
        return -F.softplus(fake_logits).mean()  # log(1 − σ(ℓ)) = −softplus(ℓ)
    return F.softplus(-fake_logits).mean()  # −log σ(ℓ) = softplus(−ℓ)


def optimal_discriminator(log_p_data: torch.Tensor, log_p_model: torch.Tensor) -> torch.Tensor:
    """D*(x) = p_data(x) / (p_data(x) + p_g(x)) (Goodfellow et al. 2014, Proposition 1), from log densities.

    Computed as σ(log p_data − log p_g), which stays finite where both densities underflow.
    """
    check_tensor(log_p_data, "log_p_data", dtype="floating")
    check_tensor(log_p_model, "log_p_model", shape=tuple(log_p_data.shape), dtype="floating")
    return torch.sigmoid(log_p_data - log_p_model)


def dcgan_init(module: nn.Module) -> None:
    """Radford et al. (2016), sec. 4: weights ~ N(0, 0.02²), batch-norm scales ~ N(1, 0.02²), biases 0.

    Use as ``model.apply(dcgan_init)``; modules other than (transposed) convolutions,
    linear layers and batch norms (embeddings, activations) are left as they are.
    """
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def _check_labels(y, batch: int, num_classes: int | None) -> torch.Tensor | None:
    if num_classes is None:
        if y is not None:
            raise ValueError("this model is unconditional (num_classes=None) but got labels y.")
        return None
    if y is None:
        raise ValueError(f"this model is class-conditional (num_classes={num_classes}): pass labels y of shape (B,).")
    return check_tensor(y, "y", shape=(batch,), dtype=torch.int64, value_range=(0, num_classes - 1))


class DCGANGenerator(nn.Module):
    """z (B, z_dim) [, y (B,)] -> images (B, C, 28, 28) in [-1, 1] (tanh).

    Radford et al. (2016): project and reshape z to (2w, 7, 7), then fractionally
    strided convolutions (ConvTranspose 4×4, stride 2) 7 → 14 → 28, batch norm and
    ReLU in every layer but the output, which is tanh. With ``num_classes`` the
    input is [z, embed(y)] (Mirza & Osindero 2014: the condition is fed to G with z).
    """

    def __init__(self, z_dim: int = 100, width: int = 64, num_classes: int | None = None, channels: int = 1,
                 embed_dim: int = 32):
        super().__init__()
        if z_dim < 1 or width < 1 or channels < 1:
            raise ValueError(f"z_dim, width and channels must be positive, got {z_dim}, {width}, {channels}.")
        self.z_dim, self.width, self.num_classes = z_dim, width, num_classes
        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes else None
        w = width
        self.project = nn.Sequential(  # z -> (B, 2w, 7, 7): the "project and reshape" layer
            nn.Linear(z_dim + (embed_dim if num_classes else 0), 2 * w * 7 * 7, bias=False),
            nn.Unflatten(1, (2 * w, 7, 7)), nn.BatchNorm2d(2 * w), nn.ReLU(),
        )  # fmt: skip
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1, bias=False),  # (B, w, 14, 14)
            nn.BatchNorm2d(w), nn.ReLU(),
            nn.ConvTranspose2d(w, channels, 4, stride=2, padding=1),  # (B, C, 28, 28)
            nn.Tanh(),
        )  # fmt: skip

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_tensor(z, "z", shape=("B", self.z_dim), dtype="floating", min_batch=1)
        y = _check_labels(y, z.shape[0], self.num_classes)
        if y is not None:
            z = torch.cat([z, self.embed(y)], dim=1)  # (B, z_dim + embed_dim)
        return self.upsample(self.project(z))


class DCGANDiscriminator(nn.Module):
    """images (B, C, 28, 28) [, y (B,)] -> logits (B,), with D(x) = σ(logit).

    Radford et al. (2016): strided convolutions (4×4, stride 2) 28 → 14 → 7 instead of
    pooling, LeakyReLU(0.2), batch norm in every layer but the first, no hidden fully
    connected layer: the flattened features φ(x) (B, 2w·7·7) go straight to one logit.
    With ``num_classes`` the projection discriminator of Miyato & Koyama (2018) adds
    ⟨V_y, φ(x)⟩: logit(x, y) = wᵀφ(x) + b + V_yᵀφ(x).
    """

    def __init__(self, width: int = 64, num_classes: int | None = None, channels: int = 1):
        super().__init__()
        if width < 1 or channels < 1:
            raise ValueError(f"width and channels must be positive, got {width}, {channels}.")
        self.width, self.num_classes, self.channels = width, num_classes, channels
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(channels, w, 4, stride=2, padding=1), nn.LeakyReLU(0.2),  # (B, w, 14, 14)
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * w),
            nn.LeakyReLU(0.2),  # (B, 2w, 7, 7)
            nn.Flatten(),  # φ(x): (B, 2w·49)
        )  # fmt: skip
        self.out = nn.Linear(2 * w * 7 * 7, 1)
        self.project = nn.Embedding(num_classes, 2 * w * 7 * 7) if num_classes else None
        if self.project is not None:  # V = 0: training starts from an unconditional discriminator
            nn.init.zeros_(self.project.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_tensor(x, "x", shape=("B", self.channels, 28, 28), dtype="floating", min_batch=1)
        y = _check_labels(y, x.shape[0], self.num_classes)
        phi = self.features(x)  # (B, 2w·49)
        logit = self.out(phi).squeeze(1)  # (B,)
        if y is not None:
            logit = logit + (self.project(y) * phi).sum(1)  # + ⟨V_y, φ(x)⟩
        return logit


@dataclass(frozen=True)
class ModeCoverage:
    """What :func:`mode_coverage` found: ``covered`` modes out of ``len(counts)``."""

    covered: int  # modes with at least min_count nearby samples
    counts: list[int]  # samples within `radius` standard deviations of each mode (nearest mode only)
    high_quality: float  # fraction of all samples within `radius` standard deviations of some mode
    min_count: float  # the threshold a mode's count had to reach

    def __str__(self) -> str:
        return f"{self.covered}/{len(self.counts)} modes, {self.high_quality:.0%} high-quality samples"


def mode_coverage(samples: torch.Tensor, centres: torch.Tensor, std: float, *, radius: float = 3.0,
                  min_share: float = 0.25) -> ModeCoverage:
    """How many modes of a mixture of K equal isotropic Gaussians the samples cover.

    samples: (N, D); centres: (K, D); std: the components' standard deviation.
    A sample is *high quality* when it lies within ``radius``·std of its nearest
    centre (3σ, as in Srivastava et al. 2017); it then counts for that centre.
    A mode is *covered* when at least ``min_share`` of its fair share N/K of
    samples count for it: true samples give every mode about 99% of N/K (in 2D),
    a collapsed generator leaves most modes near 0.
    """
    check_tensor(samples, "samples", shape=("N", "D"), dtype="floating", min_batch=1)
    check_tensor(centres, "centres", shape=("K", samples.shape[1]), dtype="floating", min_batch=1)
    if not std > 0 or not radius > 0:
        raise ValueError(f"std and radius must be positive, got std={std}, radius={radius}.")
    if not 0 < min_share <= 1:
        raise ValueError(f"min_share must be in (0, 1], got {min_share}.")
    samples, centres = samples.detach().double().cpu(), centres.detach().double().cpu()
    distance, nearest = torch.cdist(samples, centres).min(dim=1)  # (N,), (N,)
    good = distance <= radius * std
    counts = torch.bincount(nearest[good], minlength=len(centres))  # (K,)
    min_count = min_share * len(samples) / len(centres)
    return ModeCoverage(int((counts >= min_count).sum()), counts.tolist(), good.double().mean().item(), min_count)
