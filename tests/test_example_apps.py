"""examples/aiohttp_app.py and examples/flask_app.py, started with their documented
commands (aiohttp's own runner; waitress for Flask) and hit with httpx."""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests._demo_server import ROOT, free_port

SCRIPTS = {"aiohttp": "examples/aiohttp_app.py", "flask": "examples/flask_app.py"}
BLOCK = hashlib.sha256(b"streamfx").digest() * (1 << 15)


@contextlib.contextmanager
def running_example(name: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start ``python examples/<name>_app.py --port P`` and yield its URL and process;
    SIGINT (Ctrl-C) at the end."""
    port = free_port()
    command = [sys.executable, SCRIPTS[name], "--port", str(port), "--file-mb", "2"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.head(f"{base}/file", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, f"{SCRIPTS[name]} did not start"
            time.sleep(0.1)
        yield base, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.stderr:
                process.stderr.close()


@pytest.fixture(scope="module", params=sorted(SCRIPTS))
def app(request: pytest.FixtureRequest) -> Iterator[str]:
    with running_example(request.param) as (base, _):
        yield base


def sse_ids(response: httpx.Response) -> list[tuple[str, str]]:
    """(event type, id) of every event with an id, in order."""
    found, event = [], "message"
    for line in response.text.splitlines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("id: "):
            found.append((event, line[4:]))
        elif not line:
            event = "message"
    return found


def test_sse_job_runs_and_resumes_from_last_event_id(app: str) -> None:
    url = f"{app}/job/events?steps=5&interval=0.01"
    whole = httpx.get(url, timeout=10)
    assert whole.headers["content-type"].startswith("text/event-stream")
    assert sse_ids(whole) == [("progress", str(n)) for n in range(1, 6)] + [("done", "6")]
    data = [json.loads(line[6:]) for line in whole.text.splitlines() if line.startswith("data: {")]
    assert data[0] == {"step": 1, "total": 5}
    resumed = httpx.get(url, headers={"Last-Event-ID": "3"}, timeout=10)
    assert sse_ids(resumed) == [("progress", "4"), ("progress", "5"), ("done", "6")]
    assert httpx.get(url, headers={"Last-Event-ID": "6"}).status_code == 204


@pytest.mark.parametrize(
    "last_event_id",
    [b"\xb2", "²".encode(), b"9" * 5000, b"-3", b"3.0", b"0x3", b"", "٣".encode()],
    ids=[
        "latin1-superscript",
        "utf8-superscript",
        "5000-digits",
        "negative",
        "float",
        "hex",
        "empty",
        "arabic-digit",
    ],
)
def test_an_untrusted_last_event_id_starts_over_instead_of_a_500(
    app: str, last_event_id: bytes
) -> None:
    """Whatever a client sends as Last-Event-ID, the job streams (from the start when
    the id is not a plain number of at most 18 ASCII digits); never a 500."""
    url = f"{app}/job/events?steps=3&interval=0.01"
    response = httpx.get(url, headers={b"Last-Event-ID": last_event_id}, timeout=10)
    assert response.status_code == 200
    expected = [("progress", "1"), ("progress", "2"), ("progress", "3"), ("done", "4")]
    assert sse_ids(response) == expected


def test_a_last_event_id_past_the_end_is_204(app: str) -> None:
    url = f"{app}/job/events?steps=3&interval=0.01"
    for last in (b"4", b"9" * 18):
        assert httpx.get(url, headers={b"Last-Event-ID": last}).status_code == 204


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_exports(app: str, fmt: str) -> None:
    response = httpx.get(f"{app}/export/{fmt}", params={"rows": 1500}, timeout=30)
    assert response.status_code == 200
    assert f'filename="export-1500.{fmt}"' in response.headers["content-disposition"]
    if fmt == "csv":
        lines = response.text.splitlines()
        assert lines[0] == "id,customer,amount"
        assert len(lines) == 1501
    elif fmt == "ndjson":
        assert [json.loads(line)["id"] for line in response.text.splitlines()] == list(
            range(1, 1501)
        )
    else:
        assert [row["id"] for row in response.json()] == list(range(1, 1501))


def test_download_whole_and_ranged(app: str) -> None:
    whole = httpx.get(f"{app}/file", timeout=30)
    assert whole.status_code == 200
    assert whole.content == BLOCK * 2
    etag = whole.headers["etag"]
    part = httpx.get(f"{app}/file", headers={"Range": "bytes=1000-1099", "If-Range": etag})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 1000-1099/{2 << 20}"
    assert part.content == BLOCK[1000:1100]


def test_upload_accepts_and_refuses_clearly(app: str) -> None:
    ok = httpx.post(f"{app}/upload", files={"file": ("a.txt", b"hello", "text/plain")})
    assert ok.status_code == 200
    assert ok.json() == {"parts": [{"field": "file", "filename": "a.txt", "bytes": 5}]}

    wrong = httpx.post(f"{app}/upload", files={"file": ("x.exe", b"MZ", "application/x-dosexec")})
    assert wrong.status_code == 415
    assert "application/x-dosexec" in wrong.text

    big = httpx.post(
        f"{app}/upload", files={"file": ("b.txt", b"x" * ((5 << 20) + 1), "text/plain")}
    )
    assert big.status_code == 413
    assert "larger than 5242880 bytes" in big.text

    truncated = httpx.post(
        f"{app}/upload",
        content=b'--b\r\nContent-Disposition: form-data; name="f"\r\n\r\ncut',
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert truncated.status_code == 400
    assert "truncated" in truncated.text


def test_aiohttp_shutdown_ends_open_sse_streams_cleanly() -> None:
    """Ctrl-C with an SSE job streaming: the stream ends on purpose (a clean end of the
    chunked body) and the app exits with 0 instead of waiting for the job."""
    with running_example("aiohttp") as (base, process):
        with httpx.stream("GET", f"{base}/job/events?steps=1000&interval=0.05", timeout=10) as r:
            chunks = r.iter_raw()
            assert next(chunks)  # the stream is open
            process.send_signal(signal.SIGINT)
            body = b"".join(chunks)  # httpx raises if a chunked body is cut short
        assert b"event: done" not in body
        assert process.wait(timeout=20) == 0
