"""What happened at each app URL's last sync: synced (with its function count) or why not.

Kept in the engine database (``app_syncs``), so the UI shows an app's sync status and last error
after a restart too. ``record`` says whether the outcome changed, so the live log reports each
new state once instead of on every poll. ``SyncError`` is the one failure a sync can end in,
whether the URL is malformed or nothing answered at it, so every caller (the initial sync, the
poll loop, ``POST /fn/sync``) handles both alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

import httpx

from inngest_mw_dev.store import Store

__all__ = ["AppSync", "SyncError", "SyncLog", "SyncStatus", "url_problem"]


class SyncError(Exception):
    """The app at ``url`` could not be asked to sync; ``malformed``: its URL cannot be used."""

    def __init__(self, url: str, reason: str, *, malformed: bool) -> None:
        super().__init__(f"sync of {url} failed: {reason}")
        self.url, self.reason, self.malformed = url, reason, malformed


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be an app's URL (said for a person), or None when it can."""
    try:
        parts = urlsplit(url)
        port = parts.port  # parsed lazily: an unclosed "[" or a bad port raises only here
        _ = httpx.URL(url).host  # as the sync request will read it: IDNA, control characters
    except (httpx.InvalidURL, ValueError) as exc:
        return f"the URL is malformed ({exc})"
    if parts.scheme not in ("http", "https"):
        return "the URL must start with http:// or https://"
    if not parts.hostname:
        return "the URL has no host"
    if port == 0:
        return "the URL's port must be between 1 and 65535"
    if any(c.isspace() for c in url):
        return "the URL contains whitespace"
    return None


class SyncStatus(StrEnum):
    SYNCED = "synced"
    FAILED = "failed"
    ELSEWHERE = "registered elsewhere"  # the app answered, but registered with another server


@dataclass(frozen=True, slots=True)
class AppSync:
    url: str
    status: SyncStatus
    error: str | None
    app_name: str | None
    functions: int | None
    attempted_at: float


class SyncLog:
    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, url: str) -> AppSync | None:
        rows = self.store.read("SELECT * FROM app_syncs WHERE url = ?", url)
        return _row(rows[0]) if rows else None

    def all(self) -> list[AppSync]:
        return [_row(r) for r in self.store.read("SELECT * FROM app_syncs ORDER BY url")]

    def record(
        self,
        url: str,
        status: SyncStatus,
        now: float,
        *,
        error: str | None = None,
        app_name: str | None = None,
        functions: int | None = None,
    ) -> bool:
        """Store the outcome of a sync of ``url``; True when it differs from the last one."""
        last = self.get(url)
        if status is not SyncStatus.SYNCED and last is not None:
            app_name = app_name or last.app_name
            functions = functions if functions is not None else last.functions
        self.store.write(
            "INSERT OR REPLACE INTO app_syncs VALUES (?,?,?,?,?,?)",
            url,
            status.value,
            error,
            app_name,
            functions,
            now,
        )
        return last is None or (last.status, last.error, last.functions) != (
            status,
            error,
            functions,
        )


def _row(row: object) -> AppSync:
    data = dict(row)  # type: ignore[call-overload]
    return AppSync(
        data["url"],
        SyncStatus(data["status"]),
        data["error"],
        data["app_name"],
        data["functions"],
        data["attempted_at"],
    )
