"""What a chapter prints about its results: one summary line for a report, paths relative to the repository."""

import pytest

from genbook.paths import REPO_ROOT, repo_relative
from genbook.report import report


@pytest.fixture(autouse=True)
def scratch(tmp_path, monkeypatch):
    monkeypatch.setenv("GENBOOK_BUILD", str(tmp_path))
    monkeypatch.delenv("GENBOOK_PROFILE", raising=False)
    return tmp_path


def test_the_record_shows_as_one_summary_line(scratch):
    record = report("05_ddpm", metrics={"fd": 63.14159}, baselines={"pca_fd": 166.0}, n_samples=1000)
    assert isinstance(record, dict) and record["metrics"] == {"fd": 63.14159}
    line = repr(record)
    assert "\n" not in line and line.startswith("05_ddpm (fast, ") and "fd = 63.14" in line
    assert "baselines: pca_fd = 166" in line and str(record) == line and "{" not in line
    assert repo_relative(REPO_ROOT / "data" / "checkpoints" / "x.pt") == "data/checkpoints/x.pt"
    assert not repo_relative("/somewhere/else/model.pt").startswith("/")
