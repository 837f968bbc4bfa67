"""The handler's own fast parsers give exactly what the general ones would."""

from __future__ import annotations

import json
import urllib.parse

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from inngest_mw.comm import dumps, parse_query
from inngest_mw.jsonbody import JSONBodyError, parse_json

_QUERY_CHARS = st.sampled_from([*"ab=&%+#?/ \t\n~é", "%41", "%zz", "%2B", "%C3%A9", "%FF"])


def _general(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


@given(
    prefix=st.sampled_from(
        ["http://h/api?", "https://h:1/p/q?", "/api?", "?", "http://h/a#f?", ""]
    ),
    query=st.lists(_QUERY_CHARS, max_size=30).map("".join),
)
def test_query_parsing_matches_parse_qsl_of_urlsplit(prefix: str, query: str) -> None:
    url = prefix + query
    try:
        expected = _general(url)
    except ValueError:  # urlsplit refuses it (a bracket in the host); ours need not
        return
    assert parse_query(url) == expected


@pytest.mark.parametrize(
    ("url", "query"),
    [
        ("http://h/api/inngest?fnId=app-fn&stepId=step", {"fnId": "app-fn", "stepId": "step"}),
        ("http://h/api?a=1&a=2&b=&c", {"a": "2"}),
        ("http://h/api?x=%41+b#frag?z=3", {"x": "A b"}),
        (" http://h/api?probe=trust", {"probe": "trust"}),
        ("http://h/api?fn\tId=x", {"fnId": "x"}),
    ],
)
def test_query_examples(url: str, query: dict[str, str]) -> None:
    assert parse_query(url) == query == _general(url)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(_JSON)
def test_body_parsing_and_encoding_match_the_json_module(value: object) -> None:
    text = json.dumps({"v": value}, ensure_ascii=False)
    assert parse_json(text.encode()) == json.loads(text)
    assert dumps(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


# Any code point, lone surrogates included (which only an escaped body can carry).
_ANY_TEXT = st.text(st.characters(exclude_categories=()))
_JSON_ANY = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_ANY_TEXT, inner, max_size=4),
    max_leaves=20,
)


@given(_JSON_ANY, st.booleans())
def test_body_parsing_reads_every_value_as_the_json_module_does(
    value: object, ascii_only: bool
) -> None:
    text = json.dumps({"v": value}, ensure_ascii=ascii_only)
    try:
        body = text.encode()
    except UnicodeEncodeError:  # a lone surrogate only travels escaped, in valid UTF-8
        body = json.dumps({"v": value}).encode()
    # repr, so that NaN, -0.0 and 1 vs 1.0 must match too
    assert repr(parse_json(body)) == repr(json.loads(body))


_FRAGMENTS = st.sampled_from(
    [
        *(bytes([c]) for c in b'{}[]:," 0123456789.eE+-'),
        *(b"\\", b"true", b"null", b"NaN", b"Infinity", b"\\ud800", b"\\u00e9"),
        *("\u00e9".encode(), b"\xef\xbb\xbf"),
    ]
)


@given(st.lists(_FRAGMENTS | st.binary(max_size=3), max_size=24))
@example([b'{"a":"', b"\xed\xa0\x80", b'"}'])  # a surrogate's raw bytes: in an object too
@example([b'["', b"\xed\xa0\x80", b'"]'])
def test_body_parsing_accepts_and_refuses_what_the_json_module_does(parts: list[bytes]) -> None:
    body = b"".join(parts)
    try:
        expected = repr(json.loads(body))
    except (ValueError, RecursionError):
        with pytest.raises(JSONBodyError):
            parse_json(body)
        return
    assert repr(parse_json(body)) == expected


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{\xff}", "not valid JSON"),
        (b'{"a": 1', "not valid JSON"),
        (b'{"a":' * 100_000, "nested too deeply"),
        (b"[" * 100_000, "nested too deeply"),
        (b'\xef\xbb\xbf{"a": 1}', None),  # a UTF-8 byte order mark, as json.loads accepts it
        ('{"a": 1}'.encode("utf-16"), None),
    ],
)
def test_bodies_the_fast_path_does_not_take_are_parsed_as_before(
    body: bytes, reason: str | None
) -> None:
    if reason is None:
        assert parse_json(body) == json.loads(body) == {"a": 1}
        return
    with pytest.raises(JSONBodyError) as caught:
        parse_json(body)
    assert caught.value.reason == reason
