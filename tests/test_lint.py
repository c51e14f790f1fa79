"""The code of the book stays clean: ruff over genbook, the chapters, the tests and the conftest."""

import subprocess
import sys

from genbook.paths import REPO_ROOT


def test_ruff_is_clean():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", "genbook",
                             "chapters", "tests", "conftest.py"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
