"""The conftest runs chapters as notebooks: a broken chapter fails loudly and stops, tags are honoured,
and a fully passing chapter lands in the cache that `make book` renders from."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from genbook.paths import REPO_ROOT

HEADER = """# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---
"""

GOOD = HEADER + textwrap.dedent('''
    # %% [markdown]
    # # A good chapter

    # %%
    print("first cell ran")

    # %% tags=["skip-execution"]
    raise SystemExit("a skip-execution cell must not run")

    # %% tags=["raises-exception"]
    raise ValueError("expected, and shown in the book")

    # %%
    import os
    import matplotlib
    assert os.environ["GENBOOK_PROGRESS"] == "summary" and "inline" in matplotlib.get_backend()
    print("last cell ran")
''')

BROKEN = HEADER + textwrap.dedent('''
    # %% [markdown]
    # # A broken chapter

    # %%
    x = 1

    # %%
    assert x == 2, "the model did not learn"

    # %%
    open("after_failure.txt", "w").write("this cell must never run")
''')


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    root = tmp_path_factory.mktemp("book")
    shutil.copy(REPO_ROOT / "conftest.py", root / "conftest.py")
    (root / "pytest.ini").write_text("[pytest]\naddopts = --nbval-current-env -p no:cacheprovider\n")
    (root / "chapters").mkdir()
    (root / "chapters" / "01_good.py").write_text(GOOD)
    (root / "chapters" / "02_broken.py").write_text(BROKEN)
    return root


def run_pytest(root, *args):
    env = {**os.environ, "GENBOOK_BUILD": str(root / "_build"), "MPLBACKEND": "Agg"}
    env.pop("GENBOOK_PROGRESS", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:xdist", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def directory_run(book):
    return run_pytest(book, "chapters", "--chapter-cache")


def test_broken_chapter_fails_and_stops(book, directory_run):
    out = directory_run.stdout
    assert directory_run.returncode == 1, out
    assert "chapters/02_broken.py::Cell 1 FAILED" in out and "the model did not learn" in out
    assert "chapters/02_broken.py::Cell 2 SKIPPED" in out
    assert not (book / "chapters" / "after_failure.txt").exists(), "no cell may run after a failure"


def test_tags_are_honoured(directory_run):
    out = directory_run.stdout
    assert "chapters/01_good.py::Cell 1 SKIPPED" in out  # skip-execution
    assert "chapters/01_good.py::Cell 2 PASSED" in out  # raises-exception
    assert "chapters/01_good.py::Cell 3 PASSED" in out  # environment set for kernels


def test_only_passing_chapters_are_cached_for_the_book(book, directory_run, monkeypatch):
    from jupyter_cache import get_cache

    from genbook.book.execution import cache_path, read_chapter

    monkeypatch.setenv("GENBOOK_BUILD", str(book / "_build"))
    cache = get_cache(str(cache_path()))
    record = cache.match_cache_notebook(read_chapter(book / "chapters" / "01_good.py"))  # what MyST-NB looks up
    _, merged = cache.merge_match_into_notebook(read_chapter(book / "chapters" / "01_good.py"))
    outputs = [o.get("text", "") for cell in merged.cells if cell.cell_type == "code" for o in cell.outputs]
    assert record.uri.endswith("01_good.py") and "first cell ran\n" in outputs and "last cell ran\n" in outputs
    with pytest.raises(KeyError):
        cache.match_cache_notebook(read_chapter(book / "chapters" / "02_broken.py"))


def test_chapter_named_on_the_command_line_is_not_imported(book):
    result = run_pytest(book, "chapters/01_good.py")
    assert result.returncode == 0, result.stdout
    assert "chapters/01_good.py::Cell 0 PASSED" in result.stdout
    assert "SystemExit" not in result.stdout
