"""Response classification, Retry-After, sleep targets, call bodies, IDs and cron schedules."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from inngest_mw_dev.connect_http import CONNECT_APP_URL, connect_app_url, is_connect_url
from inngest_mw_dev.cron import parse_cron
from inngest_mw_dev.executor import (
    MAX_REQUEST_BODY,
    CallFailed,
    Completed,
    OpsResponse,
    build_body,
    call_url,
    classify,
)
from inngest_mw_dev.ids import new_ulid, ulid_from_seed
from inngest_mw_dev.timing import backoff_seconds, parse_retry_after, sleep_until

from inngest_mw.signature import sign

SDK = {"x-inngest-sdk": "inngest-py:v0.5.19"}
NOW = 1_700_000_000.0


def test_200_from_an_sdk_completes_with_the_body() -> None:
    assert classify(200, SDK, b'{"a": 1}', NOW) == Completed({"a": 1})
    assert classify(200, SDK, b"", NOW) == Completed(None)


def test_a_2xx_without_the_sdk_header_is_a_retriable_failure() -> None:
    outcome = classify(200, {}, b'"hi"', NOW)
    assert isinstance(outcome, CallFailed)
    assert outcome.retriable
    assert outcome.error["name"] == "FatalUpstreamError"


def test_206_accepts_a_list_a_single_op_or_an_empty_list() -> None:
    op = {"id": "h", "op": "StepRun", "name": "a", "data": 1, "userland": {"id": "a"}}
    listed = classify(206, SDK, json.dumps([op]).encode(), NOW)
    single = classify(206, SDK, json.dumps(op).encode(), NOW)
    assert isinstance(listed, OpsResponse)
    assert listed == single
    assert listed.ops[0].label == "a"
    assert classify(206, SDK, b"[]", NOW) == OpsResponse([], False, None)


@pytest.mark.parametrize("body", [b"nope", b"[1, 2]", b'{"op": 3}', b'"text"'])
def test_garbage_206_bodies_are_retriable_failures(body: bytes) -> None:
    outcome = classify(206, SDK, body, NOW)
    assert isinstance(outcome, CallFailed)
    assert outcome.retriable


def test_no_retry_header_and_retry_after_are_honoured_on_errors() -> None:
    fatal = classify(500, {**SDK, "x-inngest-no-retry": "true"}, b'{"message": "x"}', NOW)
    assert isinstance(fatal, CallFailed)
    assert not fatal.retriable
    later = classify(500, {**SDK, "retry-after": "30"}, b"oops", NOW)
    assert isinstance(later, CallFailed)
    assert later.retriable
    assert later.retry_at == NOW + 30
    assert "oops" in later.error["message"]


def test_201_streamed_wrapper_is_unwrapped() -> None:
    inner = {
        "status": 206,
        "headers": {"x-inngest-no-retry": "false"},
        "body": json.dumps([{"id": "h", "op": "StepRun", "data": 5}]),
    }
    outcome = classify(201, SDK, b"   " + json.dumps(inner).encode(), NOW)
    assert isinstance(outcome, OpsResponse)
    assert outcome.ops[0].data == 5
    assert isinstance(classify(201, SDK, b"junk", NOW), CallFailed)


def test_retry_after_accepts_seconds_and_dates_and_is_clamped() -> None:
    assert parse_retry_after("0", NOW) == NOW + 1
    assert parse_retry_after("9999999", NOW) == NOW + 86_400
    iso = dt.datetime.fromtimestamp(NOW + 120, dt.UTC).isoformat().replace("+00:00", "Z")
    assert parse_retry_after(iso, NOW) == pytest.approx(NOW + 120)
    http_date = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert parse_retry_after(http_date, NOW) == NOW + 1
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None


def test_sleep_targets_from_durations_dates_and_limits() -> None:
    assert sleep_until("1h", None, NOW) == NOW + 3600
    assert sleep_until(None, "90s", NOW) == NOW + 90
    wake = dt.datetime.fromtimestamp(NOW + 5, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    assert sleep_until(None, wake, NOW) == pytest.approx(NOW + 5)
    with pytest.raises(ValueError, match="366 days"):
        sleep_until("400d", None, NOW)
    with pytest.raises(ValueError, match="invalid sleep"):
        sleep_until(None, "whenever", NOW)


def test_backoff_grows_exponentially_with_bounded_jitter() -> None:
    for attempt in range(5):
        delay = backoff_seconds(attempt, 1.0)
        assert 2**attempt <= delay <= 2**attempt * 1.3
    assert backoff_seconds(100, 1.0) <= 6 * 3600 * 1.3


def _body(steps: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    raw = build_body(
        events=[event],
        steps=steps,
        stack=list(steps),
        fn_uuid="u",
        run_id="r",
        step_id="step",
        attempt=0,
        max_attempts=5,
        disable_immediate_execution=False,
    )
    parsed: dict[str, Any] = json.loads(raw)
    assert raw == json.dumps(parsed, sort_keys=True, separators=(",", ":")).encode()
    return parsed


def test_call_body_is_canonical_and_moves_large_state_to_the_api() -> None:
    event = {"name": "a", "id": "e", "data": {}, "ts": 1}
    small = _body({"h": {"data": 1}}, event)
    assert small["steps"] == {"h": {"data": 1}}
    assert small["ctx"]["stack"] == {"stack": ["h"], "current": 1}
    assert small["use_api"] is False
    big = _body({"h": {"data": "x" * MAX_REQUEST_BODY}}, event)
    assert (big["use_api"], big["ctx"]["use_api"], big["steps"], big["events"]) == (
        True,
        True,
        {},
        [],
    )
    assert big["event"] == event


def test_signature_of_a_body_uses_the_given_timestamp() -> None:
    assert sign(b"{}", "signkey-test-ab", 1).startswith("t=1&s=")


def test_call_url_sets_function_and_step_and_keeps_other_query_params() -> None:
    url = call_url("http://h/api/inngest?x=1&fnId=old", "app-fn", "abc")
    assert url == "http://h/api/inngest?x=1&fnId=app-fn&stepId=abc"


def test_ulids_are_unique_sortable_and_seedable() -> None:
    first, second = new_ulid(1000), new_ulid(2000)
    assert len(first) == 26
    assert first < second
    seed = "1700000000000,AAECAwQFBgcICQ=="
    assert ulid_from_seed(seed, 0) == ulid_from_seed(seed, 0)
    assert ulid_from_seed(seed, 0) != ulid_from_seed(seed, 1)
    assert ulid_from_seed("garbage", 0) is None


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


@given(ms=st.integers(0, (1 << 48) - 1), entropy=st.binary(min_size=10, max_size=10))
def test_a_ulid_is_its_time_then_its_entropy_in_crockford_base32(ms: int, entropy: bytes) -> None:
    seed = f"{ms},{base64.b64encode(entropy).decode()}"
    ulid = ulid_from_seed(seed, 0)
    assert ulid is not None
    assert len(ulid) == 26
    value = 0
    for char in ulid:
        value = value * 32 + _CROCKFORD.index(char)
    assert (value >> 80, value & ((1 << 80) - 1)) == (ms, int.from_bytes(entropy, "big"))


def test_ulid_edges_encode_as_the_spec_says() -> None:
    zero = base64.b64encode(bytes(10)).decode()
    top = base64.b64encode(b"\xff" * 10).decode()
    assert ulid_from_seed(f"0,{zero}", 0) == "0" * 26
    assert ulid_from_seed(f"1,{zero}", 0) == "0000000001" + "0" * 16
    assert ulid_from_seed(f"{(1 << 48) - 1},{top}", 0) == "7ZZZZZZZZZ" + "Z" * 16


def test_cron_schedules_respect_their_time_zone() -> None:
    utc = parse_cron("0 9 * * *")
    paris = parse_cron("TZ=Europe/Paris 0 9 * * *")
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC).timestamp()
    assert dt.datetime.fromtimestamp(utc.next_after(start), dt.UTC).hour == 9
    assert dt.datetime.fromtimestamp(paris.next_after(start), dt.UTC).hour == 8


def test_only_the_connect_url_itself_is_a_connect_url() -> None:
    assert is_connect_url(CONNECT_APP_URL)
    assert is_connect_url(connect_app_url("my app"))
    for url in ["ws://connector", "ws://connect/x", "http://127.0.0.1/api", "ws://connec"]:
        assert not is_connect_url(url), url
