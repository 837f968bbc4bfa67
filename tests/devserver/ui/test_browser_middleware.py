"""The run page's Middleware panel and the UI of an engine with a signing key, in headless Chromium.

The signed engine is ``inngest-mw dev --signing-key`` in its own process, as a user starts it: the
test reads the sign-in code from its start-up line and signs in through the form, as its user
would. Waits are Playwright's or on the engine's answers, never a fixed sleep.
"""

from __future__ import annotations

import queue
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from engine_support import (
    AppServer,
    dev_command,
    free_port,
    poll,
    runs_for_event,
    send,
    sync,
    wait_run,
)
from inngest_mw_dev import EngineThread
from middleware_seen_app import EVENTS, FUNCTIONS, build_app
from playwright.sync_api import Page, expect

from inngest_mw.signature import hash_signing_key

ROOT = Path(__file__).resolve().parents[3]
KEY = "signkey-test-" + "5e" * 32


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineThread]:
    db = tmp_path_factory.mktemp("mw-ui") / "engine.db"
    with (
        EngineThread(db, port=0, retry_base=0.05, tick=0.02) as running,
        AppServer(build_app(running.url)) as app,
    ):
        sync(app)
        yield running


@pytest.mark.parametrize("colour", ["async", "sync"])
def test_the_run_page_shows_what_the_middleware_saw(
    engine: EngineThread, page: Page, colour: str
) -> None:
    [event_id] = send(engine.url, {"name": EVENTS[colour], "data": {}})
    [summary] = runs_for_event(engine.url, event_id)
    run = wait_run(engine.url, summary["run_id"])
    assert run["function_id"] == f"seen-{FUNCTIONS[colour].removeprefix('seen-')}"
    page.goto(f"{engine.url}/runs/{run['run_id']}")
    panel = page.locator("#middleware")
    expect(panel.locator(".mw-request").first).to_be_visible()
    expect(panel.locator(".mw-request.mw-raised summary")).to_contain_text("1 raised")
    failed = panel.locator('tr.mw-error[data-hook="audit-log.on_step_complete"]')
    expect(failed).to_have_count(1)
    expect(failed.locator(".mw-raised-cell")).to_have_text("ConnectionError: audit log unavailable")
    expect(failed).to_contain_text("charge")
    timed = panel.locator('tr[data-hook="StepTimer.wrap_step_handler"]')
    expect(timed).to_have_count(2)
    for index in range(2):
        assert re.fullmatch(r"\d+µs|\d+\.\d\dms", timed.nth(index).locator(".mw-dur").inner_text())
    expect(panel.locator('tr[data-hook="audit-log.transform_input"]')).to_have_count(1)
    expect(panel.locator(".mw-bar.failed")).to_have_count(1)


class _Output:
    """A process's output lines, read in a thread, so a test can wait for one."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert process.stdout is not None
        stdout = process.stdout

        def pump() -> None:
            for line in stdout:
                self.lines.put(line)

        threading.Thread(target=pump, daemon=True).start()

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        for line in self.seen:
            if text in line:
                return line
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} in: {''.join(self.seen)}")


@pytest.fixture
def signed(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``inngest-mw dev --signing-key`` with the app synced: its URL and its sign-in code."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with AppServer(build_app(url, signing_key=KEY)) as app:
        process = subprocess.Popen(
            dev_command(port, tmp_path / "engine.db", "--signing-key", KEY, "-u", app.url),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            output = _Output(process)
            line = output.wait_for("web UI sign-in code: ")
            code = line.split("web UI sign-in code: ", 1)[1].split()[0]
            output.wait_for(f"app seen synced from {app.url}")
            yield url, code
        finally:
            process.terminate()
            process.wait(10)


def test_with_a_signing_key_the_ui_works_after_signing_in_and_refuses_without(
    signed: tuple[str, str], page: Page
) -> None:
    url, code = signed
    bearer = {"Authorization": f"Bearer {hash_signing_key(KEY)}"}
    refused = httpx.get(f"{url}/v1/runs", timeout=10)
    assert refused.status_code == 401
    assert "sign in at /login" in refused.json()["error"]
    assert httpx.get(f"{url}/v1/runs", headers=bearer, timeout=10).status_code == 200

    answer = page.goto(f"{url}/events")
    assert answer is not None
    assert answer.status == 401
    expect(page.locator("#sign-in")).to_contain_text("This engine runs with a signing key.")
    page.fill("#credential", "not-the-code")
    page.click("#sign-in-button")
    expect(page.locator("#sign-in-reason")).to_contain_text(
        "That is neither this engine's signing key nor its sign-in code"
    )
    assert "/login" in page.url
    assert "not-the-code" not in page.url

    page.fill("#credential", code)
    page.click("#sign-in-button")
    page.wait_for_url(f"{url}/events")
    assert code not in page.url
    page.fill("#event-name", EVENTS["async"])
    page.fill("#event-data", "{}")
    page.click("#send")
    expect(page.locator("#flash")).to_contain_text("sent: event ")
    event_id = page.locator("#flash").inner_text().removeprefix("sent: event ").strip()
    [summary] = runs_for_event(url, event_id, headers=bearer)
    run = wait_run(url, summary["run_id"], headers=bearer)
    assert run["status"] == "Completed", run

    page.goto(f"{url}/runs/{run['run_id']}")
    expect(page.locator("h1 .status")).to_have_text("Completed")
    expect(page.locator("#live-dot.on")).to_be_visible()  # the live stream is signed in too
    expect(page.locator('#middleware tr[data-hook="audit-log.on_step_complete"]')).to_have_count(2)

    page.goto(f"{url}/apps")
    with page.expect_response(lambda r: "/fn/sync" in r.url) as resynced:
        page.click("button[data-post^='/fn/sync']")  # Resync: a change the UI makes, signed in
    assert resynced.value.status == 200
    expect(page.locator(".sync-synced")).to_have_count(1)

    # A change with the session cookie but not the UI's header is refused, with a sentence.
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    forged = httpx.post(
        f"{url}/v1/events",
        json={"name": "x/forged"},
        cookies={"inngest_mw_session": cookies["inngest_mw_session"]},
        timeout=10,
    )
    assert forged.status_code == 403
    assert "x-inngest-mw-csrf" in forged.json()["error"]
    poll(
        lambda: httpx.get(f"{url}/v1/events", headers=bearer, timeout=10).json()["data"],
        lambda events: all(e["name"] != "x/forged" for e in events),
        what="no forged event",
    )


def test_signing_out_ends_the_session_and_a_copy_of_its_cookie_is_refused(
    signed: tuple[str, str], page: Page
) -> None:
    url, code = signed
    page.goto(f"{url}/login")
    page.fill("#credential", code)
    page.click("#sign-in-button")
    page.wait_for_url(f"{url}/")
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    session = {"inngest_mw_session": cookies["inngest_mw_session"]}
    assert httpx.get(f"{url}/events", cookies=session, timeout=10).status_code == 200

    page.click("#sign-out")
    page.wait_for_url(f"{url}/login")
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#sign-out")).to_have_count(0)
    assert {c["name"] for c in page.context.cookies()}.isdisjoint(cookies)
    answer = page.goto(f"{url}/events")
    assert answer is not None
    assert answer.status == 401
    copied = httpx.get(f"{url}/v1/runs", cookies=session, timeout=10)
    assert copied.status_code == 401
    assert "session has ended (signed out or expired)" in copied.json()["error"]

    # A sign-out posted from another site changes nothing.
    page.fill("#credential", code)
    page.click("#sign-in-button")
    page.wait_for_url(f"{url}/events")
    fresh = {c["name"]: c["value"] for c in page.context.cookies()}["inngest_mw_session"]
    foreign = httpx.post(
        f"{url}/logout",
        cookies={"inngest_mw_session": fresh},
        headers={"Origin": "https://elsewhere.example"},
        timeout=10,
    )
    assert foreign.status_code == 403
    still = httpx.get(f"{url}/events", cookies={"inngest_mw_session": fresh}, timeout=10)
    assert still.status_code == 200
