"""The demo page in a real browser: headless Chromium from Debian's packages, driven
with playwright (no browser download: ``executable_path=/usr/bin/chromium``).

Loads the page, runs a job whose events two subscribers of the page follow over SSE
(and, in a second page, two more), has the server drop every connection mid-job and
checks that each resumed with no gap and no duplicate; downloads an export and
counts its rows; triggers the upload errors and reads their messages. A screenshot of
the page is saved to ``artifacts/demo.png``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests._demo_server import ROOT, running_demo

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "artifacts"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(autouse=True)
def no_leaked_tasks() -> None:
    """Replaces the suite's async leak check for this module: these tests run no asyncio
    code in this process (the demo runs in its own), and playwright's sync API keeps its
    own event loop running in this thread, where no other loop can be started."""


def chromium_missing_reason(euid: int, apt_get: str | None) -> str | None:
    """Why the browser tests cannot run here (None: they can, after an install).

    Debian's chromium is installed with apt-get when it is missing, which takes root; a
    machine without /usr/bin/chromium where that cannot be done skips the tests with
    this reason. CI runs as root on Debian, so there they always run."""
    if CHROMIUM.exists():
        return None
    if apt_get is None:
        return f"{CHROMIUM} is missing and there is no apt-get to install Debian's chromium"
    if euid != 0:
        return f"{CHROMIUM} is missing and installing it needs root: apt-get install chromium"
    return None


def ensure_chromium() -> Path:
    """Debian's chromium, installed with apt-get when it is missing (as root); a skip
    with the reason where that cannot be done."""
    reason = chromium_missing_reason(os.geteuid(), shutil.which("apt-get"))
    if reason is not None:
        pytest.skip(reason)
    if CHROMIUM.exists():
        return CHROMIUM
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env, timeout=900
    )
    assert CHROMIUM.exists(), "apt-get install chromium did not provide /usr/bin/chromium"
    return CHROMIUM


def test_without_chromium_and_no_way_to_install_it_the_tests_skip_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", tmp_path / "chromium")
    assert "needs root" in str(chromium_missing_reason(1000, "/usr/bin/apt-get"))
    assert "no apt-get" in str(chromium_missing_reason(0, None))
    assert chromium_missing_reason(0, "/usr/bin/apt-get") is None, "root installs it"
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(pytest.skip.Exception, match="installing it needs root"):
        ensure_chromium()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = ensure_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable), args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_demo(tmp_path_factory.mktemp("demo") / "server.log") as server:
        yield server.base


@pytest.fixture
def page(browser: Browser, demo: str) -> Iterator[Page]:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # a short job: 40 steps, 50 ms apart, and a 1.5 s silence for heartbeats
    page.goto(f"{demo}/?steps=40&interval=0.05&pause=1.5")
    page.wait_for_selector("body[data-ready=true]")
    try:
        yield page
    finally:
        context.close()
    assert errors == [], f"the page raised: {errors}"


def state(page: Page, path: str) -> Any:
    return page.evaluate(f"() => window.demo.{path}")


# (a page follows a job once its live feed named it: until then it has no subscribers,
# and "every" of none would hold at once)
ALL_PROGRESSED = (
    "() => window.demo.job.subscribers.length > 0"
    " && window.demo.job.subscribers.every(s => s.seqs.length >= 5)"
)
FOLLOWERS_SHOWN = (
    "() => document.getElementById('job-followers').innerText.includes('(this page) in worker')"
)
ALL_RECONNECTED = (
    "() => window.demo.job.subscribers.length > 0"
    " && window.demo.job.subscribers.every(s => s.connections >= 2)"
)
JOB_DONE = "() => window.demo.job.done"
# 1 start line + 40 progress + 4 log lines + 2 around the pause + done
JOB_SEQS = list(range(1, 49))


def start_job(page: Page) -> str:
    """Start a job from `page` and return its id once the page follows it. (A page
    that loads while an earlier job is the latest follows that one, replayed from its
    start, until its own job's answer arrives: waiting for progress alone would see the
    old job's.)"""
    before = state(page, "job.id")
    page.click("#job-start")
    page.wait_for_function(
        "before => window.demo.job.id !== null && window.demo.job.id !== before",
        arg=before,
        polling=50,
    )
    job_id: str = state(page, "job.id")
    return job_id


def follows(page: Page, job_id: str) -> None:
    """Wait until `page` follows job `job_id` (named by its live feed)."""
    page.wait_for_function(
        "id => window.demo.job.id === id", arg=job_id, polling=50, timeout=10_000
    )


def check_subscribers_resumed(page: Page, job_id: str, count: int) -> None:
    """The `count` subscribers of `page` followed job `job_id` from 1 to 48 across one
    drop."""
    assert state(page, "job.id") == job_id
    subscribers = state(page, "job.subscribers")
    assert len(subscribers) == count
    for subscriber in subscribers:
        assert subscriber["seqs"] == JOB_SEQS
        assert subscriber["problems"] == []
        assert subscriber["resets"] == []
        assert subscriber["drops"] == 1
        assert subscriber["connections"] == 2
        assert len(subscriber["pids"]) == 2
    # the table is rendered after the state changes (late in a background page)
    page.wait_for_function(
        "count => [...document.querySelectorAll('#job-subscribers tbody tr td:last-child')]"
        ".filter(cell => cell.innerText.startsWith('1…48')).length == count",
        arg=count,
        polling=50,
    )
    cells = page.locator("#job-subscribers tbody tr td:last-child").all_inner_texts()
    assert cells == ["1…48: no gap, no duplicate"] * count


def test_job_survives_a_server_side_drop_without_gap_or_duplicate(page: Page) -> None:
    """Two subscribers in one page (``?subscribers=2``)."""
    page.goto(page.url + "&subscribers=2")
    page.wait_for_selector("body[data-ready=true]")
    job_id = start_job(page)
    page.wait_for_function(ALL_PROGRESSED)
    page.click("#job-drop")
    page.wait_for_function(ALL_RECONNECTED, timeout=10_000)
    page.wait_for_function(JOB_DONE, timeout=30_000)

    check_subscribers_resumed(page, job_id, 2)
    assert state(page, "job.drops") == 1
    assert state(page, "job.subscribers[0].heartbeats") >= 1
    assert page.inner_text("#job-status").startswith("done: 40 steps")
    assert page.inner_text("#job-percent").startswith("100")
    assert page.inner_text("#job-backend") == "hub: in-process, 1 worker"
    log = page.inner_text("#job-log")
    assert "asked the server to drop every connection following the job" in log
    assert "[#1] server dropped this connection" in log
    assert "[#2] server dropped this connection" in log
    assert "[#1] reconnected: the server resumes after id" in log
    assert "♥ heartbeat" in log


def test_two_pages_follow_the_same_job_and_both_resume_after_a_drop(page: Page) -> None:
    """Open the page twice: a job started in one is followed by both (the live feed
    names it), each page lists both subscribers, and a drop from the other page ends
    every connection; both subscribers resume with no gap."""
    # a longer quiet spell half-way (5 s): the drop below lands while the job runs even
    # on a loaded machine, where two pages are slow to show what they follow
    page.goto(page.url.replace("pause=1.5", "pause=5"))
    page.wait_for_selector("body[data-ready=true]")
    other = page.context.new_page()
    try:
        other.goto(page.url)
        other.wait_for_selector("body[data-ready=true]")
        job_id = start_job(page)
        follows(other, job_id)
        # interval polling: a background page gets no animation frames to poll on
        for each in (page, other):
            each.wait_for_function(ALL_PROGRESSED, polling=50)
        for each in (page, other):
            each.wait_for_function(
                "() => window.demo.job.followers.length == 2", polling=50, timeout=10_000
            )
            # the list is rendered after the state changes (a background page renders
            # late): wait for the text itself
            each.wait_for_function(FOLLOWERS_SHOWN, polling=50, timeout=10_000)
        assert not state(page, "job.done"), "the drop must come while the job runs"
        other.click("#job-drop")
        for each in (page, other):
            each.wait_for_function(ALL_RECONNECTED, polling=50, timeout=10_000)
            each.wait_for_function(JOB_DONE, polling=50, timeout=30_000)
            check_subscribers_resumed(each, job_id, 1)
    finally:
        other.close()


def test_export_is_the_browsers_own_download_with_its_row_count(page: Page) -> None:
    page.fill("#export-rows", "2500")
    with page.expect_download() as started:
        page.click("#exports button[data-format=csv]")
    download = started.value
    assert download.suggested_filename == "streamfx-export-2500.csv"
    lines = Path(download.path()).read_text().splitlines()
    assert lines[0] == "id,customer,amount,paid,created"
    assert len(lines) == 2501
    assert lines[-1].startswith("2500,")
    # the live feed reports the finished export: rows and time on the page
    page.wait_for_selector("#export-results tbody tr td.ok")
    cells = page.locator("#export-results tbody tr").first.locator("td").all_inner_texts()
    assert cells[0] == "CSV"
    assert cells[1] == "2,500"
    assert cells[3].endswith(" s")
    assert cells[4] == "completed"


@pytest.mark.parametrize(
    ("button", "status", "message"),
    [
        ("#upload-too-large", "413", "a file is larger than 5242880 bytes (max_part_size=5242880)"),
        ("#upload-wrong-type", "415", "has type 'application/x-msdownload'"),
        ("#upload-malformed", "400", "truncated upload"),
    ],
)
def test_upload_errors_are_shown_clearly(
    page: Page, button: str, status: str, message: str
) -> None:
    assert "8.0 MB per request" in page.inner_text("#upload-limits")
    page.click(button)
    page.wait_for_selector("#upload-result.bad")
    text = page.inner_text("#upload-result")
    assert text.startswith(status)
    assert message in text


def test_everything_at_once_live_counters_and_screenshot(page: Page) -> None:
    page.click("#job-start")
    page.click("#range-check")
    page.wait_for_function("() => document.getElementById('range-result').textContent")
    assert page.inner_text("#range-result").startswith(
        "206 Partial Content, Content-Range: bytes 100-199/"
    )
    page.fill("#export-rows", "20000")
    with page.expect_download():
        page.click("#exports button[data-format=ndjson]")
    page.click("#upload-wrong-type")
    page.click("#flood-start")
    page.wait_for_function("() => window.demo.flood !== null", timeout=20_000)
    flood = state(page, "flood")
    assert 0 < flood["received"] <= flood["sent"]
    page.wait_for_function(
        "() => window.demo.job.subscribers.some(s => s.heartbeats >= 1)", timeout=20_000
    )
    page.wait_for_selector("#export-results tbody tr td.ok")
    # the live counters arrive on their own feed, some time after what they count: wait
    # until they show it all (this page's live feed is always active; the hub's
    # subscribers, kind "broadcast", are counted by the metrics hook too; every flood
    # event this page did not receive was dropped)
    lost = flood["sent"] - flood["received"]
    page.wait_for_function(
        "lost => { const live = window.demo.live; return live && live.events > 0"
        " && live.active >= 1 && live.dropped >= lost"
        " && live.streams.some(s => s.kind == 'broadcast' && s.items > 0) }",
        arg=lost,
        polling=50,
        timeout=20_000,
    )
    page.wait_for_function(
        "() => Number(document.getElementById('live-events').innerText.replace(/,/g, '')) > 0",
        polling=50,
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "demo.png"), full_page=True)
    assert (ARTIFACTS / "demo.png").stat().st_size > 10_000
