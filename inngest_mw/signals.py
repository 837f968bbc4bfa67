"""Signals: a run waits for a named signal (``step.wait_for_signal``) and anyone with the signing
key resumes exactly that run (``client.send_signal``, ``POST /v1/signals``).

A signal name is unique among waiting runs of an environment: a second run waiting on the same
name fails its step, unless it waits with ``on_conflict="replace"``, which takes the name over.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import httpx

from inngest_mw.durations import DurationLike, format_duration, to_timedelta
from inngest_mw.errors import SendSignalError, SignalNotFoundError

__all__ = ["OnConflict", "Signal", "signal_body", "signal_options", "signal_outcome"]

OnConflict: TypeAlias = Literal["fail", "replace"]


@dataclass(frozen=True, slots=True)
class Signal:
    """What ``step.wait_for_signal`` returns when the signal came: its name and its data."""

    signal: str
    data: Any

    @classmethod
    def from_memo(cls, data: object) -> Signal | None:
        """The memoized ``{signal, data}``; ``None`` for a wait that timed out."""
        if data is None:
            return None
        if not isinstance(data, Mapping):
            raise ValueError(f"a signal step's memo is not an object: {data!r:.200}")
        return cls(str(data.get("signal", "")), data.get("data"))


def signal_options(signal: str, timeout: DurationLike, on_conflict: OnConflict) -> dict[str, Any]:
    """The ``WaitForSignal`` opcode's options."""
    if not isinstance(signal, str) or not signal:
        raise ValueError("wait_for_signal: signal must be a non-empty string")
    if on_conflict not in ("fail", "replace"):
        raise ValueError("wait_for_signal: on_conflict must be 'fail' or 'replace'")
    return {
        "signal": signal,
        "timeout": format_duration(to_timedelta(timeout)),
        "conflict": on_conflict,
    }


def signal_body(signal: str, data: object) -> bytes:
    """The ``POST /v1/signals`` body."""
    if not isinstance(signal, str) or not signal:
        raise ValueError("send_signal: signal must be a non-empty string")
    return json.dumps({"signal": signal, "data": data}, separators=(",", ":")).encode()


def signal_outcome(signal: str, response: httpx.Response) -> str | None:
    """The resumed run's ID; ``None`` to try again (5xx); raises for a final answer."""
    status = response.status_code
    if status >= 500:
        return None
    try:
        body = response.json()
    except ValueError:
        body = None
    if status == 404:
        raise SignalNotFoundError(
            f"no run is waiting for signal {signal!r} (it may have timed out, or been sent already)"
        )
    if status != 200:
        reason = body.get("error") if isinstance(body, dict) else None
        raise SendSignalError(
            f"the API refused signal {signal!r} ({status}): {reason or response.text[:200]}"
        )
    data = body.get("data") if isinstance(body, dict) else None
    run_id = data.get("run_id") if isinstance(data, dict) else None
    if not isinstance(run_id, str):
        raise SendSignalError(f"the API accepted signal {signal!r} but named no run")
    return run_id
