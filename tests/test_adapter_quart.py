"""What only `streamfx.adapters.quart.to_quart` does. Everything every adapter does,
Quart's included under uvicorn and hypercorn: tests/test_adapter_contract*.py (the app
is tests/apps/quart_app.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from streamfx.adapters.quart import to_quart
from tests._servers import serve
from tests._stream_routes import make_routes
from tests.apps.tally import Tally

README = Path(__file__).resolve().parent.parent / "README.md"


async def test_write_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="write_timeout"):
        await to_quart(make_routes(Tally(), Path())["/lines"]({}, ""), write_timeout=0)


def readme_block(marker: str) -> str:
    """The README's Python code block that holds `marker`."""
    blocks: list[str] = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    (block,) = [block for block in blocks if marker in block]
    return block


async def test_the_readme_quart_example_answers_a_missing_file_404_and_takes_uploads(
    tmp_path: Path,
) -> None:
    """The README's Quart block, run as written (``feed`` is the one name it leaves to
    the reader; its ``/srv/files`` is a folder here), under uvicorn: ``download()``
    raises before `to_quart` runs, and the error handler it registers answers 404, not
    a 500 with a traceback."""
    block = readme_block("from streamfx.adapters.quart import")
    assert '"/srv/files"' in block
    block = block.replace('"/srv/files"', repr(str(tmp_path)))
    # __name__: Quart(__name__) looks for the module's folder; this one has one
    namespace: dict[str, Any] = {"feed": lambda: iter(()), "__name__": __name__}
    exec(compile(block, "README", "exec"), namespace)
    app = namespace["app"]
    async with (
        serve(app) as (_, port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client,
    ):
        missing = await client.get("/files/missing.bin")
        assert (missing.status_code, missing.text) == (404, "Not Found")
        assert missing.headers["content-type"] == "text/plain; charset=utf-8"
        (tmp_path / "here.txt").write_bytes(b"content")
        found = await client.get("/files/here.txt")
        assert (found.status_code, found.content) == (200, b"content")
        body = b'--b0\r\nContent-Disposition: form-data; name="a"\r\n\r\nhello\r\n--b0--\r\n'
        headers = {"Content-Type": "multipart/form-data; boundary=b0"}
        stored = await client.post("/upload", content=body, headers=headers)
        assert (stored.status_code, stored.text) == (200, "stored")
        refused = await client.post("/upload", content=b"{}", headers={"Content-Type": "x/y"})
        assert refused.status_code == 415
