"""Hostile input to the engine's HTTP API: deliberate 4xx/2xx JSON answers, and it stays healthy.

``INNGEST_MW_FUZZ_EXAMPLES`` sets the count per engine mode (CI default 300; scheduled: 10,000).
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


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(req=requests)
def test_engine_api_answers_hostile_requests_deliberately(
    engine: tuple[httpx.Client, bool], req: tuple[str, str, str]
) -> None:
    http, signed = engine
    method, path, body = req
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
