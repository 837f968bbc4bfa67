"""App URLs that cannot be used: ``POST /fn/sync`` answers 400 naming the problem, and a bad
app URL given at start-up neither ends the initial sync badly nor stops the poll loop.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import inngest
import pytest
from engine_support import dev_client, free_port, serve_functions
from inngest_mw_dev import EngineThread


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://[::1", "the URL is malformed (Invalid IPv6 URL)"),
        ("http://127.0.0.1:99999/api", "the URL is malformed (Port out of range 0-65535)"),
        (
            "http://\u2603.example/api",
            "the URL is malformed (Invalid IDNA hostname: '\u2603.example')",
        ),
        ("ftp://127.0.0.1/api", "the URL must start with http:// or https://"),
        ("http:///api", "the URL has no host"),
        ("http://exa mple.com/api", "the URL contains whitespace"),
    ],
)
def test_syncing_a_malformed_url_is_a_400_naming_the_problem(
    engine: EngineThread, url: str, problem: str
) -> None:
    response = httpx.post(f"{engine.url}/fn/sync", params={"url": url})
    assert response.status_code == 400
    assert response.json() == {"error": f"cannot sync {url!r}: {problem}", "status": 400}
    assert httpx.get(f"{engine.url}/health").status_code == 200


def test_syncing_a_url_where_nothing_answers_is_a_502_with_the_reason(
    engine: EngineThread,
) -> None:
    url = f"http://127.0.0.1:{free_port()}/api/inngest"
    response = httpx.post(f"{engine.url}/fn/sync", params={"url": url})
    assert response.status_code == 502
    (result,) = response.json()["results"]
    assert result["url"] == url
    assert result["ok"] is False
    assert result["error"].startswith("cannot reach the app (ConnectError:")


def _messages(engine_url: str, timeout: float = 15.0) -> Iterator[dict[str, Any]]:
    """The engine's live feed (``/v1/stream``), one message at a time, until ``timeout``."""
    deadline = time.monotonic() + timeout
    with httpx.stream("GET", f"{engine_url}/v1/stream", timeout=30) as stream:
        for line in stream.iter_lines():  # a keep-alive line at least every 15 s
            if time.monotonic() > deadline:
                raise AssertionError("timed out reading the engine's live feed")
            if line.startswith("data: "):
                yield json.loads(line[len("data: ") :])


def test_a_malformed_app_url_at_start_is_reported_once_and_the_poll_loop_keeps_syncing(
    tmp_path: Path,
) -> None:
    bad = "http://[::1"
    port = free_port()
    client = dev_client("polled", f"http://127.0.0.1:{port}")
    synced_urls: list[str] = []

    @client.create_function(fn_id="noop", trigger=inngest.TriggerEvent(event="poll/noop"))
    async def noop(ctx: inngest.Context) -> None:
        return None

    notices: list[str] = []
    seen = threading.Event()

    def on_notice(line: str) -> None:
        notices.append(line)
        if "app polled synced" in line:
            seen.set()

    with serve_functions(client, [noop]) as app:
        options: dict[str, Any] = {"app_urls": [bad, app.url], "poll_interval": 0.05}
        with EngineThread(tmp_path / "e.db", port=port, on_notice=on_notice, **options) as eng:
            polls = 0
            for message in _messages(eng.url):
                if message["kind"] == "sync":
                    synced_urls.append(message["url"])
                if message["kind"] == "poll":
                    polls += 1
                if polls >= 3 and synced_urls.count(bad) >= 3:
                    break  # three rounds after start, each trying the bad URL and going on
            assert seen.wait(15), notices
            apps = httpx.get(f"{eng.url}/v1/apps").json()["data"]
    by_url = {a["url"]: a for a in apps}
    assert by_url[bad]["status"] == "failed"
    assert by_url[bad]["error"] == "the URL is malformed (Invalid IPv6 URL)"
    assert by_url[app.url]["status"] == "synced"
    refusals = [n for n in notices if bad in n]
    assert refusals == [f"sync of {bad} failed: the URL is malformed (Invalid IPv6 URL)"]
    assert app.url in synced_urls
