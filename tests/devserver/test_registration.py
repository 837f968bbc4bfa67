"""``POST /fn/register`` validation: every invalid config is a 400 naming the function and field."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from inngest_mw_dev import EngineThread
from inngest_mw_dev.registration import (
    DEFAULT_RETRIES,
    RegistrationError,
    event_name_matches,
    parse_registration,
)


def payload(**fn: Any) -> dict[str, Any]:
    function = {"id": "app-fn", "name": "fn", "triggers": [{"event": "app/go"}], **fn}
    return {
        "appName": "app",
        "url": "http://127.0.0.1:1/api/inngest",
        "sdk": "py:v1",
        "v": "0.1",
        "deployType": "ping",
        "functions": [function],
    }


def test_valid_payload_parses_retries_cancel_and_triggers() -> None:
    reg = parse_registration(
        payload(
            triggers=[
                {"event": "app/*", "expression": "event.data.ok == true"},
                {"cron": "TZ=Europe/Paris 0 9 * * 1-5"},
            ],
            steps={"step": {"id": "step", "retries": {"attempts": 99}}},
            cancel=[{"event": "app/stop", "if": "event.data.id == async.data.id", "timeout": "1h"}],
        )
    )
    (fn,) = reg.functions
    assert fn.retries == 20
    assert fn.max_attempts == 21
    assert fn.cancel[0].timeout == 3600
    assert [t.cron for t in fn.triggers] == [None, "TZ=Europe/Paris 0 9 * * 1-5"]


def test_python_sdk_spelling_and_default_retries() -> None:
    body = payload()
    body["appname"] = body.pop("appName")
    body["deploy_type"] = body.pop("deployType")
    reg = parse_registration(body)
    assert reg.app_name == "app"
    assert reg.functions[0].retries == DEFAULT_RETRIES


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"triggers": [{"event": f"e{i}"} for i in range(11)]}, "triggers: at most 10"),
        ({"triggers": []}, "triggers: must be a non-empty list"),
        ({"triggers": [{"event": "a", "cron": "* * * * *"}]}, "triggers[0]: must have exactly one"),
        ({"triggers": [{"event": "x" * 256}]}, "triggers[0].event: event name is longer than 255"),
        ({"triggers": [{"event": "a*b"}]}, "triggers[0].event: a wildcard"),
        ({"triggers": [{"event": "a"}, {"event": "a"}]}, "triggers[1]: duplicate trigger"),
        ({"triggers": [{"cron": "* * * *"}]}, "triggers[0].cron: cron expression '* * * *' must"),
        ({"triggers": [{"cron": "@daily"}]}, "triggers[0].cron"),
        ({"triggers": [{"cron": "TZ=Mars/Base * * * * *"}]}, "unknown time zone 'Mars/Base'"),
        ({"triggers": [{"cron": "* * * * *", "jitter": "10m"}]}, "triggers[0].jitter"),
        (
            {"triggers": [{"event": "a", "expression": "event.data.x =="}]},
            "triggers[0].expression: invalid expression",
        ),
        ({"concurrency": [1, 2, 3]}, "concurrency: at most 2 limits"),
        ({"concurrency": [{"limit": 1, "scope": "env"}]}, "concurrency[0].key: is required"),
        ({"concurrency": [{"limit": 1, "scope": "app"}]}, "concurrency[0].scope"),
        ({"cancel": [{"event": f"c{i}"} for i in range(6)]}, "cancel: at most 5"),
        ({"cancel": [{"event": "c", "if": "[1].all(x, x > 0)"}]}, "cancel[0].if: invalid"),
        (
            {"batchEvents": {"maxSize": 10, "timeout": "5s"}, "cancel": [{"event": "c"}]},
            "batchEvents: cannot be combined with cancel",
        ),
        ({"batchEvents": {"maxSize": 10, "timeout": "100ms"}}, "batchEvents.timeout: must be at"),
        ({"debounce": {"period": "8d"}}, "debounce.period: must be between 1s and 7d"),
        ({"debounce": {"period": "500ms"}}, "debounce.period: must be between 1s and 7d"),
        ({"rateLimit": {"limit": 1, "period": "25h"}}, "rateLimit.period: must be greater"),
        ({"rateLimit": {"limit": 0, "period": "1h"}}, "rateLimit.limit: must be a positive"),
        ({"singleton": {"mode": "queue"}}, "singleton.mode: must be 'skip' or 'cancel'"),
        ({"idempotency": "event.data.("}, "idempotency: invalid expression"),
        ({"steps": {"step": {"retries": {"attempts": -1}}}}, "steps.step.retries.attempts"),
    ],
)
def test_invalid_config_is_rejected_naming_function_and_field(
    config: dict[str, Any], message: str
) -> None:
    with pytest.raises(RegistrationError) as info:
        parse_registration(payload(**config))
    assert str(info.value).startswith('function "app-fn": ')
    assert message in str(info.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(RegistrationError) as info:
        parse_registration(payload(debounce={"period": "8d"}, singleton={"mode": "x"}))
    assert "debounce.period" in str(info.value)
    assert "singleton.mode" in str(info.value)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "request body must be a JSON object"),
        ({"url": "http://x"}, "appName: must be a non-empty string"),
        ({"appName": "a", "url": "ftp://x"}, "url: must be an absolute http(s) URL"),
        (
            {"appName": "a", "url": "http://x", "functions": [{"name": "no id"}]},
            "non-empty string id",
        ),
    ],
)
def test_malformed_payloads(body: object, message: str) -> None:
    with pytest.raises(RegistrationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_registration(body)


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("app/*", "app/user.created", True),
        ("app/user.*", "app/user.created", True),
        ("app/user.*", "app/order.created", False),
        ("app/x", "app/x", True),
        ("app/x", "app/xy", False),
    ],
)
def test_wildcard_event_names(pattern: str, name: str, matches: bool) -> None:
    assert event_name_matches(pattern, name) is matches


def test_register_endpoint_answers_400_with_the_reason_and_200_on_resync(
    engine: EngineThread,
) -> None:
    bad = httpx.post(f"{engine.url}/fn/register", json=payload(debounce={"period": "8d"}))
    assert bad.status_code == 400
    assert bad.json()["error"] == ('function "app-fn": debounce.period: must be between 1s and 7d')
    garbage = httpx.post(f"{engine.url}/fn/register", content=b"{not json")
    assert garbage.status_code == 400
    assert "not valid JSON" in garbage.json()["error"]

    first = httpx.post(f"{engine.url}/fn/register", json=payload()).json()
    assert first["ok"] is True
    assert first["modified"] is True
    again = httpx.post(f"{engine.url}/fn/register", json=payload()).json()
    assert again == {**first, "modified": False}
    changed = httpx.post(
        f"{engine.url}/fn/register", json=payload(triggers=[{"event": "app/other"}])
    ).json()
    assert changed["modified"] is True
    assert changed["app_id"] == first["app_id"]
    assert changed["sync_id"] != first["sync_id"]
