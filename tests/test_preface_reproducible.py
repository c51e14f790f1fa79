"""Issue 21, item 10: the preface, run twice (once with no network but loopback where the
machine allows), reports bit-identical metrics and baselines; timings are kept apart.

Each run executes chapters/00_preface.py through nbclient, as `make bench` does, in a
fresh process with its own build and checkpoint folders, so the model is trained both times.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RUN = ("from pathlib import Path; from genbook.bench import run_chapter; "
       "run_chapter(Path('chapters/00_preface.py').resolve())")


def _can_unshare() -> str | None:
    """None if a command can run with only loopback, else why not."""
    if not (shutil.which("unshare") and shutil.which("ip")):
        return "unshare or ip is not installed"
    probe = subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"`unshare -n` is not permitted here ({probe.stderr.strip()[:200]})"
    return None


def _run_preface(tmp: Path, offline: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENBOOK_")}
    env.update(GENBOOK_BUILD=str(tmp / "build"), GENBOOK_CHECKPOINTS=str(tmp / "checkpoints"),
               GENBOOK_PROGRESS="summary", OMP_NUM_THREADS="1")
    if "GENBOOK_DATA" in os.environ:
        env["GENBOOK_DATA"] = os.environ["GENBOOK_DATA"]
    env.pop("MPLBACKEND", None)
    command = [sys.executable, "-c", RUN]
    if offline:  # a new network namespace: no interface but loopback (the kernel talks to its client over it)
        command = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *command]
    result = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return json.loads((tmp / "build" / "results" / "00_preface.json").read_text())


def test_preface_twice_gives_identical_metrics_offline_too(tmp_path):
    first = _run_preface(tmp_path / "first", offline=False)
    why_not = _can_unshare()
    second = _run_preface(tmp_path / "second", offline=why_not is None)
    assert first["metrics"] == second["metrics"]
    assert first["baselines"] == second["baselines"]
    assert "timings" in first and "timings" in second
    if why_not:
        pytest.skip(f"ran twice with the network; the offline half needs unshare: {why_not}")


def test_offline_probe_is_honest():
    why_not = _can_unshare()
    if why_not:
        pytest.skip(why_not)
    probe = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up && ip -o link"],
                           capture_output=True, text=True)
    interfaces = [line.split(":")[1].strip() for line in probe.stdout.splitlines()]
    assert interfaces == ["lo"], probe.stdout
