"""Every adapter answers the same streamfx error with the same status and the same
short, client-safe body, and logs the detail only to the server log (defect 3: the
WSGI adapter sent ``str(exc)`` for a 4xx, and with it the server's paths).

Real servers in this process (tests/_every_adapter.py), real httpx clients; the log
records are the server's own, caught by caplog.
"""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from streamfx import DownloadNotFound, PathOutsideRoot
from tests._every_adapter import PATH_IN_MESSAGE, SITES, Counts, Site, running


@pytest.fixture(params=SITES)
def site_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A download root, with a secret file beside it (outside the root)."""
    root = (tmp_path / "served").resolve()
    root.mkdir()
    (tmp_path / "secret.txt").write_text("secret")
    return root


def adapter_logger(site_name: str) -> str:
    return "streamfx.adapters." + site_name.partition("-")[0]


async def test_refused_downloads_show_the_status_phrase_and_log_the_detail(
    site_name: str, files: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streamfx")
    async with (
        running(site_name, Site(files, Counts())) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        # /files: download() refuses before a response exists; /stream: the first
        # chunk of a response raises the same refusal.
        for route in ("/files", "/stream"):
            outside = await client.get(route, params={"name": "../secret.txt"})
            missing = await client.get(route, params={"name": "nothing.bin"})
            assert (outside.status_code, outside.text) == (403, "Forbidden"), route
            assert (missing.status_code, missing.text) == (404, "Not Found"), route
            for reply in (outside, missing):
                assert reply.headers["content-type"] == "text/plain; charset=utf-8"
                assert reply.headers["content-length"] == str(len(reply.content))
                assert str(files.parent) not in reply.text + str(reply.headers)

    logger = adapter_logger(site_name)
    records = [record for record in caplog.records if record.name == logger]
    refusals = [
        record
        for record in records
        if record.exc_info and isinstance(record.exc_info[1], (PathOutsideRoot, DownloadNotFound))
    ]
    assert len(refusals) == 4, [record.getMessage() for record in records]
    assert all(record.levelno == logging.INFO for record in refusals)
    outside_messages = [
        record.getMessage() for record in refusals if "secret.txt" in record.getMessage()
    ]
    assert len(outside_messages) == 2
    for message in outside_messages:
        assert message.startswith("answered 403 Forbidden: PathOutsideRoot:")
        assert str(files) in message  # the detail is in the server's log
    missing_messages = [
        record.getMessage() for record in refusals if "nothing.bin" in record.getMessage()
    ]
    assert len(missing_messages) == 2
    assert all(m.startswith("answered 404 Not Found: DownloadNotFound:") for m in missing_messages)


async def test_a_failure_is_a_plain_500_and_logged_as_an_error(
    site_name: str, files: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streamfx")
    async with (
        running(site_name, Site(files, Counts())) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        failed = await client.get("/fail")
    assert (failed.status_code, failed.text) == (500, "Internal Server Error")
    assert failed.headers["content-type"] == "text/plain; charset=utf-8"
    logged = [
        record
        for record in caplog.records
        if record.name == adapter_logger(site_name)
        and record.exc_info
        and PATH_IN_MESSAGE in str(record.exc_info[1])
    ]
    assert [record.levelno for record in logged] == [logging.ERROR]
