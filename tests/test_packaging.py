"""How streamfx installs: after ``pip install -e .``, static tools (mypy) find the package.

setuptools' editable install of a flat layout used to be an import hook (a
``__editable___streamfx_*_finder`` module that only the interpreter runs), so ``mypy
--strict`` on a user's file reported ``import-not-found`` for streamfx. With
``package-dir = {"" = "."}`` it is a ``.pth`` file holding the repository's path, which
mypy reads as a search path. This installs the checkout editable into a scratch
virtualenv (no dependencies) and looks at what was installed.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_package_ships_its_types() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert (ROOT / "streamfx" / "py.typed").is_file()
    assert "py.typed" in config["package-data"]["streamfx"]


def test_an_editable_install_is_a_path_that_mypy_follows(tmp_path: Path) -> None:
    # A scratch virtualenv without pip, installed into by this interpreter's pip
    # (--python): pip uninstalls a project it finds in the environment it runs in, so it
    # must never run in this one (the suite's own, where streamfx is installed).
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install"]
    pip += ["--quiet", "--disable-pip-version-check", "--no-deps", "--no-compile"]
    done = subprocess.run(
        [*pip, "-e", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    site = next(venv.glob("lib/python3*/site-packages"))
    installed = sorted(path.name for path in site.iterdir())
    assert not [name for name in installed if name.endswith("_finder.py")], installed
    (pth,) = site.glob("__editable__*streamfx*.pth")
    assert pth.read_text().split() == [str(ROOT)]
