"""Parse a JSON body from an untrusted peer, once, for the SDK and the embedded engine alike.

``json.loads`` fails in two ways that must both become a 4xx with a reason: the bytes are not
JSON (``ValueError``), or they nest so deeply that the decoder runs out of recursion
(``RecursionError``, which is not a ``ValueError`` and would otherwise surface as a 500).
"""

from __future__ import annotations

import json
from typing import Any


class JSONBodyError(ValueError):
    """The body could not be parsed; ``reason`` says why in a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_decode = json.JSONDecoder().decode


def parse_json(body: bytes | str) -> Any:
    """Parse ``body``, raising ``JSONBodyError`` ("not valid JSON" / "nested too deeply")."""
    try:
        if type(body) is bytes and body[:1] == b"{":  # the usual body: UTF-8 text of an object
            return _decode(body.decode())
        return json.loads(body)
    except RecursionError:
        raise JSONBodyError("nested too deeply") from None
    except ValueError:
        raise JSONBodyError("not valid JSON") from None
