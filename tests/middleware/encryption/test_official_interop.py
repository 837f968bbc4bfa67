"""Wire compatibility with the official ``inngest-encryption`` package (a test-only peer): each
side decrypts what the other encrypts, for step outputs and for event fields."""

from __future__ import annotations

from typing import Any

import inngest
import inngest_encryption
from hypothesis import given, settings
from hypothesis import strategies as st
from inngest_mw_encryption import LibsodiumStrategy
from inngest_mw_encryption._codec import Codec

KEY = "shared interop key ✓"
OLD_KEY = "retired interop key"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)


def official(key: str = KEY, **options: Any) -> Any:
    client = inngest.Inngest(app_id="official", is_production=False)
    return inngest_encryption.EncryptionMiddleware(client, None, key, **options)


def ours(key: str = KEY, fallback: tuple[str, ...] = ()) -> Codec:
    return Codec(LibsodiumStrategy(key, fallback))


@settings(max_examples=60, deadline=None)
@given(value=json_values)
def test_step_outputs_cross_decrypt_both_ways(value: Any) -> None:
    theirs = official()
    assert ours().open(theirs._encrypt(value), "their output") == value
    assert theirs._decrypt(ours().seal(value, "our output")) == value


def test_their_function_output_decrypts_here() -> None:
    result = inngest.TransformOutputResult(error=None, output={"total": 99}, step=None)
    official().transform_output(result)
    output = result.output
    assert isinstance(output, dict)
    assert output["__STRATEGY__"] == "inngest/libsodium"
    assert ours().open(output, "their return value") == {"total": 99}


def test_their_sent_event_field_decrypts_here() -> None:
    events = [inngest.Event(name="t/e", data={"encrypted": {"ssn": "078-05-1120"}, "k": 1})]
    official().before_send_events(events)
    data = events[0].data
    assert data["k"] == 1
    assert ours().open_fields(dict(data), "their event") == {
        "encrypted": {"ssn": "078-05-1120"},
        "k": 1,
    }


def test_our_event_field_and_whole_data_decrypt_there() -> None:
    field = {"encrypted": ours().seal({"ssn": "078-05-1120"}, "f"), "k": 1}
    assert official()._decrypt_event_data(field) == {"encrypted": {"ssn": "078-05-1120"}, "k": 1}
    whole = {**ours().seal({"a": 1}, "d"), "_inngest": {"x": 2}}  # type: ignore[dict-item]
    assert official()._decrypt_event_data(whole) == {"a": 1, "_inngest": {"x": 2}}


def test_rotation_works_across_packages() -> None:
    retired = official(OLD_KEY)._encrypt("old secret")
    assert ours("new", (OLD_KEY,)).open(retired, "old value") == "old secret"
    mine = ours(OLD_KEY).seal("old secret", "old value")
    assert official("new", fallback_decryption_keys=[OLD_KEY])._decrypt(mine) == "old secret"
