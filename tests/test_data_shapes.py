"""Captioned shapes: tensors, labels that match captions and pixels, determinism, speed."""

import time

import pytest
import torch

from genbook.data import COLOURS, MISSING, POSITIONS, RELATIONS, SHAPES, SIZES, make_shapes
from genbook.data.shapes import _RGB


@pytest.fixture(scope="module")
def batch():
    return make_shapes(2000, seed=0)


def test_tensors_and_label_shapes(batch):
    assert len(batch) == 2000 and len(batch.captions) == 2000
    assert batch.images.shape == (2000, 3, 32, 32) and batch.images.dtype == torch.float32
    assert batch.images.min() == -1.0 and batch.images.max() <= 1.0
    labels = batch.labels
    assert set(labels) == {"count", "colour", "shape", "size", "position", "relation"}
    for key, value in labels.items():
        assert value.dtype == torch.int64, key
        assert value.shape == ((2000,) if key in ("count", "relation") else (2000, 2)), key


def test_labels_are_consistent(batch):
    labels = batch.labels
    one, two = labels["count"] == 1, labels["count"] == 2
    assert (one | two).all() and 0.4 < two.float().mean() < 0.6
    for key, vocabulary in (("colour", COLOURS), ("shape", SHAPES), ("size", SIZES), ("position", POSITIONS)):
        first, second = labels[key][:, 0], labels[key][:, 1]
        assert torch.bincount(first, minlength=len(vocabulary)).min() > 2000 / len(vocabulary) / 2, key
        assert (first >= 0).all() and (second[one] == MISSING).all() and (second[two] >= 0).all()
        assert first.max() < len(vocabulary) and second.max() < len(vocabulary)
    assert (labels["relation"][one] == MISSING).all()
    assert (labels["position"][two, 0] != labels["position"][two, 1]).all()  # never the same cell
    row, column = labels["position"] // 3, labels["position"] % 3
    for i in torch.nonzero(two).flatten().tolist():
        relation = RELATIONS[labels["relation"][i]]
        expected = {
            "above": row[i, 0] < row[i, 1],
            "below": row[i, 0] > row[i, 1],
            "left of": row[i, 0] == row[i, 1] and column[i, 0] < column[i, 1],
            "right of": row[i, 0] == row[i, 1] and column[i, 0] > column[i, 1],
        }[relation]
        assert expected, (i, relation)


def test_captions_follow_the_templates(batch):
    labels = batch.labels
    for i, caption in enumerate(batch.captions):
        colour, shape, size, position = (labels[k][i].tolist() for k in ("colour", "shape", "size", "position"))
        if labels["count"][i] == 1:
            expected = f"a {SIZES[size[0]]} {COLOURS[colour[0]]} {SHAPES[shape[0]]} in the {POSITIONS[position[0]]}"
        else:
            relation = RELATIONS[labels["relation"][i]]
            expected = f"a {COLOURS[colour[0]]} {SHAPES[shape[0]]} {relation} a {COLOURS[colour[1]]} {SHAPES[shape[1]]}"
        assert caption == expected
    assert "a small red circle in the top left" in batch.captions or any(
        c.startswith("a small ") and c.endswith(" in the top left") for c in batch.captions
    )


def _cell_mask(position, size=32):
    """Boolean (size, size) mask of grid cell ``position``."""
    row, column = divmod(position, 3)
    coordinate = (torch.arange(size) + 0.5) / size * 3
    return (coordinate.floor() == row).view(-1, 1) & (coordinate.floor() == column).view(1, -1)


def test_pixels_show_what_the_labels_say(batch):
    """Each shape's paint lies in its own cell, has its colour, and large shapes cover more pixels."""
    images = (batch.images + 1) / 2  # (N, 3, H, W) in [0, 1]
    painted = images.amax(1) > 0.02
    labels = batch.labels
    areas = {0: [], 1: []}
    for i in range(300):
        covered = torch.zeros(32, 32, dtype=torch.bool)
        for slot in range(labels["count"][i]):
            cell = _cell_mask(labels["position"][i, slot].item())
            covered |= cell
            inside = painted[i] & cell
            area = inside.sum().item()
            assert area >= 8, (i, slot, batch.captions[i])
            areas[labels["size"][i, slot].item()].append(area)
            pixels = images[i][:, inside]  # (3, area)
            brightest = pixels[:, pixels.sum(0).argmax()]  # a pixel fully inside the shape
            assert torch.allclose(brightest, _RGB[labels["colour"][i, slot]], atol=0.01), (i, slot)
        # no paint outside the shapes' cells, up to the anti-aliased pixel on a cell's border
        near = torch.nn.functional.max_pool2d(covered[None].float(), 3, stride=1, padding=1)[0] > 0
        assert not (painted[i] & ~near).any(), (i, batch.captions[i])
    small, large = torch.tensor(areas[0], dtype=torch.float), torch.tensor(areas[1], dtype=torch.float)
    assert large.mean() > 2 * small.mean() and large.min() > small.median()


def test_determinism_and_prefix_property():
    a, b = make_shapes(300, seed=7), make_shapes(300, seed=7)
    assert torch.equal(a.images, b.images) and a.captions == b.captions
    assert all(torch.equal(a.labels[k], b.labels[k]) for k in a.labels)
    short = make_shapes(50, seed=7)
    assert torch.equal(short.images, a.images[:50]) and short.captions == a.captions[:50]
    other = make_shapes(300, seed=8)
    assert not torch.equal(other.images, a.images)


def test_one_shape_mode_and_other_sizes():
    single = make_shapes(200, seed=1, max_shapes=1)
    assert (single.labels["count"] == 1).all() and all(" in the " in c for c in single.captions)
    big = make_shapes(100, seed=1, size=64)
    assert big.images.shape == (100, 3, 64, 64)
    small = make_shapes(100, seed=1, size=32)
    assert big.captions == small.captions  # same scene, drawn at another resolution
    downsampled = torch.nn.functional.avg_pool2d(big.images, 2)
    assert (downsampled - small.images).abs().mean() < 0.05


def test_speed_thousands_per_second():
    make_shapes(10)  # warm-up
    threads = torch.get_num_threads()
    best = float("inf")
    for seed in range(3):  # best of three: a busy shared machine should not fail the test
        start = time.perf_counter()
        make_shapes(2000, seed=seed)
        best = min(best, time.perf_counter() - start)
    assert best < 1.0, f"2000 images took {best:.2f} s"
    assert torch.get_num_threads() == threads  # drawing on one thread leaves the setting as it was


@pytest.mark.parametrize(
    "kwargs, match",
    [({"n": 0}, "n must"), ({"n": 5, "size": 8}, "size must"), ({"n": 5, "max_shapes": 3}, "max_shapes")],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_shapes(**kwargs)
