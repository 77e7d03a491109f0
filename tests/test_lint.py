"""The tooling and the tests pass ruff (pyflakes and pycodestyle rules: unused names, redefinitions, ...)."""

import subprocess
import sys

from coursekit import layout


def test_ruff_finds_nothing():
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "coursekit", "tests", "source_text"], cwd=layout.ROOT,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
