"""`make labs` also writes an nbgrader course folder; nbgrader grades a solved copy full marks and a stub zero.

The metadata tests run everywhere. The grading test runs nbgrader itself (`generate_assignment`, `autograde`,
`export`) on a small synthetic chapter (the one of test_student_edition.py: two exercises, no genbook import).
nbgrader comes with the extra `ci`, which `make tools` (part of `make test`) installs, pinned by constraints.txt, in
its own virtualenv `_build/ci-venv`; where it is missing the test skips, saying how to install it, except on CI
(`CI` or `GITHUB_ACTIONS` set), where `make test` must have installed it and the test fails without it.
"""

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from test_student_edition import CHAPTER  # tests/ is on sys.path (rootdir-relative imports)

from genbook.book.student import nbgrader_notebook, write_nbgrader_course
from genbook.paths import build_dir


@pytest.fixture
def chapter(tmp_path):
    path = tmp_path / "09_circle.py"
    path.write_text(CHAPTER)
    return path


def test_solution_and_check_cells_carry_nbgrader_metadata(chapter):
    nb = nbgrader_notebook(chapter)
    marked = [(c.metadata["nbgrader"], c.source) for c in nb.cells if "nbgrader" in c.metadata]
    assert [m["grade_id"] for m, _ in marked] == ["exercise-9-1-solution", "exercise-9-1-check",
                                                  "exercise-9-2-solution", "exercise-9-2-check"]
    for meta, source in marked:
        assert meta["schema_version"] == 3
        if meta["solution"]:
            assert not meta["grade"] and "# BEGIN SOLUTION" in source
        else:
            assert meta["grade"] and meta["locked"] and meta["points"] == 1 and "call_student" in source
    assert "BEGIN SOLUTION" in "".join(c.source for c in nb.cells)  # the source keeps the solutions
    assert nb.metadata["genbook"]["edition"] == "nbgrader source"


def test_the_course_folder_layout(chapter, tmp_path):
    paths = write_nbgrader_course(tmp_path / "course", {"09_circle": chapter})
    assert paths == [tmp_path / "course" / "source" / "09_circle" / "09_circle.ipynb"]
    nbformat.validate(nbformat.read(paths[0], as_version=4))
    assert "c.CourseDirectory.source_directory" in (tmp_path / "course" / "nbgrader_config.py").read_text()


def find_nbgrader() -> str | None:
    """nbgrader of the extra `ci`: in the tools virtualenv of `make tools` (_build/ci-venv), next to this Python,
    or on the PATH."""
    for folder in (build_dir() / "ci-venv" / "bin", Path(sys.executable).parent):
        if (folder / "nbgrader").is_file():
            return str(folder / "nbgrader")
    return shutil.which("nbgrader")


def test_autograde_gives_full_marks_to_the_solution_and_zero_to_the_stubs(chapter, tmp_path):
    nbgrader = find_nbgrader()
    if nbgrader is None:
        reason = "nbgrader is not installed: `make tools` installs it in _build/ci-venv"
        if os.environ.get("CI") or os.environ.get("GITHUB_ACTIONS"):
            pytest.fail(f"{reason}; on CI `make test` must have done so")
        pytest.skip(reason)
    course = tmp_path / "course"
    [source] = write_nbgrader_course(course, {"09_circle": chapter})

    # nbgrader runs `alembic` (and a kernel) from its own environment's bin folder.
    env = {**os.environ, "PATH": f"{Path(nbgrader).parent}{os.pathsep}{os.environ.get('PATH', '')}"}

    def run(*args):
        done = subprocess.run([nbgrader, *args], cwd=course, capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, f"nbgrader {' '.join(args)}:\n{done.stdout}\n{done.stderr}"

    run("db", "assignment", "add", "09_circle")
    run("generate_assignment", "09_circle", "--force")
    release = course / "release" / "09_circle" / "09_circle.ipynb"
    released = nbformat.read(release, as_version=4)
    code = "".join(c.source for c in released.cells if c.cell_type == "code")
    assert "BEGIN SOLUTION" not in code and "return math.pi" not in code and "raise NotImplementedError()" in code
    for student, notebook in {"solved": source, "unsolved": release}.items():
        run("db", "student", "add", student)
        folder = course / "submitted" / student / "09_circle"
        folder.mkdir(parents=True)
        shutil.copy(notebook, folder / "09_circle.ipynb")
        run("autograde", "09_circle", "--student", student, "--force")
    run("export", "--to", str(tmp_path / "grades.csv"))
    with open(tmp_path / "grades.csv") as f:
        grades = {row["student_id"]: row for row in csv.DictReader(f)}
    assert float(grades["solved"]["max_score"]) == 2.0
    assert float(grades["solved"]["raw_score"]) == 2.0, grades
    assert float(grades["unsolved"]["raw_score"]) == 0.0, grades
