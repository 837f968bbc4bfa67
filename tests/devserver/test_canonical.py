"""The fast canonical encoder must produce exactly the bytes of the ``jcs`` package (RFC 8785)."""

from __future__ import annotations

import random
from typing import Any

import jcs
import pytest
from inngest_mw_dev.canonical import canonical_json

# Characters that stress escaping and key order: controls, quotes, DEL, Latin-1, BMP above the
# surrogates (sorts after astral chars in UTF-16) and astral (emoji).
_CHARS = [
    "a",
    "Z",
    "0",
    " ",
    '"',
    "\\",
    "\n",
    "\t",
    "\x00",
    "\x1f",
    "\x7f",
    "é",
    "\u2028",
    "\ue000",
    "\uffff",
    "😀",
    "𝄞",
    "/",
    "<",
]


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(_CHARS) for _ in range(rng.randint(0, 6)))


def _value(rng: random.Random, depth: int, floats: bool) -> Any:
    kinds = ["str", "int", "bool", "null"] + (["float"] if floats else [])
    if depth < 4:
        kinds += ["dict", "list"] * 2
    kind = rng.choice(kinds)
    if kind == "str":
        return _text(rng)
    if kind == "int":
        return rng.choice([0, -1, 7, 2**31, -(2**53), 2**53, 2**53 + 1, 10**21, -(10**25)])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "float":
        return rng.choice([0.5, -0.0, 1e21, 1e-7, 123456789.125, 5e-324, 1.7976931348623157e308])
    if kind == "list":
        return [_value(rng, depth + 1, floats) for _ in range(rng.randint(0, 4))]
    return {_text(rng): _value(rng, depth + 1, floats) for _ in range(rng.randint(0, 5))}


@pytest.mark.parametrize("floats", [False, True])
def test_matches_jcs_on_random_json(floats: bool) -> None:
    rng = random.Random(8785)
    for _ in range(3000):
        value = _value(rng, 0, floats)
        assert canonical_json(value) == jcs.canonicalize(value), value


def test_key_order_follows_utf16_not_code_points() -> None:
    value = {"\uffff": 1, "😀": 2, "a": 3}
    assert canonical_json(value) == jcs.canonicalize(value)
    assert canonical_json(value).decode().index("😀") < canonical_json(value).decode().index(
        "\uffff"
    )


def test_call_body_shape_is_identical() -> None:
    body: dict[str, Any] = {
        "event": {"name": "shop/checkout", "data": {"n": 3, "price": 4.5, "tags": ["x"]}, "ts": 1},
        "steps": {"abc": {"data": {"ok": True, "note": "é\n"}}, "def": {"data": None}},
        "ctx": {"run_id": "01J", "attempt": 0, "stack": {"stack": ["abc", "def"], "current": 2}},
        "version": 2,
        "use_api": False,
    }
    assert canonical_json(body) == jcs.canonicalize(body)
    body["event"]["data"].pop("price")
    assert canonical_json(body) == jcs.canonicalize(body)


def test_lone_surrogate_fails_like_jcs() -> None:
    value = {"s": "\ud800"}
    with pytest.raises(UnicodeEncodeError):
        jcs.canonicalize(value)
    with pytest.raises(UnicodeEncodeError):
        canonical_json(value)
