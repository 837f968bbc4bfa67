"""Request bodies from peers: read under a size cap as they arrive, then parsed depth-safely.

Starlette's ``Request.body()`` buffers whatever a client sends. Here a declared
``Content-Length`` over the cap is refused before a byte of the body is read, and a body sent
without one (chunked) is refused as soon as it passes the cap, so one request can make the
engine hold at most its route's limit. Every failure is a ``BodyError``: an ``HTTPException``
whose status (413 or 400) and message reach the client as the API's usual JSON error.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request

from inngest_mw.jsonbody import JSONBodyError, parse_json
from inngest_mw_dev.limits import MAX_JSON_DEPTH, nested_too_deeply

__all__ = ["BodyError", "parse_body", "read_body", "read_json", "too_large"]


class BodyError(HTTPException):
    """A body the engine refuses; ``detail`` names the reason (and the limit, if one was hit)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.message = message


def too_large(what: str, size: int | None, limit: int) -> BodyError:
    """The 413 for ``what`` of ``size`` bytes (None: not known yet) over ``limit`` bytes."""
    actual = "" if size is None else f" ({size:,} bytes)"
    return BodyError(413, f"{what} is too large{actual}: the limit is {_bytes(limit)}")


def _bytes(limit: int) -> str:
    mib, kib = divmod(limit, 1024 * 1024)
    unit = f"{mib} MiB" if not kib else f"{limit // 1024} KiB"
    return f"{limit:,} bytes ({unit})"


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body of ``request``, refused with a 413 once it is known to exceed ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise too_large("request body", int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large("request body", None, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_body(raw: bytes) -> Any:
    """``raw`` as JSON; a 400 when it is not JSON or nests more than ``MAX_JSON_DEPTH`` levels."""
    try:
        value = parse_json(raw)
    except JSONBodyError as exc:
        raise BodyError(400, f"request body is {_explain(exc.reason)}") from None
    if nested_too_deeply(value, raw):
        raise BodyError(400, f"request body is {_explain('nested too deeply')}")
    return value


def _explain(reason: str) -> str:
    if reason == "nested too deeply":
        return f"nested too deeply: JSON may nest at most {MAX_JSON_DEPTH} levels"
    return reason


async def read_json(request: Request, limit: int) -> Any:
    """``read_body`` then ``parse_body``."""
    return parse_body(await read_body(request, limit))
