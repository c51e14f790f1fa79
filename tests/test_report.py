"""genbook.report writes the results file the benchmark and the results page read."""

import json

import pytest
import torch

import genbook
from genbook.report import load_results


@pytest.fixture(autouse=True)
def scratch(tmp_path, monkeypatch):
    monkeypatch.setenv("GENBOOK_BUILD", str(tmp_path))
    monkeypatch.delenv("GENBOOK_PROFILE", raising=False)
    return tmp_path


def test_report_writes_the_record(scratch):
    genbook.report("05_ddpm", metrics={"fd": torch.tensor(12.5), "steps": 50},
                   baselines={"pca_fd": 40.0}, wall_s=61.234, n_samples=1000)
    record = json.loads((scratch / "results" / "05_ddpm.json").read_text())
    assert record["chapter"] == "05_ddpm" and record["profile"] == "fast"
    assert record["metrics"] == {"fd": 12.5, "steps": 50.0}
    assert record["baselines"] == {"pca_fd": 40.0}
    assert record["wall_s"] == 61.23 and record["n_samples"] == 1000
    assert load_results() == [record]


def test_report_default_wall_time_is_positive(scratch):
    assert genbook.report("00_x", metrics={"a": 1.0})["wall_s"] >= 0


@pytest.mark.parametrize("metrics, error, match", [
    ({}, ValueError, "non-empty dict"),
    ({"fd": float("nan")}, ValueError, "must be finite"),
    ({"fd": "12"}, TypeError, r"metrics\['fd'\] must be a number, got str"),
    ({"fd": torch.ones(3)}, ValueError, "single number"),
])
def test_report_rejects_bad_numbers(metrics, error, match):
    with pytest.raises(error, match=match):
        genbook.report("05_ddpm", metrics=metrics)


def test_report_rejects_bad_slug():
    with pytest.raises(ValueError, match="chapter must be a slug"):
        genbook.report("../etc", metrics={"a": 1})
