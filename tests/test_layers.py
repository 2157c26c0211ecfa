"""The import rules of docs/architecture.md, at run time.

`lint-imports` (run by ``make test``, contracts in pyproject.toml) checks the import
graph statically. These tests check what that graph promises when the code runs: in a
fresh interpreter where no optional dependency and no web framework can be imported,
``import streamfx`` works, loads no adapter, and the builders that have a fallback
(JSON without orjson) still work, while the one that needs an extra says which.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

OPTIONAL = (
    "orjson",
    "prometheus_client",
    "opentelemetry",
    "redis",
    "python_multipart",
    "multipart",
)
FRAMEWORKS = (
    "aiohttp",
    "asgiref",
    "django",
    "fastapi",
    "flask",
    "granian",
    "gunicorn",
    "hypercorn",
    "litestar",
    "quart",
    "sse_starlette",
    "starlette",
    "uvicorn",
    "waitress",
    "werkzeug",
)

# Runs in a fresh interpreter: a meta-path finder refuses every module in BLOCKED (and
# its submodules) as if it were not installed, then streamfx is imported and used.
SCRIPT = """
import asyncio, importlib.abc, json, sys

BLOCKED = frozenset(sys.argv[1].split(","))


class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


sys.meta_path.insert(0, NotInstalled())
report = {}
try:
    import orjson
except ImportError:
    report["blocker_works"] = True
else:
    report["blocker_works"] = False

import streamfx
from streamfx._response.json import default_serializer

report["using_orjson"] = default_serializer().uses_orjson
report["file"] = streamfx.__file__
report["missing_public_names"] = [n for n in streamfx.__all__ if not hasattr(streamfx, n)]
report["loaded_blocked"] = sorted(
    n for n in sys.modules if n.partition(".")[0] in BLOCKED
)
report["loaded_adapters"] = sorted(n for n in sys.modules if n.startswith("streamfx.adapters"))


async def body(response):
    return b"".join([chunk async for chunk in response.body])


async def rows():
    yield {"id": 1, "name": "été"}
    yield {"id": 2, "name": "x"}


report["sse"] = asyncio.run(body(streamfx.sse(rows()))).decode()
report["json"] = asyncio.run(body(streamfx.export(rows(), "json"))).decode()
report["ndjson"] = asyncio.run(body(streamfx.export(rows(), "ndjson"))).decode()


async def one_upload() -> list[list[str]]:
    async def body():
        yield b'--x\\r\\nContent-Disposition: form-data; name="a"\\r\\n\\r\\nhi\\r\\n--x--\\r\\n'

    content_type = "multipart/form-data; boundary=x"
    limits = {"max_size": 1000, "max_part_size": 100, "max_parts": 2}
    async with streamfx.parse_multipart(body(), content_type, **limits) as parts:
        return [[part.name, (await part.read()).decode()] async for part in parts]


report["multipart"] = asyncio.run(one_upload())
import streamfx.metrics, streamfx.pipe  # the hook and the aiostream operators need no extra

print(json.dumps(report))
"""


def run_without(blocked: tuple[str, ...]) -> dict[str, object]:
    """Run `SCRIPT` from this checkout with `blocked` not importable; its report."""
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, ",".join(blocked)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout)
    return report


@pytest.fixture(scope="module")
def bare() -> dict[str, object]:
    """What streamfx does with no optional dependency and no web framework."""
    return run_without(OPTIONAL + FRAMEWORKS)


def test_import_streamfx_works_with_no_optional_dependency_and_no_framework(
    bare: dict[str, object],
) -> None:
    assert bare["blocker_works"] is True  # orjson is installed here, yet not importable
    assert Path(str(bare["file"])).is_relative_to(ROOT)  # this checkout, not another
    assert bare["missing_public_names"] == []
    assert bare["loaded_blocked"] == []
    assert bare["loaded_adapters"] == []  # import streamfx never imports an adapter


def test_json_falls_back_to_the_standard_library_without_orjson(
    bare: dict[str, object],
) -> None:
    assert bare["using_orjson"] is False
    assert bare["json"] == '[{"id":1,"name":"été"},{"id":2,"name":"x"}]'
    assert bare["ndjson"] == '{"id":1,"name":"été"}\n{"id":2,"name":"x"}\n'
    assert bare["sse"] == ':\n\ndata: {"id":1,"name":"été"}\n\ndata: {"id":2,"name":"x"}\n\n'


def test_uploads_need_no_optional_dependency(bare: dict[str, object]) -> None:
    assert bare["multipart"] == [["a", "hi"]]


# -- the map in docs/architecture.md ---------------------------------------------------

ARCHITECTURE = ROOT / "docs" / "architecture.md"
MODULE_PATH = re.compile(r"`(streamfx/[\w/]+\.py)`")


def modules_with_code() -> set[str]:
    """Every module of the package except the ``__init__.py`` files that hold only a
    docstring."""
    found = set()
    for path in (ROOT / "streamfx").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstring_only = len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr)
        if path.name == "__init__.py" and (not tree.body or docstring_only):
            continue
        found.add(path.relative_to(ROOT).as_posix())
    return found


def test_the_architecture_map_names_every_module_and_only_real_ones() -> None:
    named = set(MODULE_PATH.findall(ARCHITECTURE.read_text(encoding="utf-8")))
    existing = modules_with_code()
    assert existing - named == set(), "add a row to 'Where each behaviour lives'"
    assert named - existing == set(), "docs/architecture.md names a module that is gone"


def test_nothing_in_the_repository_points_outside_it() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], capture_output=True, cwd=ROOT, check=True
    ).stdout.split(b"\0")
    outside = re.compile(r"\.\./shared|shared/DESIGN|(?<![\w/])DESIGN\.md")
    offenders = []
    for name in filter(None, tracked):
        path = ROOT / name.decode()
        if path == Path(__file__).resolve():  # the pattern above names what it looks for
            continue
        if path.suffix not in {".py", ".md", ".toml", ".cfg", ".txt", ".html", ".js"} and (
            path.name not in {"Makefile", "run"}
        ):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if outside.search(line):
                offenders.append(f"{name.decode()}:{number}: {line.strip()}")
    assert offenders == []
