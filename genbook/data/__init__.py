"""Datasets of the book: Fashion-MNIST, Shakespeare, captioned shapes, 2D toys, tokenizers.

Everything loads offline from ``genbook.paths.data_dir()`` or a system location
first; see data/README.md for sources, licences and checksums.

Note: the function ``fashion_mnist`` shadows the submodule of the same name as an
attribute of this package; reach the module with
``importlib.import_module("genbook.data.fashion_mnist")`` if you need it.
"""

from genbook.data.fashion_mnist import CLASS_NAMES, fashion_mnist, load_fashion_mnist
from genbook.data.shakespeare import GENRES, Work, clean_text, load_works, shakespeare_text, split_works
from genbook.data.shapes import COLOURS, MISSING, POSITIONS, RELATIONS, SHAPES, SIZES, ShapesBatch, make_shapes
from genbook.data.tokenizers import CharTokenizer, SubwordTokenizer, train_bpe, train_wordpiece
from genbook.data.toy2d import (
    TOY_DISTRIBUTIONS,
    Checkerboard,
    GaussianMixture,
    Spirals,
    ToyDistribution,
    TwoMoons,
    eight_gaussians,
    toy_distribution,
    twenty_five_gaussians,
)

__all__ = [
    "CLASS_NAMES",
    "COLOURS",
    "GENRES",
    "MISSING",
    "POSITIONS",
    "RELATIONS",
    "SHAPES",
    "SIZES",
    "TOY_DISTRIBUTIONS",
    "CharTokenizer",
    "Checkerboard",
    "GaussianMixture",
    "ShapesBatch",
    "Spirals",
    "SubwordTokenizer",
    "ToyDistribution",
    "TwoMoons",
    "Work",
    "clean_text",
    "eight_gaussians",
    "fashion_mnist",
    "load_fashion_mnist",
    "load_works",
    "make_shapes",
    "shakespeare_text",
    "split_works",
    "toy_distribution",
    "train_bpe",
    "train_wordpiece",
    "twenty_five_gaussians",
]
