"""Chapter 02's exercise checks pass on correct answers and fail, helpfully, on stubs and typical mistakes."""

import pytest
import torch
import torch.nn.functional as F

from genbook.exercises import ExerciseFailed
from genbook.exercises.bert_vit import (
    check_resize_position_embeddings,
    check_unpatchify,
    resize_position_embeddings_reference,
)


def stub(*args):
    raise NotImplementedError("write this function")


# --- the references ---------------------------------------------------------------------------

def test_resize_reference_keeps_a_constant_grid_and_the_class_token():
    pos = torch.cat([torch.full((1, 1, 3), 7.0), torch.ones(1, 16, 3)], dim=1)
    out = resize_position_embeddings_reference(pos, 6)
    assert out.shape == (1, 37, 3) and torch.equal(out[:, 0], pos[:, 0]) and torch.allclose(out[:, 1:], torch.ones(1))


# --- Exercise 2.1: unpatchify -----------------------------------------------------------------

def unpatchify(patches, patch_size, channels):
    b, n, _ = patches.shape
    s = int(n ** 0.5)
    x = patches.reshape(b, s, s, channels, patch_size, patch_size).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, channels, s * patch_size, s * patch_size)


def transposed(patches, patch_size, channels):
    return unpatchify(patches, patch_size, channels).transpose(-2, -1)


def channels_last(patches, patch_size, channels):
    b, n, _ = patches.shape
    s = int(n ** 0.5)
    x = patches.reshape(b, s, s, patch_size, patch_size, channels).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, channels, s * patch_size, s * patch_size)


def plain_reshape(patches, patch_size, channels):
    b, n, _ = patches.shape
    s = int(n ** 0.5) * patch_size
    return patches.reshape(b, channels, s, s)


def test_unpatchify_solution_passes():
    check_unpatchify(unpatchify)


@pytest.mark.parametrize("wrong, message", [
    (stub, "Exercise 2.1 .* not solved yet"),
    (transposed, "transposed"),
    (channels_last, "channels are mixed up"),
    (plain_reshape, "plain reshape"),
    (lambda p, ps, c: unpatchify(p, ps, c)[:, :, :-1], "should have shape"),
    (lambda p, ps, c: unpatchify(p, ps, c).flip(-1), "differs from the reference"),
])
def test_unpatchify_mistakes_are_explained(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_unpatchify(wrong)


# --- Exercise 2.2: resizing position embeddings -------------------------------------------------

def resize(pos, new_side):
    cls, grid = pos[:, :1], pos[:, 1:]
    s, d = int(grid.shape[1] ** 0.5), pos.shape[-1]
    grid = F.interpolate(grid.reshape(1, s, s, d).permute(0, 3, 1, 2), size=(new_side, new_side),
                         mode="bilinear", align_corners=False)
    return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(1, -1, d)], dim=1)


def forgets_class_token(pos, new_side):
    return resize(pos, new_side)[:, 1:]


def interpolates_class_token(pos, new_side):
    out = resize(pos, new_side)
    return torch.cat([out[:, :1] * 0.5, out[:, 1:]], dim=1)


def reshape_without_permute(pos, new_side):
    cls, grid = pos[:, :1], pos[:, 1:]
    s, d = int(grid.shape[1] ** 0.5), pos.shape[-1]
    grid = F.interpolate(grid.reshape(1, d, s, s), size=(new_side, new_side), mode="bilinear", align_corners=False)
    return torch.cat([cls, grid.reshape(1, -1, d)], dim=1)


def rows_and_columns_swapped(pos, new_side):
    cls, grid = pos[:, :1], pos[:, 1:]
    s, d = int(grid.shape[1] ** 0.5), pos.shape[-1]
    grid = F.interpolate(grid.reshape(1, s, s, d).permute(0, 3, 2, 1), size=(new_side, new_side),
                         mode="bilinear", align_corners=False)
    return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(1, -1, d)], dim=1)


def nearest(pos, new_side):
    cls, grid = pos[:, :1], pos[:, 1:]
    s, d = int(grid.shape[1] ** 0.5), pos.shape[-1]
    grid = F.interpolate(grid.reshape(1, s, s, d).permute(0, 3, 1, 2), size=(new_side, new_side), mode="nearest")
    return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(1, -1, d)], dim=1)


def in_place(pos, new_side):
    out = resize(pos, new_side)
    pos.mul_(2)
    return out


def test_resize_solution_passes():
    check_resize_position_embeddings(resize)


@pytest.mark.parametrize("wrong, message", [
    (stub, "Exercise 2.2 .* not solved yet"),
    (forgets_class_token, "class token's embedding is missing"),
    (interpolates_class_token, "class token's embedding changed"),
    (reshape_without_permute, "plain reshape"),
    (rows_and_columns_swapped, "rows and columns are swapped"),
    (nearest, "bilinear"),
    (in_place, "in place"),
])
def test_resize_mistakes_are_explained(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_resize_position_embeddings(wrong)
