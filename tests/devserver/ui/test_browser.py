"""The web UI in a real headless Chromium (Debian's package, driven by Playwright).

One engine serves the demo app (in its own process, as a user runs it) and the run-control app.
Each test acts as a person would, through the page, and saves a screenshot of what it saw.
Waits are Playwright's: for a selector or text to appear, never a fixed sleep.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from engine_support import (
    START_TIMEOUT,
    AppServer,
    free_port,
    get_run,
    poll,
    send,
    sync,
    wait_run,
)
from inngest_mw_dev import EngineThread
from playwright.sync_api import Page, expect
from run_control_app import Calls, build_app

DEMO_STEPS = [
    "reserve-stock",
    "charge-card",
    "cool-off",
    "email-receipt",
    "loyalty-points",
    "order-completed",
]
ORDER = {"id": "A-2001", "sku": "tea-earl-grey", "qty": 2, "price": 4.5, "email": "ada@example.com"}


class Site:
    """The engine under test, its two apps, and the run-control app's call counts."""

    def __init__(self, engine: EngineThread, calls: Calls) -> None:
        self.engine, self.calls, self.url = engine, calls, engine.url

    def runs_of(self, event_id: str) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = poll(
            lambda: httpx.get(f"{self.url}/v1/events/{event_id}/runs").json()["data"],
            bool,
            what=f"a run for event {event_id}",
        )
        return runs

    def order(self, qty: int) -> dict[str, Any]:
        [event_id] = send(self.url, {"name": "ctl/order", "data": {"qty": qty}})
        return wait_run(self.url, self.runs_of(event_id)[0]["run_id"])


@contextlib.contextmanager
def _serve_demo_app(engine_url: str) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "INNGEST_DEV": engine_url, "INNGEST_BASE_URL": engine_url}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "inngest_mw_dev.demo_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
    )
    url = f"http://127.0.0.1:{port}/api/inngest"
    try:
        poll(lambda: _answers(url), bool, timeout=START_TIMEOUT, what="the demo app to start")
        yield url
    finally:
        process.terminate()
        process.wait(10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    db = tmp_path_factory.mktemp("ui") / "engine.db"
    calls = Calls()
    with (
        EngineThread(db, port=0, retry_base=0.05, tick=0.02) as engine,
        _serve_demo_app(engine.url) as demo_url,
        AppServer(build_app(engine.url, calls)) as app,
    ):
        assert httpx.put(demo_url, timeout=30).status_code == 200
        sync(app)
        yield Site(engine, calls)


def _duration(text: str) -> bool:
    return re.fullmatch(r"\d+ms|\d+\.\d\ds", text.split()[0]) is not None


def test_the_demo_run_appears_and_completes_live(site: Site, page: Page) -> None:
    page.goto(site.url + "/")
    page.evaluate("window.notReloaded = true")
    expect(page.locator("#live-dot.on")).to_be_visible()
    [event_id] = send(site.url, {"name": "shop/checkout", "data": ORDER})
    run_id = site.runs_of(event_id)[0]["run_id"]
    row = page.locator(f'tr[data-run="{run_id}"]')
    expect(row).to_be_visible()
    expect(row.locator(".status")).to_have_text("Completed")
    assert page.evaluate("window.notReloaded") is True
    expect(row).to_contain_text('"order":"A-2001"')


def test_the_timeline_shows_every_step_with_a_duration(site: Site, page: Page) -> None:
    [event_id] = send(site.url, {"name": "shop/checkout", "data": ORDER})
    run = wait_run(site.url, site.runs_of(event_id)[0]["run_id"])
    assert run["status"] == "Completed"
    page.goto(f"{site.url}/runs/{run['run_id']}")
    rows = page.locator("#waterfall .wf-row[data-step]")
    expect(rows).to_have_count(len(DEMO_STEPS))
    shown: dict[str, str] = {}
    for index in range(rows.count()):
        name = rows.nth(index).get_attribute("data-step") or ""
        shown[name] = rows.nth(index).locator(".wf-dur").inner_text()
    assert sorted(shown) == sorted(DEMO_STEPS)
    assert all(_duration(text) for text in shown.values()), shown
    sleep_bar = page.locator('.wf-row[data-step="cool-off"] .wf-bar.k-sleep')
    expect(sleep_bar).to_have_count(1)
    assert float(shown["cool-off"].removesuffix("s")) >= 1.0


def test_sending_an_event_from_the_form_starts_a_run(site: Site, page: Page) -> None:
    page.goto(site.url + "/events")
    page.fill("#event-name", "ctl/order")
    page.fill("#event-data", "{qty: 7")
    page.click("#send")
    expect(page.locator("#send-event .json-error")).to_contain_text("Not valid")
    page.fill("#event-data", '{"qty": 7}')
    page.click("#send")
    expect(page.locator("#flash")).to_contain_text("sent: event ")
    event_id = page.locator("#flash").inner_text().removeprefix("sent: event ").strip()
    row = page.locator(f'tr[data-event="{event_id}"]')
    expect(row.locator(".status")).to_have_text("Completed")
    run = wait_run(site.url, site.runs_of(event_id)[0]["run_id"])
    assert run["output"]["reserved"] == 7


def test_the_invoke_form_starts_a_run_with_the_payload(site: Site, page: Page) -> None:
    page.goto(site.url + "/functions/ctl-order")
    page.fill("#invoke-data", '{"qty": 9}')
    page.click("#invoke-button")
    page.wait_for_url(re.compile(r"/runs/[0-9A-Z]{26}$"))
    run_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("h1 .status")).to_have_text("Completed")
    expect(page.locator("pre.json").first).to_contain_text('"reserved": 9')
    assert get_run(site.url, run_id)["events"][0]["data"]["qty"] == 9


def test_a_run_waiting_for_a_signal_resumes_from_the_signal_form(site: Site, page: Page) -> None:
    [event_id] = send(site.url, {"name": "ctl/approval", "data": {"ticket": 31}})
    run_id = site.runs_of(event_id)[0]["run_id"]
    page.goto(f"{site.url}/runs/{run_id}")
    form = page.locator('form.signal-form[data-signal="approve-31"]')
    expect(form).to_contain_text("Step approve waits for signal approve-31")
    form.locator("textarea").fill("{not json")
    form.locator("button.send-signal").click()
    expect(form.locator(".json-error")).to_contain_text("Not valid")
    form.locator("textarea").fill('{"approved_by": "ada"}')
    form.locator("button.send-signal").click()
    expect(page.locator("h1 .status")).to_have_text("Completed")
    expect(page.locator("form.signal-form")).to_have_count(0)
    done = get_run(site.url, run_id)
    assert (done["status"], done["output"]) == ("Completed", {"approved_by": "ada"})


def test_cancel_stops_a_sleeping_run(site: Site, page: Page) -> None:
    [event_id] = send(site.url, {"name": "ctl/nap"})
    run_id = site.runs_of(event_id)[0]["run_id"]
    page.goto(f"{site.url}/runs/{run_id}")
    expect(page.locator('.wf-row[data-step="long-nap"] .wf-bar.k-sleep')).to_be_visible()
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#cancel")
    expect(page.locator("h1 .status")).to_have_text("Cancelled")
    expect(page.locator("#cancel")).to_have_count(0)
    assert get_run(site.url, run_id)["status"] == "Cancelled"


def test_rerun_of_a_failed_run_starts_a_new_run(site: Site, page: Page) -> None:
    site.calls.fail_charge = True
    failed = site.order(qty=2)
    site.calls.fail_charge = False
    assert failed["status"] == "Failed"
    page.goto(f"{site.url}/runs/{failed['run_id']}")
    expect(page.locator(".error .error-head").first).to_have_text(
        "CardDeclinedError: card declined for 5.0"
    )
    expect(page.locator(".error .user-frame").first).to_contain_text("in charge_card")
    page.click("#rerun")
    page.wait_for_url(re.compile(r"/runs/(?!" + failed["run_id"] + r")[0-9A-Z]{26}$"))
    expect(page.locator("h1 .status")).to_have_text("Completed")
    expect(page.locator(".facts dt", has_text="Rerun of")).to_be_visible()
    expect(page.locator(f'.facts a[href="/runs/{failed["run_id"]}"]')).to_be_visible()


def test_rerun_from_a_step_skips_the_steps_before_it(site: Site, page: Page) -> None:
    original = site.order(qty=4)
    page.goto(f"{site.url}/runs/{original['run_id']}")
    page.select_option("#from-step", label="ship")
    page.click("#rerun-from")
    page.wait_for_url(re.compile(r"/runs/(?!" + original["run_id"] + r")[0-9A-Z]{26}$"))
    rerun_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("h1 .status")).to_have_text("Completed")
    # The finished run's page as a visitor opens it (the live refresh is covered by other tests).
    page.reload()
    replayed = page.locator(".steps .tag", has_text="replayed")
    expect(replayed).to_have_count(2)
    rerun = get_run(site.url, rerun_id)
    assert rerun["output"] == original["output"]
    assert site.calls.of(rerun_id, "reserve") == 0
    assert site.calls.of(rerun_id, "charge") == 0
    assert site.calls.of(rerun_id, "ship") == 1


def test_a_live_refresh_keeps_the_step_the_visitor_chose(site: Site, page: Page) -> None:
    original = site.order(qty=2)
    page.goto(f"{site.url}/runs/{original['run_id']}")
    page.select_option("#from-step", label="ship")
    chosen = page.input_value("#from-step")
    page.evaluate("document.getElementById('live').dataset.before = 'refresh'")
    page.evaluate("refresh(true)")
    page.wait_for_selector("#live:not([data-before])", state="attached")
    assert page.input_value("#from-step") == chosen
