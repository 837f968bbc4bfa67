"""Hostile input to the call handler: every response is a deliberate status with a JSON message.

Generated requests (method, query, headers, signature, body) go through the ASGI adapter in-process.
``INNGEST_MW_FUZZ_EXAMPLES`` sets the count (CI default 300; the scheduled run uses 10,000:
``INNGEST_MW_FUZZ_EXAMPLES=10000 python3 run.py test tests/core/test_fuzz_handler.py``).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from inngest_mw_asgi import serve

import inngest_mw
from inngest_mw import TriggerEvent, signature
from inngest_mw.memo import hash_step_id

KEY_HEX = "9f" * 32
KEY = "signkey-test-" + KEY_HEX
EXAMPLES = int(os.environ.get("INNGEST_MW_FUZZ_EXAMPLES", "300"))


def _app(production: bool) -> Any:
    client = inngest_mw.Inngest(
        app_id="fz",
        is_production=production,
        signing_key=KEY if production else None,
        api_base_url="http://127.0.0.1:9",
        event_api_base_url="http://127.0.0.1:9",
    )

    @client.create_function(fn_id="a", trigger=TriggerEvent(event="e/a"))
    async def a(ctx: inngest_mw.Context) -> Any:
        x = await ctx.step.run("x", lambda: ctx.event.data.get("n"))
        await ctx.step.sleep("z", "1s")
        return x

    @client.create_function(fn_id="s", trigger=TriggerEvent(event="e/s"))
    def s(ctx: inngest_mw.ContextSync) -> Any:
        return ctx.step.run("x", lambda: len(ctx.events))

    return serve(client, [a, s])


APPS = {"dev": _app(False), "cloud": _app(True)}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
call_bodies = st.fixed_dictionaries(
    {},
    optional={
        "event": json_values
        | st.fixed_dictionaries({"name": st.text(max_size=10), "data": json_values}),
        "events": json_values,
        "steps": json_values
        | st.dictionaries(
            st.sampled_from([hash_step_id("x"), hash_step_id("z"), "?"]), json_values
        ),
        "ctx": json_values
        | st.fixed_dictionaries(
            {},
            optional={
                "run_id": json_values,
                "attempt": json_values,
                "max_attempts": json_values,
                "stack": json_values,
                "disable_immediate_execution": json_values,
                "use_api": st.booleans(),
            },
        ),
        "use_api": json_values,
    },
)
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    call_bodies.map(lambda v: json.dumps(v).encode()),
)
queries = st.fixed_dictionaries(
    {},
    optional={
        "fnId": st.sampled_from(["fz-a", "fz-s", "a", "fz-nope", ""]) | st.text(max_size=12),
        "stepId": st.sampled_from(["step", hash_step_id("x"), hash_step_id("z")])
        | st.text(max_size=12),
        "probe": st.sampled_from(["trust", "other"]),
        "deployId": st.text(max_size=8),
    },
)
signatures = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.builds(
        lambda t, s: f"t={t}&s={s}",
        st.integers(-10, 2**40),
        st.text("0123456789abcdef", max_size=64),
    ),
    st.just("valid"),
    st.just("stale"),
)


def _request(
    mode: str,
    method: str,
    query: dict[str, str],
    body: bytes,
    sig: str | None,
    extra: dict[str, str],
) -> httpx.Response:
    headers: dict[str, str | bytes] = {k: v.encode("utf-8") for k, v in extra.items()}
    if sig == "valid":
        headers["x-inngest-signature"] = signature.sign(body, KEY)
    elif sig == "stale":
        headers["x-inngest-signature"] = signature.sign(body, KEY, int(time.time()) - 3600)
    elif sig is not None:
        headers["x-inngest-signature"] = (
            sig.encode("utf-8", "surrogatepass").replace(b"\r", b"").replace(b"\n", b"")
        )

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=APPS[mode])
        async with httpx.AsyncClient(transport=transport, base_url="http://fuzz") as http:
            return await http.request(
                method,
                "/api/inngest",
                params=query,
                content=body,
                # httpx takes str or bytes values in one mapping; its HeaderTypes alias does not say so
                headers=headers,  # type: ignore[arg-type]
            )

    return asyncio.run(go())


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    mode=st.sampled_from(["dev", "cloud"]),
    method=st.sampled_from(["GET", "PUT", "POST", "POST", "POST", "DELETE", "PATCH"]),
    query=queries,
    body=bodies,
    sig=signatures,
    extra=st.dictionaries(
        st.sampled_from(
            ["x-inngest-sync-kind", "x-inngest-server-kind", "content-type", "x-request-id"]
        ),
        st.sampled_from(["in_band", "cloud", "dev", "application/json", "", "\u00e9"]),
        max_size=3,
    ),
)
def test_every_hostile_request_gets_a_deliberate_json_answer(
    mode: str,
    method: str,
    query: dict[str, str],
    body: bytes,
    sig: str | None,
    extra: dict[str, str],
) -> None:
    res = _request(mode, method, query, body, sig, extra)
    assert res.status_code in {200, 206, 400, 401, 405, 500}, res.text
    assert res.headers["x-inngest-sdk"].startswith("inngest-mw:v")
    text = res.text
    assert "Traceback" not in text
    assert KEY_HEX not in text
    payload = json.loads(text)
    if res.status_code >= 400:
        assert isinstance(payload, dict)
        assert any(isinstance(payload.get(k), str) and payload[k] for k in ("message", "error"))
    if mode == "cloud" and method == "POST" and sig != "valid":
        assert res.status_code == 401
