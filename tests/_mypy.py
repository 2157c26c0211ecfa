"""Run ``mypy --strict`` (with the project's configuration) over a file, as a user's
type check of their own code would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def assert_mypy_strict_passes(path: str) -> None:
    """Fail with mypy's report unless ``mypy --strict path`` (run from the repository
    root) finds no issue in that one file."""
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", path],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success: no issues found in 1 source file" in done.stdout, done.stdout
