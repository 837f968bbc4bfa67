"""RFC 8785 (JCS) bytes of a call body, computed by the C ``json`` encoder whenever that is exact.

The pure-Python ``jcs`` package dominated body building. For str-keyed JSON without floats the
stdlib encoder gives identical bytes; anything it could render differently goes to ``jcs``.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import jcs

__all__ = ["canonical_json", "canonical_text", "utf8_len"]

# Integers up to 2**53 survive JCS's round trip through a double and print as plain digits.
_MAX_EXACT_INT = 2**53
# Below the surrogate range, code-point order (Python's sort) equals UTF-16 order (JCS's sort).
_FIRST_SURROGATE = "\ud800"
# One encoder for every call (``json.dumps`` with options builds a new one each time).
_SORTED: Callable[[object], str] = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False
).encode


def _stdlib_exact(value: object) -> bool:
    """True when ``json.dumps(sort_keys=True)`` renders ``value`` exactly as JCS would."""
    if isinstance(value, str) or value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -_MAX_EXACT_INT <= value <= _MAX_EXACT_INT
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return False
            if not key.isascii() and max(key) >= _FIRST_SURROGATE:
                return False
            if not _stdlib_exact(item):
                return False
        return True
    if isinstance(value, list | tuple):
        return all(_stdlib_exact(item) for item in value)
    return False  # floats (ES6 number formatting) and anything non-JSON


def canonical_json(value: object) -> bytes:
    """The JCS canonical UTF-8 encoding of ``value``."""
    try:
        exact = _stdlib_exact(value)
    except RecursionError:  # absurdly deep nesting: let jcs decide what happens
        exact = False
    if exact:
        return _SORTED(value).encode()
    encoded: bytes = jcs.canonicalize(value)
    return encoded


def canonical_text(value: object) -> str:
    """``canonical_json`` as text, the form the store keeps and call bodies splice."""
    return canonical_json(value).decode()


def utf8_len(text: str) -> int:
    """The UTF-8 size of ``text`` without encoding it when it is ASCII."""
    return len(text) if text.isascii() else len(text.encode())
