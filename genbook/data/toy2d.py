"""2D toy distributions: a sampleable base class and small concrete distributions.

The families are the usual test beds of generative models in the plane, as in
FFJORD (Grathwohl et al. 2019, arXiv:1810.01367), NCSN (Song & Ermon 2019,
arXiv:1907.05600) and flow matching (Lipman et al. 2023, arXiv:2210.02747).
Where the density is known in closed form, ``log_prob`` and ``score``
(= grad_x log p(x)) are exact, so a chapter can report an NLL against the truth
and check a learned score; elsewhere they raise NotImplementedError.
"""

from __future__ import annotations

import math

import torch

from genbook.validation import check_tensor

ENTROPY_SAMPLES = 200_000  # Monte Carlo entropy: samples drawn with ...
ENTROPY_SEED = 0  # ... this seed, so the number is the same on every run


class ToyDistribution:
    """A distribution on R^2: ``sample(n) -> (n, 2)``; optionally ``log_prob``, ``score``, ``entropy``."""

    name = "toy"

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n float32 samples, (n, 2)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}.")
        return self._sample(n, generator).float()

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) for x (n, 2), shape (n,), in x's dtype."""
        check_tensor(x, "x", shape=("n", 2), dtype="floating")
        return self._log_prob(x)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """grad_x log p(x) for x (n, 2), shape (n, 2), in x's dtype."""
        check_tensor(x, "x", shape=("n", 2), dtype="floating")
        return self._score(x)

    def entropy(self) -> float:
        """Differential entropy H = -E[log p(x)] in nats."""
        raise NotImplementedError(f"{type(self).__name__} has no known density, so no entropy.")

    def _sample(self, n, generator):
        raise NotImplementedError

    def _log_prob(self, x):
        raise NotImplementedError(
            f"{type(self).__name__} has no closed-form density: it can be sampled, not evaluated. "
            "Use a Gaussian mixture or the checkerboard for likelihoods."
        )

    def _score(self, x):
        raise NotImplementedError(f"{type(self).__name__} has no closed-form density, so no exact score.")

    def _monte_carlo_entropy(self) -> float:
        """-mean log p(x) over ENTROPY_SAMPLES samples with a fixed seed (float64).

        Its standard error is std(log p) / sqrt(ENTROPY_SAMPLES), about 0.002 nats for the mixtures here.
        """
        generator = torch.Generator().manual_seed(ENTROPY_SEED)
        x = self._sample(ENTROPY_SAMPLES, generator).double()
        return -self._log_prob(x).mean().item()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class GaussianMixture(ToyDistribution):
    """p(x) = sum_k w_k N(x; mu_k, Sigma_k) with K components in R^2.

    means (K, 2), covariances (K, 2, 2) symmetric positive definite, weights (K,)
    positive (normalised here; uniform if omitted).
    """

    name = "gaussian_mixture"

    def __init__(self, means: torch.Tensor, covariances: torch.Tensor, weights: torch.Tensor | None = None):
        means = torch.as_tensor(means, dtype=torch.float64)
        check_tensor(means, "means", shape=("K", 2), min_batch=1)
        k = means.shape[0]
        covariances = torch.as_tensor(covariances, dtype=torch.float64)
        check_tensor(covariances, "covariances", shape=(k, 2, 2))
        if not torch.allclose(covariances, covariances.transpose(1, 2)):
            raise ValueError("covariances must be symmetric.")
        cholesky, info = torch.linalg.cholesky_ex(covariances)
        if info.any():
            raise ValueError("covariances must be positive definite.")
        weights = torch.full((k,), 1.0 / k, dtype=torch.float64) if weights is None else torch.as_tensor(weights)
        weights = weights.to(torch.float64)
        check_tensor(weights, "weights", shape=(k,))
        if (weights <= 0).any():
            raise ValueError("weights must be positive.")
        self.means, self.covariances, self.weights = means, covariances, weights / weights.sum()
        self.cholesky = cholesky  # Sigma_k = L_k L_k^T
        self.precisions = torch.cholesky_inverse(cholesky)  # Sigma_k^{-1}, (K, 2, 2)
        self._entropy = None

    @classmethod
    def isotropic(cls, means, std: float | torch.Tensor, weights=None) -> GaussianMixture:
        """Components N(mu_k, std_k^2 I); ``std`` a float or (K,)."""
        means = torch.as_tensor(means, dtype=torch.float64)
        std = torch.as_tensor(std, dtype=torch.float64).expand(means.shape[0])
        return cls(means, std.view(-1, 1, 1) ** 2 * torch.eye(2, dtype=torch.float64), weights)

    def _sample(self, n, generator):
        component = torch.multinomial(self.weights, n, replacement=True, generator=generator)  # (n,)
        noise = torch.randn(n, 2, dtype=torch.float64, generator=generator)
        # x = mu_k + L_k z with z ~ N(0, I)
        return self.means[component] + (self.cholesky[component] @ noise.unsqueeze(-1)).squeeze(-1)

    def _component_log_probs(self, x):
        """log w_k + log N(x; mu_k, Sigma_k), (n, K), and the differences x - mu_k, (n, K, 2)."""
        diff = x.unsqueeze(1) - self.means.to(x.dtype)  # (n, K, 2)
        precision = self.precisions.to(x.dtype)
        mahalanobis = torch.einsum("nki,kij,nkj->nk", diff, precision, diff)
        log_det = 2 * torch.log(torch.diagonal(self.cholesky, dim1=1, dim2=2)).sum(-1).to(x.dtype)  # (K,)
        log_normal = -0.5 * mahalanobis - 0.5 * log_det - math.log(2 * math.pi)
        return torch.log(self.weights).to(x.dtype) + log_normal, diff

    def _log_prob(self, x):
        joint, _ = self._component_log_probs(x)
        return torch.logsumexp(joint, dim=1)

    def _score(self, x):
        # grad log p(x) = sum_k r_k(x) Sigma_k^{-1} (mu_k - x), r_k = posterior responsibility
        joint, diff = self._component_log_probs(x)
        responsibility = torch.softmax(joint, dim=1)  # (n, K)
        pulls = -torch.einsum("kij,nkj->nki", self.precisions.to(x.dtype), diff)  # (n, K, 2)
        return (responsibility.unsqueeze(-1) * pulls).sum(1)

    def entropy(self) -> float:
        """Closed form for one component, 0.5 log((2 pi e)^2 det Sigma); else Monte Carlo (see base)."""
        if len(self.weights) == 1:
            log_det = 2 * torch.log(torch.diagonal(self.cholesky[0])).sum().item()
            return 0.5 * (2 * math.log(2 * math.pi * math.e) + log_det)
        if self._entropy is None:  # about a second for 25 components; computed once per object
            self._entropy = self._monte_carlo_entropy()
        return self._entropy

    def __repr__(self) -> str:
        return f"GaussianMixture(K={len(self.weights)})"


def eight_gaussians(radius: float = 2.0, std: float = 0.2) -> GaussianMixture:
    """8 equal isotropic Gaussians evenly spaced on a circle of ``radius`` (as in FFJORD's "8gaussians")."""
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], 1)
    mixture = GaussianMixture.isotropic(means, std)
    mixture.name = "eight_gaussians"
    return mixture


def twenty_five_gaussians(spacing: float = 1.0, std: float = 0.08) -> GaussianMixture:
    """25 equal isotropic Gaussians on a 5 x 5 grid centred at 0 (the "25-Gaussians" test of GAN papers)."""
    ticks = (torch.arange(5, dtype=torch.float64) - 2) * spacing
    means = torch.cartesian_prod(ticks, ticks)
    mixture = GaussianMixture.isotropic(means, std)
    mixture.name = "twenty_five_gaussians"
    return mixture


class Checkerboard(ToyDistribution):
    """Uniform on the dark squares of a ``cells`` x ``cells`` board covering [-half_width, half_width]^2.

    A square (i, j) (column i, row j from the lower left) is filled when i + j is
    even, so cells^2 / 2 squares (rounded up) carry density 1 / (filled area):
    log p is that constant inside, -inf outside; the score is 0 inside and
    undefined (NaN) outside the support.
    """

    name = "checkerboard"

    def __init__(self, cells: int = 4, half_width: float = 2.0):
        if not isinstance(cells, int) or cells < 2:
            raise ValueError(f"cells must be an int >= 2, got {cells!r}.")
        if half_width <= 0:
            raise ValueError(f"half_width must be positive, got {half_width}.")
        self.cells, self.half_width = cells, float(half_width)
        self.side = 2 * self.half_width / cells
        index = torch.cartesian_prod(torch.arange(cells), torch.arange(cells))  # (cells^2, 2) = (i, j)
        self.filled = index[(index.sum(1) % 2) == 0]  # (F, 2)
        self.area = len(self.filled) * self.side**2

    def _sample(self, n, generator):
        square = torch.randint(len(self.filled), (n,), generator=generator)
        corner = self.filled[square].double() * self.side - self.half_width  # lower-left corners
        return corner + torch.rand(n, 2, dtype=torch.float64, generator=generator) * self.side

    def _inside(self, x):
        cell = torch.floor((x + self.half_width) / self.side)  # (n, 2) square indices (i, j)
        on_board = ((cell >= 0) & (cell < self.cells)).all(1)
        return on_board & (cell.sum(1) % 2 == 0)

    def _log_prob(self, x):
        inside = self._inside(x)
        value = torch.full_like(x[:, 0], -math.log(self.area))
        return value.masked_fill(~inside, -math.inf)

    def _score(self, x):
        return torch.zeros_like(x).masked_fill(~self._inside(x).unsqueeze(1), math.nan)

    def entropy(self) -> float:
        """log(area of the filled squares): a uniform density on a set of area A has entropy log A."""
        return math.log(self.area)

    def __repr__(self) -> str:
        return f"Checkerboard(cells={self.cells}, half_width={self.half_width})"


class TwoMoons(ToyDistribution):
    """Two interleaved half circles plus Gaussian noise (as scikit-learn's make_moons), sample only.

    Upper moon (cos t, sin t), lower moon (1 - cos t, 0.5 - sin t), t ~ U[0, pi],
    each chosen with probability 1/2, plus N(0, noise^2 I); then centred by
    subtracting (0.5, 0.25). Its density is an integral over t with no closed form.
    """

    name = "two_moons"

    def __init__(self, noise: float = 0.05):
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}.")
        self.noise = float(noise)

    def _sample(self, n, generator):
        t = torch.rand(n, dtype=torch.float64, generator=generator) * math.pi
        lower = torch.rand(n, generator=generator) < 0.5
        x = torch.where(lower, 1 - torch.cos(t), torch.cos(t))
        y = torch.where(lower, 0.5 - torch.sin(t), torch.sin(t))
        points = torch.stack([x - 0.5, y - 0.25], 1)
        return points + self.noise * torch.randn(n, 2, dtype=torch.float64, generator=generator)

    def __repr__(self) -> str:
        return f"TwoMoons(noise={self.noise})"


class Spirals(ToyDistribution):
    """Two interleaved spiral arms plus Gaussian noise (after FFJORD's "2spirals"), sample only.

    Arm 1 is r(s) (-cos s, sin s) / 3 with s = sqrt(u) * turns * 2 pi, u ~ U[0, 1]
    and r(s) = s; arm 2 is its point reflection; then N(0, noise^2 I) is added.
    """

    name = "spirals"

    def __init__(self, turns: float = 1.5, noise: float = 0.1):
        if turns <= 0 or noise < 0:
            raise ValueError(f"need turns > 0 and noise >= 0, got turns={turns}, noise={noise}.")
        self.turns, self.noise = float(turns), float(noise)

    def _sample(self, n, generator):
        s = torch.sqrt(torch.rand(n, dtype=torch.float64, generator=generator)) * self.turns * 2 * math.pi
        arm = torch.where(torch.rand(n, generator=generator) < 0.5, 1.0, -1.0).to(torch.float64)
        points = arm.unsqueeze(1) * torch.stack([-torch.cos(s) * s, torch.sin(s) * s], 1) / 3
        return points + self.noise * torch.randn(n, 2, dtype=torch.float64, generator=generator)

    def __repr__(self) -> str:
        return f"Spirals(turns={self.turns}, noise={self.noise})"


TOY_DISTRIBUTIONS = {
    "eight_gaussians": eight_gaussians,
    "twenty_five_gaussians": twenty_five_gaussians,
    "checkerboard": Checkerboard,
    "two_moons": TwoMoons,
    "spirals": Spirals,
}


def toy_distribution(name: str, **kwargs) -> ToyDistribution:
    """The toy distribution registered under ``name`` (keyword arguments go to its constructor)."""
    if name not in TOY_DISTRIBUTIONS:
        raise ValueError(f"Unknown toy distribution {name!r}; choose one of {sorted(TOY_DISTRIBUTIONS)}.")
    return TOY_DISTRIBUTIONS[name](**kwargs)
