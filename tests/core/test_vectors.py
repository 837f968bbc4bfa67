"""The reference's test vectors: step-ID hashes, request signatures, bearer keys, durations."""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inngest_mw import signature
from inngest_mw.durations import format_duration, parse_duration
from inngest_mw.errors import SignatureError
from inngest_mw.memo import StepCore, hash_step_id


def test_step_id_hash_matches_reference_vector() -> None:
    assert hash_step_id("my-step-id") == "e7d8a2f140845095749d60246ff1110c9d01d76a"


def test_repeated_step_ids_are_suffixed_from_the_second_use() -> None:
    core = StepCore(memos={})
    first, i0 = core.resolve_id("my-step-id")
    second, i1 = core.resolve_id("my-step-id")
    assert (first, i0) == ("e7d8a2f140845095749d60246ff1110c9d01d76a", 0)
    assert (second, i1) == ("f47c6228c581af870aa285200cf95ec3ac59bb6a", 1)


def test_signature_matches_reference_vector() -> None:
    header = signature.sign(b'{"a":1}', "signkey-test-12345678", 1705586504)
    assert (
        header == "t=1705586504&s=bd16d89641dac2e340a40e3800435b96c0e533c00bc7322c1eefae65d6ab6954"
    )


def test_bearer_key_is_prefixed_sha256_of_hex_decoded_key() -> None:
    assert (
        signature.hash_signing_key("signkey-prod-12345678")
        == "signkey-prod-b2ed992186a5cb19f6668aade821f502c1d00970dfd0e35128d51bac4649916c"
    )


def test_verify_accepts_fallback_key_and_returns_it() -> None:
    body = b'{"x":true}'
    header = signature.sign(body, "signkey-test-bbbb")
    assert (
        signature.verify(body, header, ["signkey-test-aaaa", "signkey-test-bbbb"])
        == "signkey-test-bbbb"
    )


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("garbage", "malformed"),
        ("t=abc&s=00", "malformed"),
        ("t=1705586504&s=bd16", "window"),
    ],
)
def test_verify_rejects_bad_headers_with_a_reason(header: str | None, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        signature.verify(b'{"a":1}', header, ["signkey-test-12345678"])


def test_verify_rejects_a_stale_signature_even_when_the_mac_is_right() -> None:
    header = signature.sign(b"{}", "k1", 1_000_000)
    with pytest.raises(SignatureError, match="window"):
        signature.verify(b"{}", header, ["k1"], now=1_000_000 + 301)
    assert signature.verify(b"{}", header, ["k1"], now=1_000_000 + 299) == "k1"


@given(st.binary(max_size=200), st.text(max_size=80), st.text(max_size=40))
def test_verify_only_ever_raises_signature_error(body: bytes, header: str, key: str) -> None:
    with contextlib.suppress(SignatureError):
        signature.verify(body, header, [key])


@given(st.binary(max_size=500), st.from_regex(r"[0-9a-f]{8,64}", fullmatch=True))
def test_sign_then_verify_round_trips(body: bytes, key: str) -> None:
    assert signature.verify(body, signature.sign(body, key), [key]) == key
    with pytest.raises(SignatureError):
        signature.verify(body + b"x", signature.sign(body, key), [key])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", dt.timedelta(seconds=90)),
        ("1h30m", dt.timedelta(minutes=90)),
        ("300ms", dt.timedelta(milliseconds=300)),
        ("2d", dt.timedelta(days=2)),
        ("1w", dt.timedelta(days=7)),
        ("1.5h", dt.timedelta(minutes=90)),
    ],
)
def test_parse_duration_reads_inngest_time_strings(text: str, expected: dt.timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "5", "1x", "h", "1h 30m"])
def test_parse_duration_rejects_non_time_strings(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@given(st.integers(min_value=1, max_value=10**12))
def test_format_duration_round_trips_milliseconds(ms: int) -> None:
    td = dt.timedelta(milliseconds=ms)
    assert parse_duration(format_duration(td)) == td
