"""Caption adherence for the captioned-shapes images: does the picture show what the caption says?

``genbook.data.shapes`` draws each shape inside its own cell of a 3x3 grid, so
an image is read cell by cell: a small CNN (``CellReader``) looks at one cell,
resampled to 12x12 pixels, and says whether a shape is there and, if so, its
colour, shape and size. Count, grid position and the relation between two
shapes ("above", "left of", ...) follow from which cells are occupied. The
reader is trained by genbook on freshly drawn images (their labels are exact)
and cached with ``load_or_train``.

Caption adherence is then the fraction of the attributes a caption states that
the reader agrees with, in the spirit of the attribute-classifier scores of
compositional text-to-image benchmarks (e.g. Park et al. 2021, "Benchmark for
Compositional Text-to-Image Synthesis"; Huang et al. 2023, "T2I-CompBench").
A one-shape caption states count, colour, shape, size and position (5 facts); a
two-shape caption states count, both colours, both shapes and the relation (6).
"""

from __future__ import annotations

import functools
import itertools
import re
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genbook.checkpoint import load_or_train
from genbook.devices import device as default_device
from genbook.metrics.evaluator_training import train_one_cycle
from genbook.validation import check_tensor

GRID = 3  # cells per side
CROP = 12  # a cell is resampled to CROP x CROP pixels
HEADS = {"occupied": 2, "colour": 6, "shape": 4, "size": 2}  # outputs per cell, matching genbook.data.shapes
CONFIG = {
    "version": 1,
    "image_size": 32,
    "train_images": 8_000,
    "train_seed": 1,
    "held_out_images": 3_000,
    "held_out_seed": 2,
    "width": 8,
    "epochs": 2,
    "batch_images": 64,
    "lr": 3e-3,
    "seed": 0,
    "threads": 1,  # CPU threads while training (None: leave torch's setting), see genbook.devices.cpu_threads
}


def check_shapes_images(x, name: str = "images", size: int = CONFIG["image_size"]) -> torch.Tensor:
    """Raise unless ``x`` is a float tensor (N, 3, size, size) with finite values in [-1, 1]."""
    check_tensor(x, name, shape=("N", 3, size, size), dtype="floating", min_batch=1)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    check_tensor(x, name, value_range=(-1.0, 1.0))
    return x


def cell_crops(images: torch.Tensor, crop: int = CROP) -> torch.Tensor:
    """Resample each of the 3x3 grid cells of images (N, 3, S, S) to (N, 9, 3, crop, crop).

    Cell 3·row + column covers pixels [column·S/3, (column+1)·S/3) horizontally (the
    same index as ``genbook.data.shapes.POSITIONS``); bilinear sampling at crop x crop
    evenly spaced points inside it (``grid_sample``, align_corners=False).
    """
    n, c, size, _ = images.shape
    points = (torch.arange(crop, dtype=images.dtype, device=images.device) + 0.5) / crop  # (crop,) in (0, 1)
    cell_starts = torch.arange(GRID, dtype=images.dtype, device=images.device)
    coords = (cell_starts[:, None] + points[None, :]) / GRID * 2 - 1  # (3, crop) normalised: -1 = left edge
    ys = coords[:, None, :, None].expand(GRID, GRID, crop, crop)  # (row, column, y, x)
    xs = coords[None, :, None, :].expand(GRID, GRID, crop, crop)
    grid = torch.stack([xs, ys], -1).reshape(1, GRID * GRID * crop, crop, 2)  # cells stacked along y
    out = F.grid_sample(images, grid.expand(n, -1, -1, -1), mode="bilinear", align_corners=False)
    return out.reshape(n, c, GRID * GRID, crop, crop).transpose(1, 2)  # (N, 9, 3, crop, crop)


class CellReader(nn.Module):
    """CNN on one cell (B, 3, 12, 12) -> dict of logits: occupied (B, 2), colour (B, 6), shape (B, 4), size (B, 2)."""

    def __init__(self, width: int = 8):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),  # (B, w, 12, 12)
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),  # (B, 2w, 6, 6)
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),  # (B, 2w, 6, 6)
            nn.Flatten(), nn.Linear(2 * w * 36, 64), nn.ReLU(),  # (B, 64)
        )  # fmt: skip
        self.heads = nn.ModuleDict({name: nn.Linear(64, k) for name, k in HEADS.items()})

    def forward(self, cells: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.body(cells)
        return {name: head(h) for name, head in self.heads.items()}


@dataclass
class Reading:
    """What the evaluator sees in a batch of N images, per grid cell: int64 tensors (N, 9).

    ``occupied`` is 0/1; ``colour``, ``shape``, ``size`` index the vocabularies of
    ``genbook.data.shapes`` and are -1 in empty cells.
    """

    occupied: torch.Tensor
    colour: torch.Tensor
    shape: torch.Tensor
    size: torch.Tensor

    def objects(self, i: int) -> list[tuple[int, int, int, int]]:
        """The shapes found in image ``i``: (cell, colour, shape, size) tuples."""
        cells = self.occupied[i].nonzero().flatten().tolist()
        return [(c, int(self.colour[i, c]), int(self.shape[i, c]), int(self.size[i, c])) for c in cells]


class ShapesEvaluator(nn.Module):
    """Reads images (N, 3, 32, 32) in [-1, 1] cell by cell with a shared ``CellReader``."""

    def __init__(self, width: int = 8, image_size: int = 32):
        super().__init__()
        self.reader = CellReader(width)
        self.image_size = image_size

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per cell, each (N, 9, k), with gradients and no checks (for training)."""
        n = images.shape[0]
        out = self.reader(cell_crops(images).reshape(n * GRID * GRID, 3, CROP, CROP))
        return {name: logits.reshape(n, GRID * GRID, -1) for name, logits in out.items()}

    @torch.no_grad()
    def read(self, images: torch.Tensor, *, batch_size: int = 500) -> Reading:
        """The evaluator's ``Reading`` (on the CPU) of images (N, 3, 32, 32) in [-1, 1]."""
        check_shapes_images(images, "images", self.image_size)
        dev = next(self.parameters()).device
        was_training = self.training
        self.eval()
        try:
            parts = [self(images[i : i + batch_size].to(dev, torch.float32)) for i in range(0, len(images), batch_size)]
        finally:
            self.train(was_training)
        preds = {name: torch.cat([p[name] for p in parts]).argmax(-1).cpu() for name in HEADS}
        empty = preds["occupied"] == 0
        return Reading(
            occupied=preds["occupied"],
            colour=preds["colour"].masked_fill(empty, -1),
            shape=preds["shape"].masked_fill(empty, -1),
            size=preds["size"].masked_fill(empty, -1),
        )


def cell_targets(labels: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-cell targets (N, 9) from ``ShapesBatch.labels``: occupied 0/1, other attributes -1 where empty."""
    position = labels["position"]  # (N, 2), -1 where there is no second shape
    n = position.shape[0]
    targets = {"occupied": torch.zeros(n, GRID * GRID, dtype=torch.int64)}
    for name in ("colour", "shape", "size"):
        targets[name] = torch.full((n, GRID * GRID), -1, dtype=torch.int64)
    for slot in range(position.shape[1]):
        present = position[:, slot] >= 0
        rows, cells = present.nonzero().flatten(), position[present, slot]
        targets["occupied"][rows, cells] = 1
        for name in ("colour", "shape", "size"):
            targets[name][rows, cells] = labels[name][present, slot]
    return targets


def attribute_accuracies(reading: Reading, labels: dict[str, torch.Tensor]) -> dict[str, float]:
    """Held-out accuracy of a ``Reading`` against true labels, per attribute.

    occupied: over all cells; colour, shape, size: over the truly occupied cells;
    count: number of shapes; position: the set of occupied cells is exactly right.
    """
    targets = cell_targets(labels)
    full = targets["occupied"] == 1
    out = {"occupied": (reading.occupied == targets["occupied"]).double().mean().item()}
    for name in ("colour", "shape", "size"):
        out[name] = (getattr(reading, name)[full] == targets[name][full]).double().mean().item()
    out["count"] = (reading.occupied.sum(1) == labels["count"]).double().mean().item()
    out["position"] = (reading.occupied == targets["occupied"]).all(1).double().mean().item()
    return out


def train_shapes_evaluator(model: ShapesEvaluator, config: dict = CONFIG) -> dict:
    """Train ``model`` in place on freshly drawn shapes (CPU, Adam, one-cycle); return facts about the run."""
    from genbook.data.shapes import make_shapes

    start, cpu_start = time.perf_counter(), time.process_time()
    data = make_shapes(config["train_images"], seed=config["train_seed"], size=config["image_size"])
    targets = cell_targets(data.labels)

    def loss_of_batch(index):
        logits = model(data.images[index])
        return sum(
            F.cross_entropy(logits[name].flatten(0, 1), targets[name][index].flatten(), ignore_index=-1)
            for name in HEADS
        )  # attributes of empty cells are -1: ignored

    losses = train_one_cycle(
        model, len(data), loss_of_batch, epochs=config["epochs"], batch_size=config["batch_images"],
        lr=config["lr"], seed=config["seed"], threads=config["threads"],
    )
    train_seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    steps = len(losses)
    held_out = make_shapes(config["held_out_images"], seed=config["held_out_seed"], size=config["image_size"])
    accuracies = attribute_accuracies(model.read(held_out.images), held_out.labels)
    return {
        "train_seconds": round(train_seconds, 2),  # wall clock, data loading included
        "train_cpu_seconds": round(cpu_seconds, 2),  # CPU time: about the wall time on an idle machine
        "steps": steps,
        "held_out_accuracy": accuracies,
        "losses": losses[:: max(1, steps // 200)].tolist(),
    }


def shapes_evaluator(device: torch.device | str | None = None, *, retrain: bool = False) -> ShapesEvaluator:
    """The trained shapes evaluator in eval mode on ``device`` (default: ``genbook.devices.device()``).

    Trained on the first call (well under a minute on a 2-core CPU), then loaded
    from the cache. ``evaluator.info["held_out_accuracy"]`` holds per-attribute accuracies.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(CONFIG["seed"])
        model = ShapesEvaluator(CONFIG["width"], CONFIG["image_size"])
    model, info = load_or_train(
        model, train_shapes_evaluator, chapter="metrics", name="shapes_evaluator", config=CONFIG, retrain=retrain
    )
    model.info = info
    return model.eval().requires_grad_(False).to(device if device is not None else default_device())


# ---------------------------------------------------------------- captions -> claims


@dataclass(frozen=True)
class Claim:
    """What a caption states. One shape: ``objects`` = ((colour, shape, size, position),);
    two shapes: ((colour, shape, None, None), (colour, shape, None, None)) and ``relation``."""

    objects: tuple[tuple[int, int, int | None, int | None], ...]
    relation: int | None = None

    @property
    def n_facts(self) -> int:
        return 5 if len(self.objects) == 1 else 6


@functools.cache  # built once: a chapter parses thousands of captions
def _caption_pattern() -> tuple[re.Pattern, re.Pattern]:
    from genbook.data.shapes import COLOURS, POSITIONS, RELATIONS, SHAPES, SIZES

    def alt(words):
        return "(" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + ")"

    one = re.compile(rf"a {alt(SIZES)} {alt(COLOURS)} {alt(SHAPES)} in the {alt(POSITIONS)}")
    two = re.compile(rf"a {alt(COLOURS)} {alt(SHAPES)} {alt(RELATIONS)} a {alt(COLOURS)} {alt(SHAPES)}")
    return one, two


@functools.lru_cache(maxsize=4096)  # a sample set repeats each caption N times; a Claim is immutable
def parse_caption(caption: str) -> Claim:
    """The ``Claim`` of a caption written by ``genbook.data.shapes`` (ValueError for any other text)."""
    from genbook.data.shapes import COLOURS, POSITIONS, RELATIONS, SHAPES, SIZES

    one, two = _caption_pattern()
    text = caption.strip().lower()
    if m := one.fullmatch(text):
        size, colour, shape, position = m.groups()
        return Claim(((COLOURS.index(colour), SHAPES.index(shape), SIZES.index(size), POSITIONS.index(position)),))
    if m := two.fullmatch(text):
        c1, s1, rel, c2, s2 = m.groups()
        objects = ((COLOURS.index(c1), SHAPES.index(s1), None, None), (COLOURS.index(c2), SHAPES.index(s2), None, None))
        return Claim(objects, RELATIONS.index(rel))
    raise ValueError(
        f"Cannot read the caption {caption!r}: expected 'a <size> <colour> <shape> in the <position>' or "
        f"'a <colour> <shape> <relation> a <colour> <shape>' with the words of genbook.data.shapes."
    )


def claims_from_labels(labels: dict[str, torch.Tensor]) -> list[Claim]:
    """The claims that the captions of ``ShapesBatch.labels`` make (the same facts as the caption text)."""
    rows = zip(*(labels[k].tolist() for k in ("count", "colour", "shape", "size", "position", "relation")))
    claims = []
    for count, colour, shape, size, position, relation in rows:
        if count == 1:
            claims.append(Claim(((colour[0], shape[0], size[0], position[0]),)))
        else:
            claims.append(Claim(((colour[0], shape[0], None, None), (colour[1], shape[1], None, None)), relation))
    return claims


def relation_between(cell_a: int, cell_b: int) -> int:
    """Index in RELATIONS of "a <relation> b", by the rule of genbook.data.shapes (rows first)."""
    row_a, col_a, row_b, col_b = cell_a // GRID, cell_a % GRID, cell_b // GRID, cell_b % GRID
    if row_a != row_b:
        return 0 if row_a < row_b else 1  # above, below
    return 2 if col_a < col_b else 3  # left of, right of


def facts_agreed(claim: Claim, objects: list[tuple[int, int, int, int]]) -> list[bool]:
    """Which of the claim's facts hold for the shapes the evaluator found, (cell, colour, shape, size) each.

    The claimed shapes are matched to the found ones in the way that agrees with
    the most facts, so a fact is never wrongly failed for the order of shapes.
    """
    if len(claim.objects) == 1:
        colour, shape, size, position = claim.objects[0]
        candidates = [[o[1] == colour, o[2] == shape, o[3] == size, o[0] == position] for o in objects]
        best = max(candidates, key=sum, default=[False] * 4)
        return [len(objects) == 1, *best]
    (c1, s1, _, _), (c2, s2, _, _) = claim.objects
    candidates = [
        [a[1] == c1, a[2] == s1, b[1] == c2, b[2] == s2, relation_between(a[0], b[0]) == claim.relation]
        for a, b in itertools.permutations(objects, 2)
    ]
    for o in objects:  # fewer shapes found than claimed: match one of them, the rest fail
        candidates += [[o[1] == c1, o[2] == s1, False, False, False], [False, False, o[1] == c2, o[2] == s2, False]]
    best = max(candidates, key=sum, default=[False] * 5)
    return [len(objects) == 2, *best]


def caption_agreement(
    images: torch.Tensor, captions_or_labels, *, evaluator: ShapesEvaluator | None = None, per_image: bool = False
) -> dict:
    """Adherence details: ``adherence`` (fraction of stated facts the evaluator agrees with) and
    ``exact`` (fraction of images whose every stated fact holds).

    With ``per_image=True`` also ``agreed`` and ``stated``, (N,) int64 tensors: per image, the facts
    the evaluator agrees with and the facts its caption states (``adherence`` = agreed.sum() /
    stated.sum()), from the same reading, e.g. for a bootstrap over images without reading them again.
    """
    if not isinstance(per_image, bool):
        raise TypeError(f"per_image must be True or False, got {per_image!r}.")
    check_shapes_images(images, "images")
    if isinstance(captions_or_labels, dict):
        claims = claims_from_labels(captions_or_labels)
    elif isinstance(captions_or_labels, (list, tuple)) and all(isinstance(c, str) for c in captions_or_labels):
        claims = [parse_caption(c) for c in captions_or_labels]
    else:
        raise TypeError("captions_or_labels must be a list of caption strings or a ShapesBatch.labels dict.")
    if len(claims) != len(images):
        raise ValueError(f"got {len(images)} images but {len(claims)} captions/labels.")
    reading = (evaluator if evaluator is not None else shapes_evaluator()).read(images)
    facts = [facts_agreed(claim, reading.objects(i)) for i, claim in enumerate(claims)]
    agreed = sum(sum(f) for f in facts)
    out = {
        "adherence": agreed / sum(len(f) for f in facts),
        "exact": sum(all(f) for f in facts) / len(facts),
    }
    if per_image:
        out["agreed"] = torch.tensor([sum(f) for f in facts], dtype=torch.int64)
        out["stated"] = torch.tensor([len(f) for f in facts], dtype=torch.int64)
    return out


def caption_adherence(images: torch.Tensor, captions_or_labels, *, evaluator: ShapesEvaluator | None = None) -> float:
    """Fraction of the facts stated by the captions that the evaluator agrees with.

    images: (N, 3, 32, 32) in [-1, 1]; captions_or_labels: N caption strings of
    ``genbook.data.shapes`` or a ``ShapesBatch.labels`` dict. Real images with
    their own captions score about 1; random captions score far lower.
    """
    return caption_agreement(images, captions_or_labels, evaluator=evaluator)["adherence"]
