"""pyproject.toml, constraints.txt and environment.yml describe the same environment."""

import re

import tomllib

from genbook.paths import REPO_ROOT


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    return {norm(re.split(r"[<>=!~\[; ]", d)[0]) for d in deps}


def pins() -> dict[str, str]:
    lines = (REPO_ROOT / "constraints.txt").read_text().splitlines()
    return {norm(a): b for a, b in (line.split("==") for line in lines if "==" in line and not line.startswith("#"))}


def conda_pip_entries() -> dict[str, str]:
    text = (REPO_ROOT / "environment.yml").read_text()
    entries = re.findall(r"^\s+- ([A-Za-z0-9_.\-]+)==([^\s#]+)", text, flags=re.M)
    return {norm(a): b for a, b in entries}


def test_every_dependency_is_pinned():
    missing = declared() - set(pins())
    assert not missing, f"constraints.txt lacks {sorted(missing)}: run `make lock`"
    assert pins()["torch"] == "2.13.0", "CI installs the local CPU wheel of torch 2.13.0"


def test_environment_yml_has_the_same_packages_and_versions():
    conda = conda_pip_entries()
    assert set(conda) == declared(), (
        f"environment.yml and pyproject.toml disagree: only in environment.yml {sorted(set(conda) - declared())}, "
        f"only in pyproject {sorted(declared() - set(conda))}"
    )
    drift = {name: (v, pins()[name]) for name, v in conda.items() if pins()[name] != v}
    assert not drift, f"environment.yml versions differ from constraints.txt: {drift}"
    assert re.search(r"^\s+- python=3\.11$", (REPO_ROOT / "environment.yml").read_text(), flags=re.M)


def test_pyproject_keeps_torch_loose():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    torch_dep = next(d for d in project["dependencies"] if d.startswith("torch"))
    assert ">=" in torch_dep and "==" not in torch_dep, "readers bring their own CUDA build of torch"
