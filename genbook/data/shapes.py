"""Shapes with captions: procedural images that come with exact attribute labels.

Each image shows one or two coloured shapes on black, each inside its own cell
of a 3x3 grid (so they never overlap), with a caption from a template:

* one shape:  "a small red circle in the top left"
* two shapes: "a blue square above a green star" (or "below", "left of", "right of")

The labels say exactly what is drawn, so an evaluator can be trained on them
and then measure how well a text-to-image model follows its captions, in the
spirit of CLEVR (Johnson et al. 2017, arXiv:1612.06890) and of the captioned
MNIST layouts of alignDRAW (Mansimov et al. 2016, arXiv:1511.02793).

Rasterisation is vectorised: every shape is a signed distance function
(negative inside, in pixels) evaluated on a small patch of pixels around every
shape of a chunk at once, (B, 2, P, P), and ``alpha = clamp(0.5 - sdf, 0, 1)``
gives anti-aliased edges about a pixel wide.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch

COLOURS = ("red", "green", "blue", "yellow", "magenta", "cyan")
SHAPES = ("circle", "square", "triangle", "star")
SIZES = ("small", "large")
POSITIONS = (  # the 3 x 3 grid cells: index = 3 * row + column, row 0 at the top
    "top left",
    "top middle",
    "top right",
    "middle left",
    "centre",
    "middle right",
    "bottom left",
    "bottom middle",
    "bottom right",
)
RELATIONS = ("above", "below", "left of", "right of")
MISSING = -1  # label of an attribute that does not exist (second shape of a one-shape image)

_RGB = torch.tensor(  # in [0, 1], one row per entry of COLOURS
    [[1.0, 0.1, 0.1], [0.1, 0.85, 0.1], [0.15, 0.3, 1.0], [1.0, 0.9, 0.1], [1.0, 0.2, 0.9], [0.1, 0.9, 0.95]]
)
# Radius r of a shape in units of a grid cell; per shape, the radius of its outline's
# tips is _SCALE * r, chosen by eye so that the four shapes look about equally big.
_RADIUS = {"small": 0.22, "large": 0.34}
_SCALE = torch.tensor([1.0, 1.25, 1.3, 1.3])  # circle, square (circumradius), triangle, star (outer radius)
_EXTENT = 1.3  # the largest scale: no shape reaches farther than _EXTENT * radius from its centre
# Polygons as k-fold symmetric outlines, see _polygon_sdf: (k, inner/outer radius at the half-sector, rotation).
_K = torch.tensor([0.0, 4.0, 3.0, 5.0])
_INNER = torch.tensor([0.0, math.cos(math.pi / 4), math.cos(math.pi / 3), 0.45])
_ROTATION = torch.tensor([0.0, math.pi / 4, math.pi / 2, math.pi / 2])  # a vertex up, the square axis-aligned


@dataclass
class ShapesBatch:
    """A batch of captioned shape images.

    images: float32 (N, 3, size, size) in [-1, 1] (black background = -1).
    captions: N strings.
    labels: int64 tensors; "count" (N,) in {1, 2}; "colour", "shape", "size",
        "position" (N, 2) indexing COLOURS, SHAPES, SIZES, POSITIONS for the
        first and second shape, MISSING (-1) where there is no second shape;
        "relation" (N,) indexing RELATIONS (first shape relative to the second),
        MISSING for one-shape images.
    """

    images: torch.Tensor
    captions: list[str]
    labels: dict[str, torch.Tensor]

    def __len__(self) -> int:
        return len(self.captions)


def _caption(colour: list[int], shape: list[int], size: list[int], position: list[int], relation: int) -> str:
    if relation == MISSING:
        return f"a {SIZES[size[0]]} {COLOURS[colour[0]]} {SHAPES[shape[0]]} in the {POSITIONS[position[0]]}"
    return f"a {COLOURS[colour[0]]} {SHAPES[shape[0]]} {RELATIONS[relation]} a {COLOURS[colour[1]]} {SHAPES[shape[1]]}"


def _polygon_sdf(rho, phi, k, inner, radius):
    """Signed distance (approximately, exact near the edges) to a k-fold star or regular polygon.

    Fold the angle into the half-sector [0, pi/k] between a tip A = (radius, 0)
    and the point B at angle pi/k and distance inner * radius; inside is the
    origin's side of the line AB. inner = cos(pi/k) gives the regular k-gon.
    """
    half = math.pi / k
    folded = torch.remainder(phi, 2 * half)
    folded = torch.minimum(folded, 2 * half - folded)  # mirror into [0, pi/k], (B, 2, P, P)
    qx, qy = rho * torch.cos(folded), rho * torch.sin(folded)
    bx, by = inner * radius * torch.cos(half), inner * radius * torch.sin(half)
    ex, ey = bx - radius, by  # edge direction A -> B
    length = torch.sqrt(ex**2 + ey**2)
    # minus the cross product e x (q - A): negative on the origin's side of AB
    return ((qx - radius) * ey - qy * ex) / length


_CHUNK = 256


@contextmanager
def _one_thread():
    """Run torch on one thread, then restore the setting.

    The tensors of one chunk are small: splitting them over threads costs more
    than it saves, and on a busy 2-core machine a second thread that waits for
    a core can slow drawing down tenfold.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _draw(out, centre_x, centre_y, outer, shape, colour, present):
    """Paint shapes into ``out`` (B, 3, H, W), values in [0, 1]; the other arguments are (B, 2).

    Signed distances are evaluated only on a P x P patch of pixels around each
    shape, big enough for the largest shape plus a pixel of anti-aliasing.
    """
    b, _, size, _ = out.shape
    patch = math.ceil(2 * (_EXTENT * _RADIUS["large"] * size / 3 + 1)) + 2
    offsets = torch.arange(patch)
    xs = centre_x.floor().long().unsqueeze(-1) - patch // 2 + offsets  # (B, 2, P) pixel columns
    ys = centre_y.floor().long().unsqueeze(-1) - patch // 2 + offsets  # (B, 2, P) pixel rows
    dx = (xs + 0.5 - centre_x.unsqueeze(-1)).float().unsqueeze(-2)  # (B, 2, 1, P) from the centre
    dy = (centre_y.unsqueeze(-1) - ys - 0.5).float().unsqueeze(-1)  # (B, 2, P, 1), y grows upwards
    rho = torch.sqrt(dx**2 + dy**2)  # (B, 2, P, P)
    radius = outer.float().view(b, 2, 1, 1)
    phi = torch.atan2(dy, dx) - _ROTATION[shape].view(b, 2, 1, 1)
    k = _K[shape].clamp(min=3.0).view(b, 2, 1, 1)  # circles get a dummy k, replaced below
    sdf = _polygon_sdf(rho, phi, k, _INNER[shape].view(b, 2, 1, 1), radius)
    sdf = torch.where((shape == 0).view(b, 2, 1, 1), rho - radius, sdf)
    alpha = (0.5 - sdf).clamp_(0.0, 1.0)  # (B, 2, P, P) anti-aliased coverage
    inside = ((xs >= 0) & (xs < size)).unsqueeze(-2) & ((ys >= 0) & (ys < size)).unsqueeze(-1)
    alpha.mul_(inside & present.view(b, 2, 1, 1))

    # The shapes lie in disjoint cells, so drawing them over black is a sum.
    pixel = ys.clamp(0, size - 1).unsqueeze(-1) * size + xs.clamp(0, size - 1).unsqueeze(-2)  # (B, 2, P, P)
    paint = _RGB[colour].view(b, 2, 3, 1, 1) * alpha.unsqueeze(2)  # (B, 2, 3, P, P)
    flat = out.view(b, 3, size * size).zero_()
    flat.scatter_add_(
        2,
        pixel.unsqueeze(2).expand(b, 2, 3, patch, patch).transpose(1, 2).reshape(b, 3, -1),
        paint.transpose(1, 2).reshape(b, 3, -1),
    )
    flat.clamp_(0.0, 1.0)


def make_shapes(n: int, seed: int = 0, size: int = 32, max_shapes: int = 2) -> ShapesBatch:
    """``n`` captioned images of ``size`` x ``size`` pixels with 1..max_shapes shapes each.

    Deterministic in ``seed``; each image uses its own row of random numbers, so
    ``make_shapes(n, seed)`` is the first n images of ``make_shapes(m, seed)`` for m > n.
    Two-shape captions name the vertical relation when the shapes are in
    different rows, else the horizontal one; they do not mention size or grid cell
    (the labels still hold them).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}.")
    if not isinstance(size, int) or size < 16:
        raise ValueError(f"size must be an int >= 16 (pixels), got {size!r}.")
    if max_shapes not in (1, 2):
        raise ValueError(f"max_shapes must be 1 or 2, got {max_shapes!r}.")
    generator = torch.Generator().manual_seed(seed)
    u = torch.rand(n, 13, dtype=torch.float64, generator=generator)  # one row of randomness per image

    def pick(column, k):  # (N,) int64 uniform in 0..k-1
        return (u[:, column] * k).long().clamp_(max=k - 1)

    count = 1 + pick(0, max_shapes)
    two = count == 2
    cell_first = pick(1, 9)
    cell_second = (cell_first + 1 + pick(2, 8)) % 9  # a different cell, uniform over the other 8
    colour = torch.stack([pick(3, len(COLOURS)), pick(4, len(COLOURS))], 1)  # (N, 2)
    shape = torch.stack([pick(5, len(SHAPES)), pick(6, len(SHAPES))], 1)
    size_label = torch.stack([pick(7, 2), pick(8, 2)], 1)
    position = torch.stack([cell_first, cell_second], 1)
    row, column = position // 3, position % 3

    # Geometry in pixels. A shape of radius r sits in its cell with its centre jittered
    # by at most (0.5 - margin) * cell - _EXTENT * r, so it stays inside the cell.
    cell = size / 3.0
    radius = torch.where(size_label == 1, _RADIUS["large"], _RADIUS["small"]).double() * cell  # (N, 2)
    slack = (0.47 * cell - _EXTENT * radius).clamp(min=0.0)
    jitter = (u[:, 9:13].reshape(n, 2, 2) * 2 - 1) * slack.unsqueeze(-1)  # (N, shape, xy)
    centre_x = (column + 0.5) * cell + jitter[..., 0]
    centre_y = (row + 0.5) * cell + jitter[..., 1]

    outer = radius * _SCALE[shape]  # (N, 2) tip radius in pixels
    present = torch.stack([torch.ones_like(two), two], 1)  # (N, 2) is there a shape?
    images = torch.empty(n, 3, size, size)
    with _one_thread():
        for i in range(0, n, _CHUNK):  # chunks keep temporaries small and reused (fewer page faults)
            j = min(i + _CHUNK, n)
            _draw(images[i:j], centre_x[i:j], centre_y[i:j], outer[i:j], shape[i:j], colour[i:j], present[i:j])
        images.mul_(2).sub_(1)  # [0, 1] -> [-1, 1]

    relation = torch.where(
        row[:, 0] != row[:, 1],
        torch.where(row[:, 0] < row[:, 1], 0, 1),
        torch.where(column[:, 0] < column[:, 1], 2, 3),
    )
    second = torch.stack([torch.zeros_like(two), ~two], 1)  # True where the entry does not exist
    labels = {
        "count": count,
        "colour": colour.masked_fill(second, MISSING),
        "shape": shape.masked_fill(second, MISSING),
        "size": size_label.masked_fill(second, MISSING),
        "position": position.masked_fill(second, MISSING),
        "relation": relation.masked_fill(~two, MISSING),
    }
    rows = zip(*(labels[key].tolist() for key in ("colour", "shape", "size", "position", "relation")))
    captions = [_caption(*row) for row in rows]
    return ShapesBatch(images=images, captions=captions, labels=labels)
