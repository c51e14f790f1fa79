"""Sample grids in the book are large enough to see: long strips fold into whole rows, tiles are about 0.8 inch."""

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

import genbook  # noqa: E402
from genbook.plotting import grid_columns  # noqa: E402


@pytest.mark.parametrize("nrow, columns", [(8, 8), (10, 10), (12, 12), (16, 8), (20, 10), (13, 1), (48, 12)])
def test_long_rows_fold_into_whole_rows(nrow, columns):
    assert grid_columns(nrow) == columns
    assert grid_columns(nrow, max_columns=None) == nrow


def test_a_28_pixel_image_is_drawn_large_enough():
    import matplotlib.pyplot as plt

    ax = genbook.show_images(torch.zeros(32, 1, 28, 28), nrow=16, title="samples")
    width, height = ax.figure.get_size_inches()
    assert ax.get_images()[0].get_array().shape[:2] == (4 * 30 + 2, 8 * 30 + 2)  # 16 per row -> 8 per row
    tile_inches = width / 8
    assert tile_inches >= 0.75, f"a tile is {tile_inches:.2f} inch wide"
    assert height == pytest.approx(width / 2, rel=0.05)
    plt.close("all")
