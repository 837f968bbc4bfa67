"""The connect protocol's framing and constants, shared by the worker and the engine's gateway.

Every WebSocket frame is a binary ``ConnectMessage{kind, payload}`` whose payload is the kind's
own message, encoded (or empty). Intervals travel as Go duration strings.
"""

from __future__ import annotations

import re
from typing import Final, TypeVar

from google.protobuf.message import DecodeError, Message

from inngest_mw_connect import connect_pb2 as pb

__all__ = [
    "FLUSH_PATH",
    "MAX_MESSAGE_BYTES",
    "START_PATH",
    "SUBPROTOCOL",
    "DecodeError",
    "ProtocolError",
    "decode",
    "encode",
    "format_duration",
    "kind_name",
    "parse_duration",
    "payload",
]

SUBPROTOCOL: Final = "v0.connect.inngest.com"
START_PATH: Final = "v0/connect/start"
FLUSH_PATH: Final = "v0/connect/flush"
GATEWAY_PATH: Final = "/v0/connect"
#: The gateway's read limit (the server's largest SDK response).
MAX_MESSAGE_BYTES: Final = 8 * 1024 * 1024
#: What the worker says when it closes the connection for good (close code 1000).
WORKER_SHUTDOWN: Final = "WORKER_SHUTDOWN"

M = TypeVar("M", bound=Message)


class ProtocolError(Exception):
    """A frame that is not the protocol: undecodable, or not the kind expected."""


def encode(kind: pb.GatewayMessageType.ValueType, message: Message | bytes | None = None) -> bytes:
    """One frame: ``kind`` with ``message`` (a message, or one already encoded) as its payload."""
    if message is None:
        body = b""
    elif isinstance(message, bytes):
        body = message
    else:
        body = message.SerializeToString()
    return pb.ConnectMessage(kind=kind, payload=body).SerializeToString()


def decode(frame: bytes | str) -> pb.ConnectMessage:
    """The frame's envelope; a text frame or bad bytes raise ``ProtocolError``."""
    if isinstance(frame, str):
        raise ProtocolError("connect frames are binary, got a text frame")
    try:
        return pb.ConnectMessage.FromString(frame)
    except DecodeError as exc:
        raise ProtocolError(f"undecodable frame: {exc}") from exc


def payload(message: pb.ConnectMessage, cls: type[M]) -> M:
    """The envelope's payload as ``cls``; bad bytes raise ``ProtocolError`` naming the kind."""
    try:
        return cls.FromString(message.payload)
    except DecodeError as exc:
        raise ProtocolError(f"undecodable {kind_name(message.kind)} payload: {exc}") from exc


def kind_name(kind: int) -> str:
    try:
        return pb.GatewayMessageType.Name(pb.GatewayMessageType.ValueType(kind))
    except ValueError:
        return f"kind {kind}"


_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """A Go duration string (``"10s"``, ``"1m30s"``, ``"500ms"``, ``"0s"``) in seconds."""
    value = text.strip()
    if value in ("0", ""):
        return 0.0
    sign = -1.0 if value.startswith("-") else 1.0
    value = value.lstrip("+-")
    total, pos = 0.0, 0
    for match in _PART.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(value) or pos == 0:
        raise ValueError(f"not a duration: {text!r}")
    return sign * total


def format_duration(seconds: float) -> str:
    """Seconds as a Go duration string, in whole milliseconds when not whole seconds."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"
