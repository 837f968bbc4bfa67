"""Dev vs cloud mode and every origin and key, resolved once from arguments and the environment.

Precedence: explicit argument, then the specific variable (``INNGEST_API_BASE_URL``), then
``INNGEST_BASE_URL``, then an origin given in ``INNGEST_DEV``, then the mode's default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from inngest_mw._const import CLOUD_API_ORIGIN, CLOUD_EVENT_ORIGIN, DEV_ORIGIN

__all__ = ["Mode", "Settings", "resolve"]


class Mode:
    CLOUD = "cloud"
    DEV = "dev"


@dataclass(frozen=True, slots=True)
class Settings:
    mode: str
    api_origin: str
    event_api_origin: str
    signing_key: str | None
    signing_key_fallback: str | None
    event_key: str | None
    env: str | None
    serve_origin: str | None
    serve_path: str | None

    @property
    def is_dev(self) -> bool:
        return self.mode == Mode.DEV

    @property
    def signing_keys(self) -> list[str]:
        return [k for k in (self.signing_key, self.signing_key_fallback) if k]


def _dev_flag(value: str | None) -> tuple[bool, str | None]:
    """``INNGEST_DEV``: unset/false/0 -> cloud; true/1 -> dev; anything else -> dev at that origin."""
    if value is None:
        return False, None
    text = value.strip()
    if text.lower() in ("", "0", "false"):
        return False, None
    if text.lower() in ("1", "true"):
        return True, None
    return True, text


def _origin(url: str, dev: bool) -> str:
    url = url.strip()
    if "://" not in url:
        url = ("http://" if dev else "https://") + url
    return url if url.endswith("/") else url + "/"


def resolve(
    *,
    is_production: bool | None,
    api_base_url: str | None,
    event_api_base_url: str | None,
    signing_key: str | None,
    event_key: str | None,
    env: str | None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    e = os.environ if environ is None else environ
    dev, dev_origin = _dev_flag(e.get("INNGEST_DEV"))
    if is_production is not None:
        dev = not is_production
    base = e.get("INNGEST_BASE_URL") or (dev_origin if dev else None)
    default = DEV_ORIGIN if dev else None
    api = api_base_url or e.get("INNGEST_API_BASE_URL") or base or default or CLOUD_API_ORIGIN
    events = (
        event_api_base_url
        or e.get("INNGEST_EVENT_API_BASE_URL")
        or base
        or default
        or CLOUD_EVENT_ORIGIN
    )
    return Settings(
        mode=Mode.DEV if dev else Mode.CLOUD,
        api_origin=_origin(api, dev),
        event_api_origin=_origin(events, dev),
        signing_key=signing_key or e.get("INNGEST_SIGNING_KEY") or None,
        signing_key_fallback=e.get("INNGEST_SIGNING_KEY_FALLBACK") or None,
        event_key=event_key or e.get("INNGEST_EVENT_KEY") or None,
        env=env or e.get("INNGEST_ENV") or None,
        serve_origin=e.get("INNGEST_SERVE_ORIGIN") or None,
        serve_path=e.get("INNGEST_SERVE_PATH") or None,
    )
