"""``step.fetch``: an HTTP request the server makes for the run, and the response it memoizes.

The app only reports the request (a ``Gateway`` opcode); the server performs it, so it is durable
(retried on transport errors, never repeated once answered) and costs the app no time. Any HTTP
status is an answer; only a request that got none fails the step.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import urlsplit

__all__ = ["FetchBody", "FetchResponse", "fetch_options"]

FetchBody: TypeAlias = str | bytes | Mapping[str, Any] | list[Any] | None
"""A string or UTF-8 bytes are sent as they are; a dict or list is sent as JSON."""

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class FetchResponse:
    """What ``step.fetch`` returns: the answer the server got."""

    status: int
    headers: dict[str, str]
    body: str
    url: str

    @property
    def ok(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body parsed as JSON (``ValueError`` if it is not JSON)."""
        return json.loads(self.body)

    @classmethod
    def from_memo(cls, data: object) -> FetchResponse:
        """The memoized ``{url, headers, body, status_code}`` the server stores for the step."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a fetch step's memo is not an object: {data!r:.200}")
        headers = data.get("headers")
        return cls(
            status=int(data.get("status_code") or 0),
            headers={str(k): str(v) for k, v in headers.items()}
            if isinstance(headers, Mapping)
            else {},
            body="" if data.get("body") is None else str(data.get("body")),
            url=str(data.get("url") or ""),
        )


def fetch_options(
    url: str,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: FetchBody = None,
) -> dict[str, Any]:
    """The ``Gateway`` opcode's options; ``ValueError`` naming what is wrong with the request."""
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"fetch: url must be an http:// or https:// URL, got {url!r:.200}")
    if not urlsplit(url).hostname:
        raise ValueError(f"fetch: url has no host: {url!r:.200}")
    verb = method.upper() if isinstance(method, str) else ""
    if verb not in _METHODS:
        raise ValueError(f"fetch: method must be one of {', '.join(sorted(_METHODS))}")
    sent = {str(k): str(v) for k, v in (headers or {}).items()}
    opts: dict[str, Any] = {"url": url, "method": verb, "headers": sent}
    if body is None:
        return opts
    if isinstance(body, bytes):
        try:
            opts["body"] = body.decode()
        except UnicodeDecodeError:
            raise ValueError(
                "fetch: body bytes must be UTF-8 text (the server sends a string)"
            ) from None
    elif isinstance(body, str):
        opts["body"] = body
    else:
        opts["body"] = json.dumps(body, separators=(",", ":"))
        if not any(k.lower() == "content-type" for k in sent):
            sent["Content-Type"] = "application/json"
    return opts
