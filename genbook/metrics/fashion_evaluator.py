"""A small Fashion-MNIST classifier that genbook trains itself, and the image metrics built on it.

FID measures samples in the features of an ImageNet Inception network (Heusel
et al. 2017). For 28x28 grey clothes genbook uses a small CNN trained on
Fashion-MNIST instead, and calls the result FD (it is not FID; the numbers are
not comparable with published FIDs). The CNN's penultimate activations (128
numbers per image) are the feature space; its predictions give conditional
accuracy, the fraction of class-conditional samples that the evaluator
assigns to the requested class.

Training is deterministic: fixed seed, fixed step count (4 epochs), always on
the CPU in float32 on one thread (see ``genbook.devices.cpu_threads``), about 50 s on a 2-core CPU, cached with
``load_or_train``.
The config holds no profile setting, so the fast and full profiles train the
same evaluator (each caches its own copy, since cache keys include the profile)
and their FDs mean the same thing.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from genbook.checkpoint import load_or_train
from genbook.devices import device as default_device
from genbook.metrics.evaluator_training import train_one_cycle
from genbook.metrics.frechet import frechet_distance
from genbook.metrics.kid import KID, kernel_inception_distance
from genbook.validation import check_tensor

N_CLASSES = 10
MIN_IMAGES_FD = 1000  # FD is biased upwards at small n; the book compares FDs at >= 1,000 images

CONFIG = {
    "version": 1,
    "data": "fashion-mnist train (60000)",
    "width": 16,
    "features": 128,
    "epochs": 4,
    "batch_size": 256,
    "lr": 1e-2,
    "seed": 0,
    "threads": 1,  # CPU threads while training (None: leave torch's setting), see genbook.devices.cpu_threads
}


def check_fashion_images(x, name: str = "images") -> torch.Tensor:
    """Raise unless ``x`` is a float tensor (N, 1, 28, 28) with finite values in [-1, 1]."""
    check_tensor(x, name, shape=("N", 1, 28, 28), dtype="floating", min_batch=1)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    check_tensor(x, name, value_range=(-1.0, 1.0))
    return x


class FashionEvaluator(nn.Module):
    """CNN (N, 1, 28, 28) in [-1, 1] -> features (N, 128) -> logits (N, 10).

    conv 5x5 stride 2 (28 -> 14), conv 3x3, max-pool (-> 7), conv 3x3, then a
    fully connected layer whose ReLU output is the feature space.
    """

    def __init__(self, width: int = 16, features: int = 128):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(1, w, 5, stride=2, padding=2), nn.BatchNorm2d(w), nn.ReLU(),  # (N, w, 14, 14)
            nn.Conv2d(w, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2),  # (N, w, 7, 7)
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),  # (N, 2w, 7, 7)
            nn.Flatten(), nn.Linear(2 * w * 49, features), nn.ReLU(),  # (N, features)
        )  # fmt: skip
        self.head = nn.Linear(features, N_CLASSES)
        self.feature_dim = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, 10) of a batch, with gradients and no input checks (for training)."""
        return self.head(self.body(x))

    @torch.no_grad()
    def _map(self, x: torch.Tensor, fn, name: str, batch_size: int) -> torch.Tensor:
        check_fashion_images(x, name)
        dev = next(self.parameters()).device
        was_training = self.training
        self.eval()
        try:
            out = [fn(x[i : i + batch_size].to(dev, torch.float32)).float().cpu() for i in range(0, len(x), batch_size)]
        finally:
            self.train(was_training)
        return torch.cat(out)

    def features(self, x: torch.Tensor, *, batch_size: int = 1000) -> torch.Tensor:
        """Penultimate activations (N, 128) on the CPU for images (N, 1, 28, 28) in [-1, 1]."""
        return self._map(x, self.body, "images", batch_size)

    def logits(self, x: torch.Tensor, *, batch_size: int = 1000) -> torch.Tensor:
        """Class logits (N, 10) on the CPU for images (N, 1, 28, 28) in [-1, 1]."""
        return self._map(x, self.forward, "images", batch_size)

    def predict(self, x: torch.Tensor, *, batch_size: int = 1000) -> torch.Tensor:
        """Predicted classes (N,) int64."""
        return self.logits(x, batch_size=batch_size).argmax(1)

    def accuracy(self, x: torch.Tensor, labels: torch.Tensor) -> float:
        """Fraction of images (N, 1, 28, 28) whose predicted class equals ``labels`` (N,)."""
        check_tensor(labels, "labels", shape=(len(x),), dtype=torch.int64, value_range=(0, N_CLASSES - 1))
        return (self.predict(x) == labels.cpu()).double().mean().item()


def train_fashion_evaluator(model: FashionEvaluator, config: dict = CONFIG) -> dict:
    """Train ``model`` in place (CPU, Adam with a one-cycle schedule); return facts about the run."""
    from genbook.data.fashion_mnist import fashion_mnist

    start, cpu_start = time.perf_counter(), time.process_time()
    x, y = fashion_mnist("train")
    losses = train_one_cycle(
        model, len(x), lambda index: F.cross_entropy(model(x[index]), y[index]),
        epochs=config["epochs"], batch_size=config["batch_size"], lr=config["lr"], seed=config["seed"],
        threads=config["threads"],
    )
    train_seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    steps = len(losses)
    x_test, y_test = fashion_mnist("test")
    return {
        "train_seconds": round(train_seconds, 2),  # wall clock, data loading included
        "train_cpu_seconds": round(cpu_seconds, 2),  # CPU time: about the wall time on an idle machine
        "steps": steps,
        "test_accuracy": model.accuracy(x_test, y_test),
        "losses": losses[:: max(1, steps // 200)].tolist(),  # about 200 points for a plot
    }


def fashion_evaluator(device: torch.device | str | None = None, *, retrain: bool = False) -> FashionEvaluator:
    """The trained evaluator in eval mode on ``device`` (default: ``genbook.devices.device()``).

    The first call trains it (about half a minute on a 2-core CPU); later calls
    load the cached weights. ``evaluator.info`` holds the training facts
    (``test_accuracy``, ``train_seconds``, ``cached``, ``path``, ``losses``).
    """
    with torch.random.fork_rng(devices=[]):  # seed the initial weights without touching the caller's RNG
        torch.manual_seed(CONFIG["seed"])
        model = FashionEvaluator(CONFIG["width"], CONFIG["features"])
    model, info = load_or_train(
        model, train_fashion_evaluator, chapter="metrics", name="fashion_evaluator", config=CONFIG, retrain=retrain
    )
    model.info = info
    return model.eval().requires_grad_(False).to(device if device is not None else default_device())


def _evaluator(evaluator: FashionEvaluator | None) -> FashionEvaluator:
    return evaluator if evaluator is not None else fashion_evaluator()


def fashion_fd(
    samples: torch.Tensor,
    reference: torch.Tensor,
    *,
    evaluator: FashionEvaluator | None = None,
    min_samples: int = MIN_IMAGES_FD,
) -> float:
    """FD between ``samples`` and ``reference`` (each (N, 1, 28, 28) in [-1, 1]) in evaluator features.

    Compare FDs only at equal sample counts (FD falls as n grows), e.g. with the
    baselines of ``genbook.metrics.baselines`` computed at the same n.
    """
    for name, x in (("samples", samples), ("reference", reference)):
        check_fashion_images(x, name)
        if len(x) < min_samples:
            raise ValueError(
                f"{name} has {len(x)} images; FD needs at least {min_samples}: it is biased upwards at small n "
                f"(and singular below 2 x {CONFIG['features']} features). Generate more samples, or pass "
                f"min_samples= knowingly and compare only with baselines at the same n."
            )
    ev = _evaluator(evaluator)
    return frechet_distance(ev.features(samples), ev.features(reference), min_samples=min_samples)


def fashion_kid(
    samples: torch.Tensor, reference: torch.Tensor, *, evaluator: FashionEvaluator | None = None, **kid_options
) -> KID:
    """KID (mean, std) between ``samples`` and ``reference`` (each (N, 1, 28, 28) in [-1, 1]).

    ``kid_options`` go to ``kernel_inception_distance`` (n_subsets, subset_size, seed).
    """
    check_fashion_images(samples, "samples")
    check_fashion_images(reference, "reference")
    ev = _evaluator(evaluator)
    return kernel_inception_distance(ev.features(samples), ev.features(reference), **kid_options)


def conditional_accuracy(
    samples: torch.Tensor, requested_labels: torch.Tensor, *, evaluator: FashionEvaluator | None = None
) -> float:
    """Fraction of ``samples`` (N, 1, 28, 28) that the evaluator classifies as ``requested_labels`` (N,)."""
    check_fashion_images(samples, "samples")
    check_tensor(
        requested_labels, "requested_labels", shape=(len(samples),), dtype=torch.int64, value_range=(0, N_CLASSES - 1)
    )
    return _evaluator(evaluator).accuracy(samples, requested_labels)
