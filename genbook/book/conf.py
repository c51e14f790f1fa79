"""Sphinx configuration of the online book, driven by book.toml.

``python -m genbook.book.build`` assembles the sources in ``_build/src`` (an index
page from the manifest, the written chapters, the results page) and runs
``sphinx-build -c genbook/book``. MyST-NB reads the jupytext chapters, takes
executed outputs from the cache ``make test`` filled (see genbook/book/execution.py)
and executes only what is missing; a failing chapter fails the build.

Every chapter's page offers, under its download button, the chapter as ``.ipynb``
in both editions (instructor and student; written by build.py into
``_build/src/_extra/downloads``, served at ``downloads/``) and its ``.py`` source.
"""

import os
from pathlib import Path

from genbook.book.build import downloads
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
exclude_patterns = ["**.ipynb_checkpoints", "_extra"]  # _extra: files served as they are (downloads)

html_theme = "sphinx_book_theme"
html_theme_options = {
    "use_download_button": True,
    "show_toc_level": 2,
    "home_page_in_toc": True,
}
html_last_updated_fmt = ""
# Wide equations scroll, long code lines wrap, tables and images stay inside the column (see static/genbook.css).
html_static_path = [str(Path(__file__).parent / "static")]
html_css_files = ["genbook.css"]
# Without it the theme starts with an empty mode and logs a console error for every first-time reader.
html_context = {"default_mode": "auto"}


def _serve_extra_files(app, config):
    """Copy ``<src>/_extra`` (the notebooks to download) to the root of the site."""
    extra = Path(app.srcdir) / "_extra"
    if extra.is_dir():
        config.html_extra_path = [*config.html_extra_path, str(extra)]


def _add_download_buttons(app, pagename, templatename, context, doctree):
    """A chapter's download button: both editions as .ipynb, then the .py source (the theme's own entry)."""
    slug = pagename.rsplit("/", 1)[-1]
    if not pagename.startswith("chapters/") or not (Path(app.srcdir) / "_extra" / downloads(slug)[".ipynb"]).exists():
        return
    tooltips = {
        ".ipynb": "Download this chapter as a notebook (with the exercises' solutions)",
        ".ipynb (student edition)": "Download the student edition: each exercise's solution is a stub, the checks stay",
    }
    new = [{"type": "link", "url": context["pathto"](downloads(slug)[label], 1), "text": label, "tooltip": tip,
            "icon": "fas fa-code", "label": f"download-{'student' if 'student' in label else 'notebook'}-button"}
           for label, tip in tooltips.items()]
    for button in context.get("header_buttons", []):
        if button.get("label") == "download-buttons":
            for entry in button["buttons"]:
                if entry.get("label") == "download-source-button":
                    entry["tooltip"] = "Download this chapter's source (a jupytext percent .py file)"
            button["buttons"][:0] = new


def setup(app):
    app.connect("config-inited", _serve_extra_files)
    app.connect("html-page-context", _add_download_buttons, priority=502)  # after the theme's buttons (501)
