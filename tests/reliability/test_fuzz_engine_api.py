"""Hostile input to the engine's HTTP API: deliberate 4xx/2xx JSON answers, and it stays healthy.

Besides random events, registrations and bytes, the generated input covers JSON nested from a
few levels to thousands (as a whole body or inside an event) on every endpoint that takes JSON,
and bodies around the ingest size limits. ``INNGEST_MW_FUZZ_EXAMPLES`` sets the count per engine
mode (CI default 300; scheduled: 10,000).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from inngest_mw_dev import EngineThread
from inngest_mw_dev.limits import MAX_EVENT_BYTES, MAX_INGEST_BODY, MAX_JSON_DEPTH

EXAMPLES = int(os.environ.get("INNGEST_MW_FUZZ_EXAMPLES", "300"))
KEY_HEX = "3c" * 32

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
events = st.fixed_dictionaries(
    {"name": st.text(max_size=12) | json_values},
    optional={"data": json_values, "id": json_values, "ts": json_values, "user": json_values},
)
functions = st.fixed_dictionaries(
    {"id": st.text(max_size=8) | json_values},
    optional={
        "name": json_values,
        "triggers": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "event": st.text(max_size=8),
                    "cron": st.text(max_size=12),
                    "expression": st.text(max_size=12),
                },
            ),
            max_size=3,
        )
        | json_values,
        "steps": json_values,
        "concurrency": json_values,
        "batchEvents": json_values,
        "debounce": json_values,
        "cancel": json_values,
    },
)
registrations = st.fixed_dictionaries(
    {},
    optional={
        "url": st.sampled_from(["http://127.0.0.1:9/api/inngest", "nope", ""]) | json_values,
        "appName": st.text(max_size=8) | json_values,
        "functions": st.lists(functions, max_size=3) | json_values,
        "sdk": json_values,
        "deployType": json_values,
    },
)
JSON_PATHS = [
    "/e/key",
    "/fn/register",
    "/v1/events",
    "/v1/functions/fn/invoke",
    "/v1/runs/cancel",
    "/v1/runs/run/rerun",
]
TOO_DEEP = f"request body is nested too deeply: JSON may nest at most {MAX_JSON_DEPTH} levels"
TOO_LARGE = f"the limit is {MAX_INGEST_BODY:,} bytes (3 MiB)"
_LEVELS = {"array": ("[", "]"), "object": ('{"k":', "}")}


@st.composite
def deep_bodies(draw: st.DrawFn) -> tuple[str, str, str, int]:
    """A body nested ``depth`` levels: arrays, objects or both, whole or as an event's data."""
    depth = draw(st.integers(0, 200) | st.integers(200, 5_000))
    kinds = draw(st.sampled_from([["array"], ["object"], ["array", "object"]]))
    opens = "".join(_LEVELS[kinds[i % len(kinds)]][0] for i in range(depth))
    closes = "".join(_LEVELS[kinds[i % len(kinds)]][1] for i in reversed(range(depth)))
    value = f"{opens}1{closes}"
    if draw(st.booleans()):
        return "POST", draw(st.sampled_from(JSON_PATHS)), value, depth
    event = '{"name":"fuzz/deep","data":{"v":' + value + "}}"  # event, data: two levels more
    return "POST", draw(st.sampled_from(["/e/key", "/v1/events"])), event, depth + 2


@st.composite
def sized_bodies(draw: st.DrawFn) -> tuple[str, str, str, int]:
    """A list of events padded to about ``size`` bytes, around the event and request limits."""
    size = draw(
        st.sampled_from([MAX_EVENT_BYTES, MAX_INGEST_BODY]).flatmap(
            lambda limit: st.integers(limit - 64, limit + 64)
        )
        | st.integers(0, MAX_INGEST_BODY + 1024 * 1024)
    )
    pieces = draw(st.integers(1, 8))
    frame = len('{"name":"fuzz/size","data":{"pad":""}}') * pieces + pieces + 1
    pad = max(0, size - frame) // pieces
    event = '{"name":"fuzz/size","data":{"pad":"' + "x" * pad + '"}}'
    body = "[" + ",".join([event] * pieces) + "]"
    return "POST", draw(st.sampled_from(["/e/key", "/v1/events"])), body, 2


requests = st.one_of(
    st.tuples(
        st.just("POST"),
        st.just("/e/key"),
        st.one_of(events, st.lists(events, max_size=4), json_values).map(json.dumps),
    ),
    st.tuples(st.just("POST"), st.just("/fn/register"), registrations.map(json.dumps)),
    st.tuples(
        st.sampled_from(["POST", "GET", "PUT"]),
        st.sampled_from(["/e/key", "/fn/register", "/e/"]),
        st.binary(max_size=100).map(lambda b: b.decode("latin-1")),
    ),
    st.tuples(
        st.sampled_from(["GET", "DELETE"]),
        st.sampled_from(["/v1/runs/", "/v0/runs/", "/v1/events/", "/v1/runs?limit="]).flatmap(
            lambda p: st.text("abcXYZ019-_%.", max_size=12).map(lambda t: p + t)
        ),
        st.just(""),
    ),
)


@pytest.fixture(scope="module", params=["open", "signed"])
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[httpx.Client, bool]]:
    signed = request.param == "signed"
    options: dict[str, Any] = {"signing_key": KEY_HEX} if signed else {}
    with (
        EngineThread(tmp_path_factory.mktemp("fuzz") / "e.db", port=0, **options) as running,
        httpx.Client(base_url=running.url, timeout=10) as http,
    ):
        yield http, signed


def _check(http: httpx.Client, signed: bool, method: str, path: str, body: str) -> httpx.Response:
    res = http.request(method, path, content=body.encode("utf-8", "surrogatepass"))
    assert res.status_code < 500, (method, path, body, res.status_code, res.text)
    assert "Traceback" not in res.text
    assert KEY_HEX not in res.text
    if res.status_code >= 400:
        payload = res.json()
        assert isinstance(payload, dict)
        assert payload.get("error") or payload.get("message"), payload
    if (
        signed
        and not path.startswith(("/e/", "/health"))
        and res.status_code not in (307, 404, 405)
    ):
        assert res.status_code == 401
    assert http.get("/health").status_code == 200
    return res


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(req=requests)
def test_engine_api_answers_hostile_requests_deliberately(
    engine: tuple[httpx.Client, bool], req: tuple[str, str, str]
) -> None:
    http, signed = engine
    _check(http, signed, *req)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(req=deep_bodies() | sized_bodies())
def test_any_nesting_depth_or_body_size_gets_a_deliberate_answer_never_a_5xx(
    engine: tuple[httpx.Client, bool], req: tuple[str, str, str, int]
) -> None:
    http, signed = engine
    method, path, body, depth = req
    res = _check(http, signed, method, path, body)
    if signed and path != "/e/key":
        return  # refused (401) before the body is read
    size = len(body.encode())
    if size > MAX_INGEST_BODY:
        assert res.status_code == 413
        assert res.json()["error"] == f"request body is too large ({size:,} bytes): {TOO_LARGE}"
    elif depth > MAX_JSON_DEPTH:
        assert res.status_code == 400
        assert res.json()["error"] == TOO_DEEP
