"""Requests the engine makes on a run's behalf: ``step.fetch`` (``Gateway``) and ``step.ai.infer``
(``AIGateway``), as the Inngest server makes them (``pkg/util/gateway``, ``pkg/util/aigateway``).

A fetch succeeds with any HTTP status and fails only when no answer came; an AI request also fails
on a status above 299. The answer becomes the step's memo: ``{url, headers, body, status_code}``
for a fetch, the provider's JSON for an AI request. A failure is retried like a step (the machine
decides), and its last one is memoized as the step's error.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from inngest_mw.jsonbody import JSONBodyError, parse_json
from inngest_mw_dev.kinds import Opcode
from inngest_mw_dev.limits import MAX_STEP_OUTPUT_BYTES

__all__ = ["GatewayCall", "GatewayDone", "perform", "request_problem", "summary"]

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_FORMATS = frozenset({"openai-chat", "anthropic", "gemini", "bedrock"})


@dataclass(frozen=True, slots=True)
class GatewayCall:
    """One leased gateway item: the request to make for a run's step."""

    run_id: str
    step: str
    opcode: Opcode
    request: dict[str, Any]


@dataclass(frozen=True, slots=True)
class GatewayDone:
    """What a gateway request produced: the step's memo, and whether that is a failure (and if
    trying again could help)."""

    memo: dict[str, Any]
    failed: bool = False
    retriable: bool = True
    status: int | None = None
    duration_ms: int = 0

    @property
    def reason(self) -> str:
        error = self.memo.get("error") or {}
        return f"{error.get('name', 'Error')}: {error.get('message', '')}"


def request_problem(opcode: Opcode, opts: object) -> str | None:
    """Why the op's options are not a request this engine can make; None when they are."""
    if not isinstance(opts, Mapping):
        return "opts must be an object"
    url = opts.get("url")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        return "opts.url must be an http(s) URL"
    try:
        host = urlsplit(url).hostname
    except ValueError as exc:
        return f"opts.url is malformed: {exc}"
    if not host:
        return "opts.url has no host"
    headers = opts.get("headers")
    if headers is not None and not (
        isinstance(headers, Mapping) and all(isinstance(v, str) for v in headers.values())
    ):
        return "opts.headers must map names to strings"
    if opcode == Opcode.AI_GATEWAY:
        if opts.get("format", "openai-chat") not in _FORMATS:
            return f"opts.format must be one of {', '.join(sorted(_FORMATS))}"
        if not isinstance(opts.get("body"), Mapping):
            return "opts.body must be an object (the provider's request)"
        return None
    method = opts.get("method") or "POST"  # the server's default when an SDK sends none
    if not isinstance(method, str) or method.upper() not in _METHODS:
        return f"opts.method must be one of {', '.join(sorted(_METHODS))}"
    body = opts.get("body")
    if body is not None and not isinstance(body, str):
        return "opts.body must be a string"
    return None


def summary(opcode: Opcode, opts: Mapping[str, Any]) -> dict[str, Any]:
    """What history shows of a request: never its body, headers or key."""
    if opcode == Opcode.AI_GATEWAY:
        return {"format": opts.get("format", "openai-chat"), "url": opts.get("url")}
    return {"method": str(opts.get("method") or "POST").upper(), "url": opts.get("url")}


async def perform(http: httpx.AsyncClient, call: GatewayCall, timeout: float) -> GatewayDone:
    """Make the request; never raises for anything the remote end does."""
    started = time.monotonic()
    if call.opcode == Opcode.AI_GATEWAY:
        done = await _infer(http, call.request, timeout)
    else:
        done = await _fetch(http, call.request, timeout)
    return GatewayDone(
        done.memo,
        done.failed,
        done.retriable,
        done.status,
        round((time.monotonic() - started) * 1000),
    )


async def _send(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    headers: dict[str, str],
    content: bytes | None,
    timeout: float,
    *,
    follow: bool,
) -> tuple[httpx.Response, bytes]:
    """The response and its body, read up to the step output limit (``_TooLargeError`` past it)."""
    async with http.stream(
        method, url, headers=headers, content=content, timeout=timeout, follow_redirects=follow
    ) as response:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > MAX_STEP_OUTPUT_BYTES:
                raise _TooLargeError(response.status_code)
            chunks.append(chunk)
        return response, b"".join(chunks)


class _TooLargeError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


_LIMIT_TEXT = f"the answer is larger than the step output limit of {MAX_STEP_OUTPUT_BYTES:,} bytes"


def _failure(
    name: str, message: str, *, retriable: bool, status: int | None = None, **extra: Any
) -> GatewayDone:
    error = {"name": name, "message": message, **extra}
    return GatewayDone({"error": error}, True, retriable, status)


async def _fetch(http: httpx.AsyncClient, opts: Mapping[str, Any], timeout: float) -> GatewayDone:
    method = str(opts.get("method") or "POST").upper()
    headers = dict(opts.get("headers") or {})
    body = opts.get("body")
    content = body.encode() if isinstance(body, str) else None
    try:
        response, raw = await _send(
            http, method, str(opts["url"]), headers, content, timeout, follow=True
        )
    except _TooLargeError as exc:
        return _failure(
            "GatewayError",
            f"Error making gateway request: {_LIMIT_TEXT}",
            retriable=False,
            status=exc.status,
        )
    except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as exc:
        return _failure(
            "GatewayError",
            f"Error making gateway request: {type(exc).__name__}: {exc}",
            retriable=True,
        )
    joined: dict[str, str] = {}
    for name in response.headers:
        joined[_title(name)] = ",".join(response.headers.get_list(name))
    data = {
        "url": str(response.url),
        "headers": joined,
        "body": raw.decode(errors="replace"),
        "status_code": response.status_code,
    }
    return GatewayDone({"data": data}, status=response.status_code)


async def _infer(http: httpx.AsyncClient, opts: Mapping[str, Any], timeout: float) -> GatewayDone:
    fmt = str(opts.get("format") or "openai-chat")
    url = str(opts["url"])
    key = str(opts.get("auth_key") or "")
    headers = {"Content-Type": "application/json"}
    if key:
        if fmt == "anthropic":
            headers["x-api-key"] = key
        elif fmt == "gemini":
            url += ("&" if urlsplit(url).query else "?") + "key=" + key
        elif fmt == "bedrock":
            headers["Authorization"] = key
        else:
            headers["Authorization"] = f"Bearer {key}"
    headers.update(opts.get("headers") or {})  # after: they may add, e.g., anthropic-version
    content = json.dumps(opts["body"], separators=(",", ":")).encode()
    try:
        response, raw = await _send(http, "POST", url, headers, content, timeout, follow=False)
    except _TooLargeError as exc:
        return _failure(
            "AIGatewayError",
            f"Error making AI request: {_LIMIT_TEXT}",
            retriable=False,
            status=exc.status,
        )
    except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as exc:
        return _failure(
            "AIGatewayError",
            f"Error making AI request: {type(exc).__name__}: {exc}",
            retriable=True,
        )
    text = raw.decode(errors="replace")
    try:
        answer: Any = parse_json(raw) if raw else None
    except JSONBodyError:
        answer = None
    if response.status_code > 299:
        return _failure(
            "AIGatewayError",
            f"Error making AI request: the provider answered {response.status_code}",
            retriable=True,
            status=response.status_code,
            data=answer if answer is not None else {"error": text[:2000] or "no body"},
            stack=text[:2000],
        )
    if answer is None:
        return _failure(
            "AIGatewayError",
            f"Error making AI request: the provider's answer is not JSON: {text[:200]!r}",
            retriable=True,
            status=response.status_code,
        )
    return GatewayDone({"data": answer}, status=response.status_code)


def _title(name: str) -> str:
    """``content-type`` as Go's canonical header form, ``Content-Type``."""
    return "-".join(part[:1].upper() + part[1:] for part in name.split("-"))
