"""A signing key with or without its ``signkey-<env>-`` prefix is the same key to the engine, as
to the Inngest server: an engine and an app holding different forms sync and run together.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from engine_support import AppServer, run_for_event, send
from inngest_mw_asgi import serve
from inngest_mw_dev import EngineThread

import inngest_mw
from inngest_mw import Context, TriggerEvent
from inngest_mw.signature import hash_signing_key

BARE = "7a" * 32
PREFIXED = f"signkey-test-{BARE}"


@pytest.mark.parametrize(
    ("engine_key", "app_key"),
    [(PREFIXED, BARE), (BARE, PREFIXED), (PREFIXED, PREFIXED), (BARE, BARE)],
    ids=["engine-prefixed-app-bare", "engine-bare-app-prefixed", "both-prefixed", "both-bare"],
)
def test_either_form_of_the_key_syncs_and_runs_a_function_end_to_end(
    tmp_path: Path, engine_key: str, app_key: str
) -> None:
    with EngineThread(tmp_path / "e.db", port=0, signing_key=engine_key, retry_base=0.05) as eng:
        client = inngest_mw.Inngest(
            app_id="keys",
            is_production=True,
            signing_key=app_key,
            event_key="ek",
            api_base_url=eng.url,
            event_api_base_url=eng.url,
        )

        @client.create_function(fn_id="greet", trigger=TriggerEvent(event="keys/greet"))
        async def greet(ctx: Context) -> str:
            name = await ctx.step.run("name", lambda: "world")
            return f"hello {name}"

        with AppServer(serve(client, [greet])) as app:
            auth = {"Authorization": f"Bearer {hash_signing_key(app_key)}"}
            # The engine signs its PUT with its form of the key, the app checks it with its own
            # and registers with a bearer of its own: each side must accept the other's form.
            synced = httpx.post(f"{eng.url}/fn/sync", params={"url": app.url}, headers=auth)
            assert synced.status_code == 200, synced.text
            assert synced.json()["ok"] is True
            functions = httpx.get(f"{eng.url}/v1/functions", headers=auth)
            assert functions.status_code == 200, functions.text
            assert [f["id"] for f in functions.json()["data"]] == ["keys-greet"]
            (event_id,) = send(eng.url, {"name": "keys/greet"})
            run = run_for_event(eng.url, event_id, headers=auth)
            assert run["status"] == "Completed"
            assert run["output"] == "hello world"


@pytest.mark.parametrize("engine_key", [PREFIXED, BARE])
def test_the_api_takes_the_key_or_its_hash_in_either_form_and_nothing_else(
    tmp_path: Path, engine_key: str
) -> None:
    with EngineThread(tmp_path / "e.db", port=0, signing_key=engine_key) as eng:
        url = f"{eng.url}/v1/runs"
        hashed = hash_signing_key(BARE)
        for token in (BARE, PREFIXED, hashed, f"signkey-prod-{hashed}"):
            response = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200, token
        for token in ("nope", "signkey-test-", "7a" * 31, f"signkey-test-{hashed[:-1]}"):
            response = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 401, token
            assert response.json() == {
                "error": "Unauthorized: missing or invalid signing key",
                "status": 401,
            }
