"""Distances between two clouds of low-dimensional points (the 2D toy chapters).

* ``sliced_wasserstein``: average 1D Wasserstein distance over random directions
  (Rabin, Peyré, Delon & Bernot 2011; Bonneel et al. 2015). In 1D optimal
  transport is sorting: W_p^p = ∫₀¹ |F⁻¹(t) − G⁻¹(t)|^p dt.
* ``wasserstein``: exact W_p between the two empirical measures by the network
  simplex of POT (``pip install POT``, Flamary et al. 2021); without POT it
  falls back to the sliced distance and says so in ``Distance.method``.
* ``mmd``: unbiased MMD² with a mixture of Gaussian kernels (Gretton et al. 2012;
  a sum of bandwidths as in Li et al. 2015, "Generative Moment Matching Networks").
* ``true_density_nll``: −E log p(x) of model samples under the known toy density.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch

from genbook.metrics.kid import mmd2_unbiased
from genbook.validation import check_tensor

HAS_POT = importlib.util.find_spec("ot") is not None
EXACT_MAX_POINTS = 5000  # the exact solver is O(n³) in time and stores an n x m cost matrix


@dataclass(frozen=True)
class Distance:
    """A distance value together with how it was computed (``"exact"`` or ``"sliced"``)."""

    value: float
    method: str

    def __float__(self) -> float:
        return self.value

    def __str__(self) -> str:
        return f"{self.value:.4g} ({self.method})"


def _check_points(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    check_tensor(x, "x", shape=("N", "D"), dtype="floating", min_batch=2, finite=True)
    check_tensor(y, "y", shape=("M", x.shape[1]), dtype="floating", min_batch=2, finite=True)
    return x.detach().to(torch.float64).cpu(), y.detach().to(torch.float64).cpu()


def _quantiles(sorted_values: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Empirical quantile function of each column of ``sorted_values`` (N, P) at ``levels`` (K,) -> (K, P)."""
    n = sorted_values.shape[0]
    index = (levels * n).floor().long().clamp(max=n - 1)  # F⁻¹(t) = x₍⌈tn⌉₎, the step function
    return sorted_values[index]


def sliced_wasserstein(
    x: torch.Tensor, y: torch.Tensor, *, n_projections: int = 256, p: int = 2, seed: int = 0
) -> float:
    """Sliced W_p between point clouds x (N, D) and y (M, D).

    SW_p = (E_θ W_p^p(θᵀx, θᵀy))^{1/p} with θ uniform on the unit sphere,
    estimated with ``n_projections`` directions drawn from ``seed``. Sizes may
    differ: the 1D distance is then taken between the two quantile functions.
    """
    x, y = _check_points(x, y)
    generator = torch.Generator().manual_seed(seed)
    theta = torch.randn(x.shape[1], n_projections, generator=generator, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)  # (D, P) unit directions
    px, _ = (x @ theta).sort(0)  # (N, P) sorted projections
    py, _ = (y @ theta).sort(0)  # (M, P)
    # W_p^p = ∫₀¹ |F⁻¹(t) − G⁻¹(t)|^p dt; both quantile functions are steps, constant
    # between the merged breakpoints i/N and j/M, so the integral is an exact sum.
    n, m = px.shape[0], py.shape[0]
    steps = [torch.arange(1, k + 1, dtype=torch.float64) / k for k in (n, m)]
    cuts = torch.cat(steps).unique()  # sorted
    widths = torch.diff(cuts, prepend=cuts.new_zeros(1))  # (K,)
    middles = cuts - widths / 2
    gap = _quantiles(px, middles) - _quantiles(py, middles)  # (K, P)
    per_direction = (gap.abs() ** p * widths.unsqueeze(1)).sum(0)  # W_p^p along each direction
    return per_direction.mean().item() ** (1 / p)


def wasserstein(x: torch.Tensor, y: torch.Tensor, *, p: int = 2, method: str = "auto", seed: int = 0) -> Distance:
    """W_p between the empirical measures of x (N, D) and y (M, D), as a ``Distance``.

    method: ``"exact"`` (needs POT), ``"sliced"``, or ``"auto"``: exact when POT is
    installed and N, M <= EXACT_MAX_POINTS, else sliced. Sliced W_p is a lower
    bound of W_p, so compare numbers only when their ``method`` agrees.
    """
    if method not in ("auto", "exact", "sliced"):
        raise ValueError(f"method must be 'auto', 'exact' or 'sliced', got {method!r}.")
    xd, yd = _check_points(x, y)
    small = max(xd.shape[0], yd.shape[0]) <= EXACT_MAX_POINTS
    if method == "exact" and not HAS_POT:
        raise ImportError("method='exact' needs the POT package: pip install POT")
    if method == "exact" or (method == "auto" and HAS_POT and small):
        import ot

        cost = torch.cdist(xd, yd) ** p  # C_ij = ||x_i − y_j||^p
        a = torch.full((xd.shape[0],), 1 / xd.shape[0], dtype=torch.float64)
        b = torch.full((yd.shape[0],), 1 / yd.shape[0], dtype=torch.float64)
        total = ot.emd2(a.numpy(), b.numpy(), cost.numpy(), numItermax=10_000_000)  # min_π Σ π_ij C_ij
        return Distance(float(total) ** (1 / p), "exact")
    return Distance(sliced_wasserstein(xd, yd, p=p, seed=seed), "sliced")


def mmd(x: torch.Tensor, y: torch.Tensor, *, bandwidths: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)) -> float:
    """Unbiased MMD² between x (N, D) and y (M, D) with k(a, b) = Σ_h exp(−||a − b||² / (2h²)).

    Centred at 0 when x and y come from the same distribution (so it can be
    slightly negative). The default bandwidths suit the toy data, whose
    features live at scales of about 0.1 to 4.
    """
    x, y = _check_points(x, y)
    if not bandwidths or any(h <= 0 for h in bandwidths):
        raise ValueError(f"bandwidths must be positive numbers, got {bandwidths!r}.")

    def kernel(a, b):
        d2 = torch.cdist(a, b).square()
        return sum(torch.exp(-d2 / (2 * h * h)) for h in bandwidths)

    return mmd2_unbiased(kernel(x, x), kernel(y, y), kernel(x, y)).item()


def true_density_nll(distribution, samples: torch.Tensor) -> float:
    """Mean negative log density −(1/N) Σ log p(xₙ) of ``samples`` (N, 2) under the toy ``distribution``.

    Real samples score the distribution's entropy on average (``distribution.entropy()``),
    so that is the baseline. Low NLL alone rewards collapsing onto the modes: report
    it next to a two-sample distance such as ``wasserstein`` or ``mmd``.
    """
    check_tensor(samples, "samples", shape=("N", 2), dtype="floating", min_batch=1)
    return -distribution.log_prob(samples.detach().float().cpu()).double().mean().item()
