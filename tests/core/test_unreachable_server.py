"""A server the SDK cannot reach: every error names the URL it tried, and in dev mode says how to
point the SDK at the dev server (the usual cause: the engine runs on another port)."""

from __future__ import annotations

import asyncio

import pytest

import inngest_mw
from inngest_mw import realtime
from inngest_mw.errors import SendEventsError, SendSignalError

NOWHERE = "http://127.0.0.1:1"  # port 1 refuses every connection
HINT = "is the dev server running there? INNGEST_DEV=http://HOST:PORT"


def dev_client() -> inngest_mw.Inngest:
    return inngest_mw.Inngest(
        app_id="lost", is_production=False, api_base_url=NOWHERE, event_api_base_url=NOWHERE
    )


def test_send_names_the_event_api_url_and_the_dev_server_hint() -> None:
    client = dev_client()
    event = inngest_mw.Event(name="lost/event")
    with pytest.raises(SendEventsError) as sync_error:
        client.send_sync(event)
    with pytest.raises(SendEventsError) as async_error:
        asyncio.run(client.send(event))
    for error in (sync_error, async_error):
        message = str(error.value)
        assert message.startswith("sending events failed after 5 attempts: ConnectError from ")
        assert f"from {NOWHERE}/e/" in message
        assert HINT in message


def test_signals_realtime_and_subscriptions_name_the_api_url() -> None:
    client = dev_client()
    with pytest.raises(SendSignalError, match=rf"ConnectError from {NOWHERE}/v1/signals") as sent:
        client.send_signal_sync("nobody", 1)
    assert HINT in str(sent.value)
    with pytest.raises(realtime.RealtimeError, match=rf"from {NOWHERE}/v1/realtime/publish"):
        realtime.publish_sync(client, "c", "t", 1)
    token = realtime.SubscriptionToken(key="k", channel="c", topics=["t"])
    with pytest.raises(realtime.RealtimeError, match=rf"from {NOWHERE}/v1/realtime/sse") as sub:
        realtime.subscribe_sync(client, "c", ["t"], token=token).open()
    assert HINT in str(sub.value)


def test_in_cloud_mode_the_url_is_named_without_the_dev_server_hint() -> None:
    client = inngest_mw.Inngest(
        app_id="lost",
        is_production=True,
        event_key="key",
        signing_key="signkey-prod-" + "ab" * 32,
        api_base_url=NOWHERE,
        event_api_base_url=NOWHERE,
    )
    with pytest.raises(SendEventsError, match=rf"ConnectError from {NOWHERE}/e/") as error:
        client.send_sync(inngest_mw.Event(name="lost/event"))
    assert HINT not in str(error.value)
