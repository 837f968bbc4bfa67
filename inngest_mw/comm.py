"""The request and response an adapter exchanges with the handler, and how every response is built.

Adapters turn a framework request into a ``CommRequest`` (raw body bytes, lower-cased headers) and a
``CommResponse`` back. Every response carries ``X-Inngest-SDK`` and ``X-Inngest-Req-Version``;
responses to signed requests are signed.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from inngest_mw import signature
from inngest_mw._const import REQ_VERSION, SDK_HEADER, Header

__all__ = ["CommRequest", "CommResponse", "dumps", "respond"]


@dataclass(slots=True)
class CommRequest:
    """A framework request, normalized. ``raw`` is the framework's own request object."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes = b""
    raw: object = None

    @property
    def query(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.url).query))


@dataclass(slots=True)
class CommResponse:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def respond(
    status: int,
    body: Any,
    headers: Mapping[str, str] | None = None,
    *,
    sign_with: str | None = None,
    raw: bytes | None = None,
) -> CommResponse:
    """A JSON response with the SDK headers; signed with ``sign_with`` when given."""
    data = raw if raw is not None else dumps(body)
    out = {
        Header.CONTENT_TYPE: "application/json",
        Header.SDK: SDK_HEADER,
        Header.REQ_VERSION: REQ_VERSION,
    }
    if headers:
        out.update(headers)
    if sign_with:
        out[Header.SIGNATURE] = signature.sign(data, sign_with)
    return CommResponse(status, data, out)
