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

__all__ = ["CommRequest", "CommResponse", "dumps", "parse_query", "respond"]


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
        return parse_query(self.url)


@dataclass(slots=True)
class CommResponse:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


_UNUSUAL = frozenset("\t\r\n")


def parse_query(url: str) -> dict[str, str]:
    """``url``'s query as ``dict(parse_qsl(urlsplit(url).query))`` gives it (blank values
    dropped, the last of a repeated name kept), without the general parser's cost on every call.
    A URL with the characters ``urlsplit`` strips or removes takes the general path."""
    if _UNUSUAL.isdisjoint(url) and url[:1] > " " and url[-1:] > " ":
        query = url.partition("#")[0].partition("?")[2]
        out: dict[str, str] = {}
        for pair in query.split("&"):
            name, _, value = pair.partition("=")
            if not value:
                continue
            if "%" in pair or "+" in pair:
                name, value = _unquote(name), _unquote(value)
            out[name] = value
        return out
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def _unquote(text: str) -> str:
    return urllib.parse.unquote(text.replace("+", " "))


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dumps(value: Any) -> bytes:
    """Compact JSON, UTF-8 (one encoder for every call: ``json.dumps`` with options makes one
    per call)."""
    return _ENCODER.encode(value).encode()


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
