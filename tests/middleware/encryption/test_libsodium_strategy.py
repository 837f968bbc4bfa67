"""The libsodium strategy and codec on their own: wire layout, key derivation, rotation, errors."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import nacl.hash
import nacl.secret
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from inngest_mw_encryption import DecryptionError, LibsodiumStrategy, derive_key
from inngest_mw_encryption._codec import Codec

from inngest_mw.errors import ConfigError

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(value=json_values)
def test_any_json_value_round_trips(value: Any) -> None:
    strategy = LibsodiumStrategy("round-trip key")
    assert strategy.decrypt(strategy.encrypt(value)) == value


def test_ciphertext_is_base64_of_nonce_mac_and_sealed_json() -> None:
    strategy = LibsodiumStrategy("k")
    plaintext = json.dumps({"a": 1}, separators=(",", ":")).encode()
    raw = base64.b64decode(strategy.encrypt({"a": 1}), validate=True)
    nonce, sealed = raw[:24], raw[24:]
    assert len(sealed) == nacl.secret.SecretBox.MACBYTES + len(plaintext)
    box = nacl.secret.SecretBox(
        nacl.hash.blake2b(b"k", digest_size=32, encoder=nacl.encoding.RawEncoder)
    )
    assert box.decrypt(sealed, nonce) == plaintext


def test_each_encryption_uses_a_fresh_nonce() -> None:
    strategy = LibsodiumStrategy("k")
    assert strategy.encrypt("same") != strategy.encrypt("same")


def test_a_bytes_key_is_the_same_key_as_its_string() -> None:
    assert derive_key(b"s\xc3\xa9cret") == derive_key("sécret")
    assert LibsodiumStrategy(b"key").decrypt(LibsodiumStrategy("key").encrypt(5)) == 5


def test_fallback_keys_decrypt_but_only_the_first_key_encrypts() -> None:
    old, new = LibsodiumStrategy("old"), LibsodiumStrategy("new", ["old"])
    assert new.decrypt(old.encrypt("from old")) == "from old"
    with pytest.raises(DecryptionError, match="no configured key matches"):
        old.decrypt(new.encrypt("from new"))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("not base64!", "not valid base64"),
        (base64.b64encode(b"short").decode(), "too short"),
        (base64.b64encode(bytes(64)).decode(), "no configured key matches"),
    ],
)
def test_undecryptable_data_raises_decryption_error(data: str, reason: str) -> None:
    with pytest.raises(DecryptionError, match=reason):
        LibsodiumStrategy("k").decrypt(data)


@pytest.mark.parametrize("bad", ["", b""])
def test_empty_key_is_rejected(bad: str | bytes) -> None:
    with pytest.raises(ConfigError, match="must not be empty"):
        LibsodiumStrategy(bad)


def test_a_single_string_as_fallback_keys_is_rejected() -> None:
    with pytest.raises(ConfigError, match="list of keys"):
        LibsodiumStrategy("k", "old")


def test_codec_names_the_value_and_hides_secrets_when_decryption_fails() -> None:
    sealed = Codec(LibsodiumStrategy("right-key")).seal({"card": "4242"}, "x")
    assert isinstance(sealed, dict)
    with pytest.raises(DecryptionError) as info:
        Codec(LibsodiumStrategy("wrong-key")).open(sealed, "step 'charge' output")
    message = str(info.value)
    assert message == "cannot decrypt step 'charge' output: no configured key matches"
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_codec_refuses_a_value_of_another_strategy() -> None:
    codec = Codec(LibsodiumStrategy("k"))
    legacy = {"__ENCRYPTED__": True, "data": "U2FsdGVkX1..."}
    with pytest.raises(DecryptionError, match="strategy 'inngest/aes'"):
        codec.open(legacy, "step s output")


def test_codec_leaves_an_already_encrypted_value_as_is_and_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    codec = Codec(LibsodiumStrategy("k"))
    sealed = codec.seal("v", "first")
    with caplog.at_level(logging.WARNING, logger="inngest_mw_encryption"):
        assert codec.seal(sealed, "step 'a' output") is sealed
    assert "step 'a' output is already encrypted" in caplog.text
