"""Syncing an app: the registration payload, the out-of-band call to Inngest, the in-band reply."""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING, Any

import httpx

from inngest_mw._const import CAPABILITIES, LANGUAGE, SDK_HEADER, VERSION, Header
from inngest_mw.comm import CommRequest, CommResponse, dumps, respond
from inngest_mw.errors import SignatureError
from inngest_mw.jsonbody import JSONBodyError, parse_json
from inngest_mw.run_state import keys_or_none

if TYPE_CHECKING:
    from inngest_mw.handler import CommHandler

__all__ = ["in_band", "out_of_band", "registration"]


def registration(handler: CommHandler, url: str) -> dict[str, Any]:
    """The sync payload: the app and every function's config."""
    functions: list[dict[str, Any]] = []
    for fn in handler.function_list:
        functions.extend(fn.get_config(url))
    body: dict[str, Any] = {
        "url": url,
        "deployType": "ping",
        "appName": handler.client.app_id,
        "sdk": SDK_HEADER,
        "v": "0.1",
        "framework": handler.framework,
        "capabilities": CAPABILITIES,
        "functions": functions,
    }
    if handler.client.app_version:
        body["appVersion"] = handler.client.app_version
    return body


async def out_of_band(handler: CommHandler, request: CommRequest) -> CommResponse:
    """Register the app with Inngest ourselves, then answer the PUT with the outcome."""
    settings = handler.client.settings
    query = request.query
    url = handler.serve_url(request)
    payload = registration(handler, url)
    register = f"{settings.api_origin}fn/register"
    if query.get("deployId"):
        register += "?" + urllib.parse.urlencode({"deployId": query["deployId"]})
    from inngest_mw.client import loop_http  # client imports this module

    http = await loop_http()  # the loop's one client, kept alive for its next request
    last_error = "no signing key worked"
    for key in keys_or_none(settings.signing_keys):
        headers = handler.client.outbound_headers(key)
        headers[Header.CONTENT_TYPE] = "application/json"
        headers[Header.FRAMEWORK] = handler.framework
        if request.headers.get(Header.SERVER_KIND):
            headers[Header.EXPECTED_SERVER_KIND] = request.headers[Header.SERVER_KIND]
        try:
            response = await http.post(
                register, content=dumps(payload), headers=headers, timeout=30
            )
        except httpx.HTTPError as exc:
            return respond(
                500,
                {"message": f"sync failed: {type(exc).__name__}: {exc}", "modified": False},
            )
        if response.status_code in (401, 403):
            last_error = _refused(response.status_code, key, settings.api_origin)
            continue
        try:
            reply = response.json()
        except ValueError:
            reply = {}
        if response.status_code >= 300:
            error = reply.get("error") if isinstance(reply, dict) else None
            message = error or f"Inngest answered {response.status_code}"
            return respond(
                500,
                {"message": f"sync failed: {message}", "modified": False},
                {Header.SYNC_KIND: "out_of_band"},
            )
        modified = bool(reply.get("modified", False)) if isinstance(reply, dict) else False
        return respond(
            200,
            {"message": "Successfully synced.", "modified": modified},
            {Header.SYNC_KIND: "out_of_band"},
        )
    return respond(500, {"message": f"sync failed: {last_error}", "modified": False})


def _refused(status: int, key: str | None, api_origin: str) -> str:
    """Why Inngest refused the registration, and what to set."""
    if key is None:
        return (
            f"Inngest at {api_origin} refused a sync without a signing key ({status}): set "
            "INNGEST_SIGNING_KEY to the key the server was started with (a self-hosted or cloud "
            "server also expects production mode: leave INNGEST_DEV unset)"
        )
    return (
        f"Inngest at {api_origin} refused the signing key ({status}): set INNGEST_SIGNING_KEY "
        "to the key this server (and environment) uses"
    )


def in_band(handler: CommHandler, request: CommRequest) -> CommResponse:
    """Answer an in-band sync: the registration goes back in the response, signed."""
    try:
        key = handler.verify(request)
    except SignatureError as exc:
        return handler.unauthorized(exc)
    try:
        body = parse_json(request.body or b"null")
    except JSONBodyError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("url"), str):
        return respond(
            400,
            {"code": "invalid_request", "message": 'in-band sync body must be {"url": string}'},
        )
    url = handler.serve_url(request, body["url"])
    payload = registration(handler, url)
    inspection = handler.introspect(
        CommRequest("GET", request.url, request.headers, request.body)
    ).json()
    reply = {
        "app_id": handler.client.app_id,
        "env": handler.client.settings.env,
        "framework": handler.framework,
        "functions": payload["functions"],
        "inspection": inspection,
        "capabilities": CAPABILITIES,
        "sdk_author": "inngest-mw",
        "sdk_language": LANGUAGE,
        "sdk_version": VERSION,
        "sdk": SDK_HEADER,
        "url": url,
    }
    if handler.client.app_version:
        reply["appVersion"] = handler.client.app_version
    return respond(200, reply, {Header.SYNC_KIND: "in_band"}, sign_with=key)
