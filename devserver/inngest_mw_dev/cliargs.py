"""Argument types for the ``inngest-mw`` command line: each checks one kind of value as it is parsed.

A bad value is refused before anything starts, with one sentence that says what to give instead
(argparse prefixes it with the option's name). Nothing here talks to the engine.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from collections.abc import Callable
from typing import Any, NoReturn
from urllib.parse import urlsplit

from inngest_mw_dev.queries import parse_time

__all__ = [
    "OneLineParser",
    "event_key",
    "http_url",
    "json_object",
    "listen_port",
    "poll_seconds",
    "retry_seconds",
    "run_limit",
    "signing_key",
    "text",
    "time_arg",
]

# The real server's keys: ``signkey-<env>-`` then an even number of hex digits.
_SIGNING_KEY = re.compile(r"^(?:signkey-\w+-)?(?:[0-9a-fA-F]{2})+$")
MIN_POLL_SECONDS = 1.0
MAX_RETRY_BASE_SECONDS = 3600.0


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line on stderr (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _number(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"{value!r} is not a finite number")
    return number


def _whole(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None


def listen_port(value: str) -> int:
    """A TCP port to listen on: 1-65535, or 0 for any free port (the engine prints which)."""
    port = _whole(value)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"give a port from 1 to 65535 (or 0 for any free port), not {port}"
        )
    return port


def poll_seconds(value: str) -> float:
    """Seconds between re-syncs of the ``-u`` apps; below one second the apps would be hammered."""
    seconds = _number(value)
    if seconds < MIN_POLL_SECONDS:
        raise argparse.ArgumentTypeError(
            f"give a poll interval of at least {MIN_POLL_SECONDS:g} second, not {value}"
            " (leave it out to sync only at start)"
        )
    return seconds


def retry_seconds(value: str) -> float:
    """The first retry delay: more than 0 (a retry storm) and at most an hour (runs that stall)."""
    seconds = _number(value)
    if not 0 < seconds <= MAX_RETRY_BASE_SECONDS:
        raise argparse.ArgumentTypeError(
            f"give a first retry delay of more than 0 and at most {MAX_RETRY_BASE_SECONDS:g}"
            f" seconds, not {value}"
        )
    return seconds


def run_limit(value: str) -> int:
    limit = _whole(value)
    if not 1 <= limit <= 500:
        raise argparse.ArgumentTypeError(f"give a number of runs from 1 to 500, not {limit}")
    return limit


def signing_key(value: str) -> str:
    """A hex signing key, with or without its ``signkey-<env>-`` prefix (as Inngest shows it)."""
    if not _SIGNING_KEY.match(value.strip()):
        raise argparse.ArgumentTypeError(
            "a signing key is an even number of hex digits, optionally after a"
            " signkey-<env>- prefix (e.g. signkey-test-0123abcd); generate one with"
            " `openssl rand -hex 32`"
        )
    return value.strip()


def event_key(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("an event key cannot be empty")
    return value.strip()


def http_url(value: str) -> str:
    """An ``http://`` or ``https://`` URL with a host, e.g. an app's serve URL or the engine's."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an http(s) URL with a host, e.g. http://127.0.0.1:8000/api/inngest"
        )
    if port == 0:
        raise argparse.ArgumentTypeError(f"{value!r} has port 0; give the port it listens on")
    return value.strip()


def text(what: str) -> Callable[[str], str]:
    """A value that must not be empty (a name, an ID); ``what`` says what to give instead."""

    def check(value: str) -> str:
        if not value.strip():
            raise argparse.ArgumentTypeError(f"give {what}, not an empty string")
        return value.strip()

    return check


def json_value(value: str) -> Any:
    """Any JSON value, e.g. ``'{"ok": true}'`` or ``42`` (quoted for the shell)."""
    try:
        return json.loads(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"not valid JSON ({exc}); quote it, e.g. --data '{{\"ok\": true}}'"
        ) from None


def json_object(value: str) -> dict[str, Any]:
    """Event data: a JSON object, e.g. ``'{"id": 1}'`` (quoted for the shell)."""
    try:
        data = json.loads(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"not valid JSON ({exc}); quote it, e.g. --data '{{\"id\": 1}}'"
        ) from None
    if not isinstance(data, dict):
        raise argparse.ArgumentTypeError(
            f"give a JSON object, e.g. --data '{{\"id\": 1}}', not {value}"
        )
    return data


def time_arg(value: str) -> str:
    """A time the engine understands (checked here, sent as typed so ages stay relative)."""
    try:
        parse_time(value, time.time())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value.strip()
