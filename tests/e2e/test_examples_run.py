"""Each example, started as its docstring says, takes its mode from the environment as the SDKs do.

``INNGEST_DEV`` set: dev mode against that server. Unset, with a signing key and a base URL: cloud
mode against a server that requires signed calls (a self-hosted Inngest, here the engine with a
signing key). Either way the app syncs and the engine runs its first step.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from engine_support import START_TIMEOUT, free_port, get_json, get_run, poll, runs_for_event
from inngest_mw_dev import EngineThread

from inngest_mw.signature import hash_signing_key

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*_app.py"))
KEY = "signkey-test-" + "5e" * 32
EVENT_KEY = "example-event-key"


@contextmanager
def _example(name: str, env: dict[str, str], *, cloud: bool = False) -> Iterator[str]:
    """Run ``python examples/<name>`` with ``env`` on a free port; yield its serve URL.

    In cloud mode the app is told its public origin, as a deployed app would be.
    """
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")}
    if cloud:
        env = {**env, "INNGEST_SERVE_ORIGIN": f"http://127.0.0.1:{port}"}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / name)],
        cwd=ROOT,
        env={**clean, **env, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/api/inngest"
    try:

        def answered() -> httpx.Response | None:
            if process.poll() is not None:
                raise AssertionError(
                    f"{name} exited: {process.stderr.read() if process.stderr else ''}"
                )
            try:
                return httpx.get(url, timeout=5)
            except httpx.TransportError:
                return None

        poll(answered, lambda r: r is not None, timeout=START_TIMEOUT, what=f"{name} to listen")
        yield url
    finally:
        process.terminate()
        process.wait(10)


def _checkout_starts(engine_url: str, headers: dict[str, str]) -> None:
    response = httpx.post(
        f"{engine_url}/e/{EVENT_KEY}",
        json={"name": "shop/checkout", "data": {"order": "A-1", "sku": "tea"}},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    [event_id] = response.json()["ids"]
    [run] = runs_for_event(engine_url, event_id, headers=headers)
    poll(
        lambda: get_run(engine_url, run["run_id"], headers)["steps"],
        lambda steps: (
            [(s["name"], s["status"]) for s in steps][:1] == [("reserve-stock", "Completed")]
        ),
        what="the checkout's first step",
    )


@pytest.mark.parametrize("name", EXAMPLES)
def test_with_inngest_dev_the_example_runs_in_dev_mode(name: str, tmp_path: Path) -> None:
    with (
        EngineThread(tmp_path / "engine.db", port=0, tick=0.02) as engine,
        _example(name, {"INNGEST_DEV": engine.url}) as url,
    ):
        assert httpx.get(url).json()["mode"] == "dev"
        synced = httpx.put(url, timeout=10)
        assert synced.status_code == 200, synced.text
        assert [(a["name"], a["functions"]) for a in get_json(f"{engine.url}/v1/apps")["data"]] == [
            ("shop", ["shop-checkout"])
        ]
        _checkout_starts(engine.url, {})


@pytest.mark.parametrize("name", EXAMPLES)
def test_without_inngest_dev_the_example_runs_in_cloud_mode_with_its_key(
    name: str, tmp_path: Path
) -> None:
    with EngineThread(
        tmp_path / "engine.db", port=0, tick=0.02, signing_key=KEY, event_keys=[EVENT_KEY]
    ) as engine:
        env = {
            "INNGEST_BASE_URL": engine.url,
            "INNGEST_SIGNING_KEY": KEY,
            "INNGEST_EVENT_KEY": EVENT_KEY,
        }
        with _example(name, env, cloud=True) as url:
            assert httpx.get(url).json()["mode"] == "cloud"
            synced = httpx.put(url, timeout=10)
            assert synced.status_code == 200, synced.text
            headers = {"Authorization": f"Bearer {hash_signing_key(KEY)}"}
            apps = get_json(f"{engine.url}/v1/apps", headers)["data"]
            assert [(a["name"], a["functions"]) for a in apps] == [("shop", ["shop-checkout"])]
            _checkout_starts(engine.url, headers)
