"""Every Python block of the README runs, or type-checks: the README cannot drift.

Each ```` ```python ```` block is taken as the marker comment on the line before it
says (an HTML comment, invisible on the rendered page):

- ``<!-- readme: run -->``: a complete script, run in a fresh interpreter; it must exit 0.
- ``<!-- readme: serve PATH -->``: a module that defines an ASGI ``app``; it is served by
  a fresh uvicorn process on a free port, and a GET of ``PATH`` must answer 200 with a
  first body chunk.
- no marker: a fragment (it may use names it does not define, such as ``app`` or
  ``request``): it is type-checked with mypy, each name it uses without defining taken
  as ``Any``. What it imports must exist and its calls of streamfx must type-check, so
  a renamed function or parameter fails here.
"""

from __future__ import annotations

import ast
import builtins
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests._servers import free_port, launch

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BLOCK = re.compile(r"(?:<!-- readme: (?P<marker>[^>]*?) -->\n)?```python\n(?P<code>.*?)```", re.S)


@dataclass(frozen=True)
class Block:
    line: int
    marker: str
    code: str

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.marker or 'check'})"


def blocks() -> list[Block]:
    text = README.read_text()
    found = []
    for match in BLOCK.finditer(text):
        line = text.count("\n", 0, match.start("code"))
        found.append(Block(line, (match["marker"] or "").strip(), match["code"]))
    return found


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_the_readme_has_python_blocks_and_only_known_markers() -> None:
    found = blocks()
    assert len(found) >= 10
    for block in found:
        kind = block.marker.split(" ")[0]
        assert kind in {"", "run", "serve"}, f"{block}: unknown marker {block.marker!r}"


@pytest.mark.parametrize("block", [b for b in blocks() if b.marker == "run"], ids=str)
def test_run_blocks_run(block: Block, tmp_path: Path) -> None:
    script = tmp_path / "block.py"
    script.write_text(block.code)
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{block} failed:\n{done.stdout}\n{done.stderr}"


@pytest.mark.parametrize("block", [b for b in blocks() if b.marker.startswith("serve ")], ids=str)
def test_serve_blocks_answer_under_uvicorn(block: Block, tmp_path: Path) -> None:
    (tmp_path / "readme_app.py").write_text(block.code)
    path = block.marker.split(" ", 1)[1]
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "readme_app:app", "--port", str(port)]
    command += ["--app-dir", str(tmp_path), "--log-level", "warning"]
    url = f"http://127.0.0.1:{port}"
    with (
        launch(command, f"{url}/readme-not-found", env=env()),
        httpx.Client(timeout=30) as client,
        client.stream("GET", f"{url}{path}") as response,
    ):
        assert response.status_code == 200, f"{block}: {response.status_code}"
        assert next(response.iter_raw()), f"{block}: no body"


def as_checked_module(code: str) -> str:
    """`code` as a module mypy can check: the names it uses without binding declared
    as ``Any``, and a block that awaits at its top level wrapped in an async function."""
    flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    tree: ast.Module = compile(code, "<readme>", "exec", flags=flags)
    bound: set[str] = set()
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (used if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
            if not isinstance(node, ast.ClassDef):
                every = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
                every += [a for a in (node.args.vararg, node.args.kwarg) if a is not None]
                bound.update(arg.arg for arg in every)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    free = sorted(used - bound - set(dir(builtins)))
    declared = [f"{name} = Any" if name[0].isupper() else f"{name}: Any" for name in free]
    prelude = "; ".join(["from typing import Any", *declared])  # one line: see README_LINE
    awaits_at_top = any(
        isinstance(node, ast.Await | ast.AsyncFor | ast.AsyncWith)
        for statement in tree.body
        if not isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        for node in ast.walk(statement)
    )
    if awaits_at_top:  # the wrapper's line takes the place of the blank line
        return prelude + "\nasync def _readme_block() -> None:\n" + textwrap.indent(code, "    ")
    return prelude + "\n\n" + code


README_LINE = re.compile(r"readme_block_(\d+)\.py:(\d+)")
"""Where mypy points in a checked module; its line N is the block's line N - 2."""


def test_fragments_type_check(tmp_path: Path) -> None:
    fragments = [b for b in blocks() if not b.marker]
    assert fragments
    for number, block in enumerate(fragments):
        (tmp_path / f"readme_block_{number}.py").write_text(as_checked_module(block.code))
    (tmp_path / "mypy.ini").write_text(
        f"[mypy]\ncheck_untyped_defs = True\ncache_dir = {ROOT / '.mypy_cache' / 'readme'}\n"
        "[mypy-aiostream.*]\nignore_missing_imports = True\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "."],
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    report = README_LINE.sub(
        lambda m: f"README.md:{fragments[int(m[1])].line + int(m[2]) - 2}", done.stdout
    )
    assert done.returncode == 0, report
