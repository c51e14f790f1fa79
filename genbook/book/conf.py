"""Sphinx configuration of the online book, driven by book.toml.

``python -m genbook.book.build`` assembles the sources in ``_build/src`` (an index
page from the manifest, the written chapters, the results page) and runs
``sphinx-build -c genbook/book``. MyST-NB reads the jupytext chapters, takes
executed outputs from the cache ``make test`` filled (see genbook/book/execution.py)
and executes only what is missing; a failing chapter fails the build.
"""

import os

from genbook.book.execution import CHAPTER_FORMAT, cache_path
from genbook.book.manifest import load_manifest

os.environ.setdefault("GENBOOK_PROGRESS", "summary")  # no progress-bar frames in the book
os.environ.pop("MPLBACKEND", None)  # Agg would leave figure cells without output

manifest = load_manifest()
project = manifest.title
author = manifest.author
copyright = "the genbook authors; code MIT"  # noqa: A001  (Sphinx's name)
html_title = manifest.title

extensions = ["myst_nb", "sphinx-mathjax-offline"]  # the PyPI package installs under this name
myst_enable_extensions = ["dollarmath", "amsmath"]
nb_custom_formats = {".py": ["jupytext.reads", CHAPTER_FORMAT]}
nb_execution_mode = "cache"
nb_execution_cache_path = str(cache_path())
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_execution_timeout = 1800
nb_merge_streams = True
exclude_patterns = ["**.ipynb_checkpoints"]

html_theme = "sphinx_book_theme"
html_theme_options = {
    "use_download_button": True,
    "show_toc_level": 2,
    "home_page_in_toc": True,
}
html_last_updated_fmt = ""
