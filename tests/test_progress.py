"""The progress bar: live for a person, one summary line in CI, silent when off."""

import io

import pytest

import genbook
from genbook.progress import Progress, progress_mode


def run(monkeypatch, capsys, mode):
    if mode is None:
        monkeypatch.delenv("GENBOOK_PROGRESS", raising=False)
    else:
        monkeypatch.setenv("GENBOOK_PROGRESS", mode)
    bar = genbook.progress(range(5), desc="demo")
    for i in bar:
        bar.set_postfix(loss=1.0 / (i + 1))
    return capsys.readouterr()


def test_summary_mode_prints_one_line_and_no_frames(monkeypatch, capsys):
    out = run(monkeypatch, capsys, "summary")
    assert out.err == ""
    assert out.out.count("\n") == 1 and "\r" not in out.out
    assert out.out.startswith("demo: 5 it in ") and "loss=0.2" in out.out


def test_off_mode_is_silent(monkeypatch, capsys):
    out = run(monkeypatch, capsys, "off")
    assert out.out == "" and out.err == ""


def test_live_mode_draws_a_bar(monkeypatch, capsys):
    out = run(monkeypatch, capsys, "live")
    assert "demo" in out.err and "5/5" in out.err


def test_ci_defaults_to_summary(monkeypatch):
    monkeypatch.delenv("GENBOOK_PROGRESS", raising=False)
    monkeypatch.setenv("CI", "true")
    assert progress_mode() == "summary"
    monkeypatch.delenv("CI")
    assert progress_mode() == "live"


def test_bad_mode(monkeypatch):
    monkeypatch.setenv("GENBOOK_PROGRESS", "loud")
    with pytest.raises(ValueError, match="'loud' is not a mode"):
        Progress(range(3), file=io.StringIO())
