"""Client configuration, event sending, and function option validation."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from support import EventSink, serve_asgi

import inngest_mw
from inngest_mw import (
    Batch,
    Cancel,
    Concurrency,
    Debounce,
    Event,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
    Timeouts,
    TriggerCron,
    TriggerEvent,
)
from inngest_mw.errors import FunctionConfigInvalidError, SendEventsError
from inngest_mw.settings import resolve

NO_ARGS: dict[str, Any] = {
    "is_production": None,
    "api_base_url": None,
    "event_api_base_url": None,
    "signing_key": None,
    "event_key": None,
    "env": None,
}


@pytest.mark.parametrize(
    ("environ", "args", "mode", "api", "events"),
    [
        ({}, {}, "cloud", "https://api.inngest.com/", "https://inn.gs/"),
        ({"INNGEST_DEV": "1"}, {}, "dev", "http://127.0.0.1:8288/", "http://127.0.0.1:8288/"),
        ({"INNGEST_DEV": "true"}, {}, "dev", "http://127.0.0.1:8288/", "http://127.0.0.1:8288/"),
        ({"INNGEST_DEV": "0"}, {}, "cloud", "https://api.inngest.com/", "https://inn.gs/"),
        (
            {"INNGEST_DEV": "http://localhost:9999"},
            {},
            "dev",
            "http://localhost:9999/",
            "http://localhost:9999/",
        ),
        (
            {"INNGEST_DEV": "1", "INNGEST_BASE_URL": "http://b:1"},
            {},
            "dev",
            "http://b:1/",
            "http://b:1/",
        ),
        (
            {
                "INNGEST_BASE_URL": "https://b",
                "INNGEST_API_BASE_URL": "https://a",
                "INNGEST_EVENT_API_BASE_URL": "e.example",
            },
            {},
            "cloud",
            "https://a/",
            "https://e.example/",
        ),
        (
            {"INNGEST_DEV": "1"},
            {"is_production": True},
            "cloud",
            "https://api.inngest.com/",
            "https://inn.gs/",
        ),
        (
            {"INNGEST_API_BASE_URL": "https://env"},
            {"api_base_url": "https://arg"},
            "cloud",
            "https://arg/",
            "https://inn.gs/",
        ),
        (
            {},
            {"is_production": False, "api_base_url": "localhost:7"},
            "dev",
            "http://localhost:7/",
            "http://127.0.0.1:8288/",
        ),
    ],
)
def test_mode_and_origins_resolve_from_arguments_then_environment(
    environ: dict[str, str], args: dict[str, Any], mode: str, api: str, events: str
) -> None:
    settings = resolve(**(NO_ARGS | args), environ=environ)
    assert (settings.mode, settings.api_origin, settings.event_api_origin) == (mode, api, events)


def test_keys_and_env_come_from_environment_unless_given() -> None:
    environ = {
        "INNGEST_SIGNING_KEY": "signkey-prod-aa",
        "INNGEST_SIGNING_KEY_FALLBACK": "signkey-prod-bb",
        "INNGEST_EVENT_KEY": "ek",
        "INNGEST_ENV": "preview",
        "INNGEST_SERVE_ORIGIN": "https://app.example.com",
        "INNGEST_SERVE_PATH": "/inngest",
    }
    s = resolve(**NO_ARGS, environ=environ)
    assert (s.signing_key, s.signing_key_fallback, s.event_key, s.env) == (
        "signkey-prod-aa",
        "signkey-prod-bb",
        "ek",
        "preview",
    )
    assert (s.serve_origin, s.serve_path) == ("https://app.example.com", "/inngest")
    s = resolve(**(NO_ARGS | {"signing_key": "k", "event_key": "e", "env": "x"}), environ=environ)
    assert (s.signing_key, s.event_key, s.env) == ("k", "e", "x")


def test_send_posts_events_with_seed_header_and_returns_ids() -> None:
    sink = EventSink()
    with serve_asgi(sink) as url:
        client = inngest_mw.Inngest(
            app_id="a", is_production=False, event_api_base_url=url, event_key="key-1"
        )
        ids = client.send_sync([Event(name="a/b", data={"n": 1}), Event(name="a/c", id="fixed")])
    assert ids == ["id-0", "id-1"]
    assert [e["name"] for e in sink.received] == ["a/b", "a/c"]
    assert sink.received[1]["id"] == "fixed"
    assert all(isinstance(e["ts"], int) and e["ts"] > 0 for e in sink.received)
    millis, entropy = sink.headers[0]["x-inngest-event-id-seed"].split(",")
    assert millis.isdigit()
    assert entropy


async def test_async_send_retries_server_errors_then_succeeds() -> None:
    sink = EventSink(fail_first=2)
    with serve_asgi(sink) as url:
        client = inngest_mw.Inngest(app_id="a", is_production=False, event_api_base_url=url)
        ids = await client.send(Event(name="a/b"))
    assert ids == ["id-0"]
    assert sink.calls == 3


def test_send_does_not_retry_a_client_error_and_raises_with_partial_ids() -> None:
    sink = EventSink(fail_first=1, status=400)
    with serve_asgi(sink) as url:
        client = inngest_mw.Inngest(app_id="a", is_production=False, event_api_base_url=url)
        with pytest.raises(
            SendEventsError, match="refused the events \\(400\\): try again"
        ) as info:
            client.send_sync(Event(name="a/b"))
    assert sink.calls == 1
    assert info.value.ids == []


def test_send_gives_up_after_five_attempts_on_transport_errors() -> None:
    client = inngest_mw.Inngest(
        app_id="a", is_production=False, event_api_base_url="http://127.0.0.1:9"
    )
    with pytest.raises(SendEventsError, match="after 5 attempts"):
        client.send_sync(Event(name="a/b"))


def test_cloud_send_without_event_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INNGEST_EVENT_KEY", raising=False)
    client = inngest_mw.Inngest(app_id="a", is_production=True, signing_key="k")
    with pytest.raises(SendEventsError, match="INNGEST_EVENT_KEY"):
        client.send_sync(Event(name="a/b"))


def test_oversized_event_is_refused_before_sending() -> None:
    client = inngest_mw.Inngest(app_id="a", is_production=False)
    with pytest.raises(SendEventsError, match="limit is 524288"):
        client.send_sync(Event(name="a/b", data={"blob": "x" * 600_000}))


def test_event_name_must_not_be_empty() -> None:
    with pytest.raises(ValueError, match="event name must not be empty"):
        Event(name=" ")


def test_registration_json_renders_every_option() -> None:
    client = inngest_mw.Inngest(app_id="app", is_production=False)

    @client.create_function(
        fn_id="all",
        name="All options",
        trigger=[
            TriggerEvent(event="a/b", expression="event.data.x == 1"),
            TriggerCron(cron="TZ=Europe/Paris 0 9 * * 1-5"),
        ],
        retries=3,
        cancel=[
            Cancel(
                event="a/cancel",
                if_exp="event.data.id == async.data.id",
                timeout=dt.timedelta(hours=1),
            )
        ],
        concurrency=[Concurrency(limit=2, key="event.data.user", scope="fn")],
        debounce=Debounce(period="5s", timeout="1m"),
        idempotency="event.data.id",
        priority=Priority(run="event.data.prio"),
        rate_limit=RateLimit(limit=10, period=dt.timedelta(hours=1)),
        throttle=Throttle(limit=1, period="1m", burst=2),
        timeouts=Timeouts(start="10s", finish=300_000),
        singleton=Singleton(key="event.data.user", mode="skip"),
    )
    def fn(ctx: inngest_mw.ContextSync) -> None:
        return None

    [config] = fn.get_config("http://h/api/inngest")
    config.pop("steps")
    assert config == {
        "id": "app-all",
        "name": "All options",
        "triggers": [
            {"event": "a/b", "expression": "event.data.x == 1"},
            {"cron": "TZ=Europe/Paris 0 9 * * 1-5"},
        ],
        "cancel": [{"event": "a/cancel", "if": "event.data.id == async.data.id", "timeout": "1h"}],
        "concurrency": [{"limit": 2, "key": "event.data.user", "scope": "fn"}],
        "debounce": {"period": "5s", "timeout": "1m"},
        "idempotency": "event.data.id",
        "priority": {"run": "event.data.prio"},
        "rateLimit": {"limit": 10, "period": "1h"},
        "throttle": {"limit": 1, "period": "1m", "burst": 2},
        "timeouts": {"start": "10s", "finish": "5m"},
        "singleton": {"key": "event.data.user", "mode": "skip"},
    }


def test_batch_renders_max_size_timeout_and_if() -> None:
    client = inngest_mw.Inngest(app_id="app", is_production=False)

    @client.create_function(
        fn_id="b",
        trigger=TriggerEvent(event="a/b"),
        batch_events=Batch(max_size=5, timeout="5s", if_exp="true"),
    )
    def fn(ctx: inngest_mw.ContextSync) -> None:
        return None

    assert fn.get_config("http://h")[0]["batchEvents"] == {
        "maxSize": 5,
        "timeout": "5s",
        "if": "true",
    }


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: {"trigger": [TriggerEvent(event=f"e/{i}") for i in range(11)]},
            "trigger: at most 10 triggers",
        ),
        (
            lambda: {"trigger": [TriggerEvent(event="e/a"), TriggerEvent(event="e/a")]},
            "trigger: duplicate trigger",
        ),
        (lambda: {"trigger": []}, "trigger: at least one trigger"),
        (
            lambda: {
                "concurrency": [
                    Concurrency(limit=1, key="a"),
                    Concurrency(limit=1, key="b"),
                    Concurrency(limit=1, key="c"),
                ]
            },
            "concurrency: at most 2",
        ),
        (lambda: {"cancel": [Cancel(event=f"c/{i}") for i in range(6)]}, "cancel: at most 5"),
        (
            lambda: {
                "batch_events": Batch(max_size=3, timeout="5s"),
                "debounce": Debounce(period="5s"),
            },
            "batch_events cannot be combined with debounce",
        ),
        (lambda: {"retries": 21}, "retries: must be between 0 and 20"),
        (lambda: {"fn_id": " "}, "fn_id: must be a non-empty string"),
    ],
)
def test_invalid_function_options_fail_at_definition_naming_the_field(
    make: Any, message: str
) -> None:
    client = inngest_mw.Inngest(app_id="app", is_production=False)
    options: dict[str, Any] = {"fn_id": "f", "trigger": TriggerEvent(event="e/x")} | make()
    with pytest.raises(FunctionConfigInvalidError, match=message.replace("(", "\\(")):
        client.create_function(**options)


@pytest.mark.parametrize(
    ("field", "make", "message"),
    [
        (
            "trigger",
            lambda: TriggerCron(cron="* * *"),
            "TriggerCron.cron: cron '* * *' must have 5",
        ),
        (
            "trigger",
            lambda: TriggerCron(cron="61 * * * *"),
            "TriggerCron.cron: cron minute field '61': value 61 out of range 0-59",
        ),
        ("trigger", lambda: TriggerCron(cron="TZ=Mars/Base * * * * *"), "unknown time zone"),
        ("debounce", lambda: Debounce(period="0s"), "Debounce.period: must be between 1s and 7d"),
        ("batch_events", lambda: Batch(max_size=1, timeout="5s"), "Batch.max_size: must be at"),
        ("batch_events", lambda: Batch(max_size=5, timeout="2m"), "Batch.timeout: must be betw"),
        ("rate_limit", lambda: RateLimit(limit=1, period="2d"), "RateLimit.period: must be bet"),
        (
            "concurrency",
            lambda: [Concurrency(limit=1, scope="account")],
            "concurrency[0]: Concurrency: scope 'account' requires a key",
        ),
        ("throttle", lambda: Throttle(limit=0, period="1m"), "Throttle.limit: must be at least 1"),
        ("debounce", lambda: Debounce(period="soon"), "Debounce.period: invalid duration 'soon'"),
        ("timeouts", lambda: Timeouts(start="forever"), "Timeouts.start: invalid duration"),
    ],
)
def test_invalid_option_objects_fail_at_definition_naming_option_field_and_function(
    field: str, make: Any, message: str
) -> None:
    client = inngest_mw.Inngest(app_id="app", is_production=False)
    options: dict[str, Any] = {"fn_id": "checkout", "trigger": TriggerEvent(event="e/x")}
    options[field] = make()
    with pytest.raises(FunctionConfigInvalidError) as raised:
        client.create_function(**options)
    text = str(raised.value)
    assert text.startswith(f"{field}"), text
    assert message in text
    assert text.endswith("(function 'checkout')")


def test_a_valid_option_object_has_no_problem() -> None:
    assert Throttle(limit=1, period="1m").problem is None
    assert Throttle(limit=0, period="1m").problem == "Throttle.limit: must be at least 1"


def test_cron_accepts_names_steps_and_ranges() -> None:
    TriggerCron(cron="*/15 9-17 * JAN-MAR MON-FRI")
    TriggerCron(cron="CRON_TZ=America/New_York 0 0 1,15 * ?")
