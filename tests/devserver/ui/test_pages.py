"""The web UI's pages over plain HTTP: every page renders, bad references get a 4xx page, and
everything the browser loads comes from the engine itself (no CDN, works offline)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
from engine_support import AppServer, run_for_event, send, sync
from inngest_mw_dev import EngineThread
from run_control_app import Calls, build_app


@pytest.fixture
def synced(engine: EngineThread) -> Iterator[str]:
    with AppServer(build_app(engine.url, Calls())) as app:
        sync(app)
        yield engine.url


def test_every_page_renders_html_from_the_api_data(synced: str) -> None:
    [event_id] = send(synced, {"name": "ctl/order", "data": {"qty": 3}})
    run = run_for_event(synced, event_id)
    send(synced, {"name": "nobody/listens"})
    pages = {
        "/": run["run_id"],
        "/?status=Completed&function=ctl-order&since=1h": run["run_id"],
        f"/runs/{run['run_id'][:10]}": "&#34;reserved&#34;: 3",
        "/events": "matched no function",
        "/apps": "ctl-order",
        "/functions": "ctl/order",
        "/functions/order": "Invoke",
    }
    for path, text in pages.items():
        response = httpx.get(synced + path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
        assert text in response.text, path


@pytest.mark.parametrize(
    ("path", "status", "text"),
    [
        ("/runs/ZZZZ", 404, "no run has an ID starting with ZZZZ"),
        ("/functions/nope", 404, "no function nope"),
        ("/?status=Napping", 400, "unknown status Napping"),
        ("/?since=soon", 400, "since: &#39;soon&#39; is not a time"),
    ],
)
def test_a_page_that_cannot_be_shown_says_why_with_a_4xx(
    synced: str, path: str, status: int, text: str
) -> None:
    response = httpx.get(synced + path)
    assert response.status_code == status
    assert text in response.text


def test_the_ui_loads_nothing_from_outside_the_engine(engine: EngineThread) -> None:
    package = Path(str(resources.files("inngest_mw_dev.ui")))
    for asset in [*package.glob("templates/*.html"), *package.glob("static/*")]:
        text = asset.read_text()
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), asset.name
        assert "@import" not in text, asset.name
    page = httpx.get(engine.url + "/").text
    for ref in re.findall(r"""(?:src|href)="(/static/[^"]+)""", page):
        assert httpx.get(engine.url + ref).status_code == 200, ref


def test_the_runs_page_pages_with_a_cursor(synced: str) -> None:
    ids = [
        run_for_event(synced, e)["run_id"]
        for e in send(synced, [{"name": "ctl/order"}, {"name": "ctl/order"}, {"name": "ctl/order"}])
    ]
    first = httpx.get(synced + "/?limit=2").text
    older = re.search(r'id="older" href="\?([^"]+)"', first)
    assert older is not None
    second = httpx.get(synced + "/?" + older.group(1).replace("&amp;", "&")).text
    listed = re.findall(r'<tr data-run="([0-9A-Z]{26})"', first + second)
    assert sorted(listed) == sorted(ids)
    assert len(set(listed)) == 3


def test_an_app_whose_sync_failed_shows_the_reason_on_the_apps_page(engine: EngineThread) -> None:
    dead = "http://127.0.0.1:9/api/inngest"
    assert httpx.post(engine.url + "/fn/sync", params={"url": dead}).status_code == 502
    (app,) = httpx.get(engine.url + "/v1/apps").json()["data"]
    assert app["url"] == dead
    assert app["status"] == "failed"
    assert app["error"].startswith("cannot reach the app (ConnectError")
    page = httpx.get(engine.url + "/apps").text
    assert "cannot reach the app (ConnectError" in page
    resync = re.search(r'data-post="/fn/sync\?url=([^"]+)"', page)
    assert resync is not None
    assert unquote(resync.group(1)) == dead
