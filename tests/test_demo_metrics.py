"""The demo's ``/metrics``: Prometheus text format, parsed with prometheus-client's
parser, and moved by exactly the requests this test makes."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests._demo_server import running_demo

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def demo_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo") / "server.log"


@pytest.fixture(scope="module")
def demo(demo_log: Path) -> Iterator[str]:
    with running_demo(demo_log) as server:
        yield server.base


def test_the_demo_prints_its_url(demo: str, demo_log: Path) -> None:
    assert f"streamfx demo: open {demo}/" in demo_log.read_text()


def scrape(base: str) -> Samples:
    response = httpx.get(f"{base}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return samples


def stream(kind: str, name: str, **more: str) -> frozenset[tuple[str, str]]:
    return frozenset({"kind": kind, "name": name, **more}.items())


def test_exports_move_items_bytes_and_streams(demo: str) -> None:
    before = scrape(demo)
    csv = stream("export", "export-csv")
    sizes = []
    for rows in (1000, 250):
        response = httpx.get(f"{demo}/api/export/csv", params={"rows": rows})
        assert response.status_code == 200
        assert response.text.count("\n") == rows + 1
        sizes.append(len(response.content))
    after = scrape(demo)

    def moved(name: str, labels: frozenset[tuple[str, str]]) -> float:
        return after[name, labels] - before.get((name, labels), 0.0)

    assert moved("streamfx_items_sent_total", csv) == 1250
    assert moved("streamfx_bytes_sent_total", csv) == sum(sizes)
    completed = csv | {("outcome", "completed")}
    assert moved("streamfx_streams_closed_total", completed) == 2
    assert moved("streamfx_stream_duration_seconds_count", csv) == 2
    assert after["streamfx_active_streams", csv] == 0


def test_job_events_upload_errors_and_downloads_are_counted(demo: str) -> None:
    before = scrape(demo)
    job = httpx.post(f"{demo}/api/jobs", params={"steps": 5, "interval": 0.01, "pause": 0})
    record = job.json()
    url = f"{demo}/api/jobs/{record['id']}/events"
    with httpx.stream("GET", url, params={"since": record["since"]}, timeout=10) as events:
        body = b"".join(events.iter_bytes())  # the stream ends after the job's done event
    seqs = [json.loads(line[6:])["seq"] for line in body.decode().splitlines() if '"seq"' in line]
    # start log, 5 progress, done (the log line comes every 10 steps: none here)
    assert seqs == list(range(1, 8))

    refused = httpx.post(
        f"{demo}/api/upload",
        files={"file": ("setup.exe", b"MZ", "application/x-msdownload")},
    )
    assert refused.status_code == 415  # refused as the part begins: nothing was read
    truncated = httpx.post(
        f"{demo}/api/upload",
        content=b'--b\r\nContent-Disposition: form-data; name="f"; filename="a.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\nthe body stops here",
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert truncated.status_code == 400
    assert "truncated" in truncated.text
    ranged = httpx.get(f"{demo}/api/file", headers={"Range": "bytes=0-99"})
    assert ranged.status_code == 206
    assert len(ranged.content) == 100
    after = scrape(demo)

    def moved(name: str, labels: frozenset[tuple[str, str]]) -> float:
        return after[name, labels] - before.get((name, labels), 0.0)

    jobs = stream("broadcast", "job-events")  # a hub subscriber
    assert moved("streamfx_items_sent_total", jobs) == 7
    # the demo closes the subscription after the done event
    assert moved("streamfx_streams_closed_total", jobs | {("outcome", "closed")}) == 1
    upload = stream("upload", "demo-upload", outcome="error")
    assert moved("streamfx_streams_closed_total", upload) == 1
    assert moved("streamfx_bytes_sent_total", stream("download", "")) == 100


def test_ctrl_c_ends_open_sse_streams_cleanly(tmp_path: Path) -> None:
    """SIGINT with the page's endless streams open: they end on purpose (a clean end of
    the chunked body, so the client sees no error) and the server exits with 0."""
    with running_demo(tmp_path / "server.log", file_mb=1) as server:
        job = httpx.post(f"{server.base}/api/jobs", params={"steps": 1000, "interval": 1})
        url = f"{server.base}/api/jobs/{job.json()['id']}/events"
        with (
            httpx.stream("GET", f"{server.base}/api/live", timeout=10) as live,
            httpx.stream("GET", url, timeout=10) as events,
        ):
            chunks = live.iter_raw()
            assert next(chunks).startswith(b":")  # the stream is open
            server.process.send_signal(signal.SIGINT)
            b"".join(chunks)  # httpx raises if a chunked body is cut short
            job_body = b"".join(events.iter_raw())
            assert job_body.startswith(b"event: worker\n")
            # the hub's farewell: a jittered reconnection delay, then the end
            assert re.search(rb"\nretry: \d+\n\n$", job_body), job_body[-200:]
        assert server.process.wait(timeout=20) == 0
