"""The engine's web UI at ``/``: server-rendered Jinja2 pages and a little plain JavaScript.

Every page renders the dictionaries the JSON API returns (``ApiData``), and every action
(send, invoke, cancel, rerun, resync) is a ``fetch`` of that API from the browser, so the UI can
see and do exactly what a script can. Templates and assets ship inside this package: the UI works
with no network.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from inngest_mw_dev.bodies import read_body
from inngest_mw_dev.control_api import ApiData, Handler, ParamError
from inngest_mw_dev.hooks_view import format_us
from inngest_mw_dev.queries import RUN_STATUSES, RefError
from inngest_mw_dev.render import describe, format_ms, preview
from inngest_mw_dev.stacks import read_error
from inngest_mw_dev.uiauth import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    SIGN_IN_REASON,
    Denied,
    UiAuth,
)

if TYPE_CHECKING:
    import jinja2

__all__ = ["ui_routes"]

_HERE = Path(__file__).resolve().parent
_RANGES = [
    ("", "any time"),
    ("15m", "last 15 minutes"),
    ("1h", "last hour"),
    ("24h", "last 24 hours"),
    ("7d", "last 7 days"),
]
_EXAMPLE_EVENT = (
    "shop/checkout",
    {"id": "A-1002", "sku": "tea-earl-grey", "qty": 1, "price": 4.5, "email": "ada@example.com"},
)


def _environment() -> jinja2.Environment:
    import jinja2  # loaded with the first page, so an engine nobody browses never loads it

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pretty"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False, default=str)
    env.filters["compact"] = lambda v: preview(v, 120)
    env.filters["duration"] = format_ms
    env.filters["micros"] = format_us
    env.filters["headline"] = lambda e: read_error(e).headline
    return env


def _clock(iso: str | None) -> str:
    if not iso:
        return ""
    return dt.datetime.fromisoformat(iso).astimezone().strftime("%H:%M:%S.%f")[:-3]


class _Pages:
    def __init__(self, data: ApiData, signs_in: bool = False) -> None:
        self.data = data
        self.db = data.engine.db
        self.signs_in = signs_in
        """Whether browsers sign in (an engine with a signing key): pages offer to sign out."""
        self._env: jinja2.Environment | None = None

    def render(self, template: str, page: str, status_code: int = 200, **context: Any) -> Response:
        if self._env is None:
            self._env = _environment()
        html = self._env.get_template(template).render(page=page, signs_in=self.signs_in, **context)
        return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})

    def guard(self, handler: Handler) -> Handler:
        """A page whose reference or parameters cannot be used says so, as a page (4xx)."""

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except RefError as exc:
                return self.render(
                    "error.html", "error", exc.status, heading="Not found", message=exc.message
                )
            except (ParamError, ValueError) as exc:
                return self.render(
                    "error.html", "error", 400, heading="Cannot show that", message=str(exc)
                )

        return guarded

    async def runs(self, request: Request) -> Response:
        params = {k: v for k, v in request.query_params.items() if v}
        params.setdefault("limit", "50")
        body = await self.db(self.data.runs, params)

        def query(**changes: str | None) -> str:
            merged = {k: v for k, v in {**params, **changes}.items() if v and k != "limit"}
            return urlencode(merged)

        return self.render(
            "runs.html",
            "runs",
            runs=body["data"],
            next_cursor=body["metadata"]["next_cursor"],
            params={
                "status": params.get("status", ""),
                "function": params.get("function", ""),
                "since": params.get("since", ""),
                "cursor": params.get("cursor", ""),
            },
            statuses=RUN_STATUSES,
            functions=sorted(self.data.engine.machine.functions),
            ranges=_RANGES,
            query=query,
        )

    async def run(self, request: Request) -> Response:
        run = (await self.db(self.data.run, request.path_params["run_id"]))["data"]
        history = []
        for entry in run["history"]:
            detail = {k: v for k, v in entry.items() if k not in ("at", "type", "step")}
            history.append(
                {"at": _clock(entry["at"]), "text": describe(entry["type"], entry["step"], detail)}
            )
        lineage = run["rerun_of"]
        return self.render(
            "run.html",
            "run",
            run=run,
            history=history,
            replayed=set(lineage["replayed"]) if lineage else set(),
            step_names={s["id"]: s["name"] for s in run["steps"]},
            signals=_awaited_signals(run),
        )

    async def events(self, request: Request) -> Response:
        params = dict(request.query_params)
        body = await self.db(self.data.events, params)
        name, data = _EXAMPLE_EVENT
        return self.render(
            "events.html",
            "events",
            events=body["data"],
            next_cursor=body["metadata"]["next_cursor"],
            internal=bool(params.get("internal")),
            cursor_given=bool(params.get("cursor")),
            example_name=name,
            example_data=json.dumps(data, indent=2),
        )

    async def apps(self, request: Request) -> Response:
        apps = await self.db(self.data.apps)
        return self.render("apps.html", "apps", apps=apps["data"])

    async def functions(self, request: Request) -> Response:
        functions = await self.db(self.data.functions)
        return self.render("functions.html", "functions", functions=functions["data"])

    async def function(self, request: Request) -> Response:
        fn = (await self.db(self.data.function, request.path_params["fn_id"]))["data"]
        return self.render("function.html", "function", fn=fn)


def _awaited_signals(run: dict[str, Any]) -> list[tuple[str, str]]:
    """(step name, signal) for each of the run's steps waiting for a signal now."""
    if run["status"] != "Running":
        return []
    waiting = {
        s["name"] for s in run["steps"] if s["op"] == "WaitForSignal" and s["status"] == "Waiting"
    }
    latest: dict[str, str] = {}
    for entry in run["history"]:
        if entry["type"] == "waiting_signal" and entry["step"] in waiting:
            latest[entry["step"]] = str(entry.get("signal", ""))
    return [(step, signal) for step, signal in latest.items() if signal]


class _SignIn:
    """The sign-in form of an engine with a signing key (``uiauth``): no secret in any URL."""

    def __init__(self, pages: _Pages, auth: UiAuth) -> None:
        self.pages, self.auth = pages, auth

    def form(self, request: Request, status: int, reason: str, target: str) -> Response:
        return self.pages.render("login.html", "login", status, reason=reason, next=target)

    def refused(self, request: Request, denied: Denied) -> Response:
        """A page asked for without a session: the form, with the status and the sentence."""
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        reason = "" if denied.reason == SIGN_IN_REASON else denied.reason  # the form says it
        return self.form(request, denied.status, reason, _local(target))

    async def show(self, request: Request) -> Response:
        if self.auth.session_ok(request.cookies.get(SESSION_COOKIE)):
            return RedirectResponse(_local(request.query_params.get("next", "/")), 303)
        return self.form(request, 200, "", _local(request.query_params.get("next", "/")))

    async def submit(self, request: Request) -> Response:
        if _from_another_site(request):
            return self.form(request, 403, "refused: this sign-in comes from another site", "/")
        fields = parse_qs((await read_body(request, _FORM_LIMIT)).decode("utf-8", "replace"))
        credential = (fields.get("credential") or [""])[0]
        target = _local((fields.get("next") or ["/"])[0])
        if not self.auth.accepts(credential):
            reason = (
                "that is neither this engine's signing key nor its sign-in code"
                if credential.strip()
                else "enter the signing key or the sign-in code"
            )
            return self.form(request, 401, reason, target)
        session, csrf = self.auth.new_session()
        response = RedirectResponse(target, 303)
        secure = request.url.scheme == "https"
        response.set_cookie(
            SESSION_COOKIE,
            session,
            max_age=SESSION_SECONDS,
            httponly=True,
            samesite="strict",
            secure=secure,
        )
        response.set_cookie(
            CSRF_COOKIE, csrf, max_age=SESSION_SECONDS, samesite="strict", secure=secure
        )
        return response

    async def sign_out(self, request: Request) -> Response:
        """End this browser's session: revoked on the engine, both cookies cleared."""
        if _from_another_site(request):
            return self.form(request, 403, "refused: this sign-out comes from another site", "/")
        self.auth.revoke(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/login", 303)
        secure = request.url.scheme == "https"
        for cookie in (SESSION_COOKIE, CSRF_COOKIE):
            response.delete_cookie(cookie, samesite="strict", secure=secure)
        return response


def _from_another_site(request: Request) -> bool:
    """A form POST whose ``Origin``, when the browser sends one, is not this engine."""
    origin = request.headers.get("origin")
    return origin is not None and origin != f"{request.url.scheme}://{request.headers.get('host')}"


_FORM_LIMIT = 16 * 1024


def _local(target: str) -> str:
    """A path on this engine to go back to after signing in (never another site)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def ui_routes(data: ApiData, authed: Any, auth: UiAuth | None = None) -> list[BaseRoute]:
    """The UI's pages and its static assets (``/static/...``); with ``auth`` (an engine with a
    signing key), the sign-in form at ``/login``, signing out at ``/logout`` and pages only for a
    signed-in browser."""
    pages = _Pages(data, signs_in=auth is not None)
    sign_in = _SignIn(pages, auth) if auth is not None else None
    refused = sign_in.refused if sign_in is not None else None

    def page(path: str, handler: Handler) -> Route:
        return Route(path, authed(pages.guard(handler), refused), methods=["GET"])

    async def runs_alias(request: Request) -> Response:
        return RedirectResponse("/" + (f"?{request.url.query}" if request.url.query else ""))

    return [
        page("/", pages.runs),
        Route("/runs", runs_alias, methods=["GET"]),
        page("/runs/{run_id}", pages.run),
        page("/events", pages.events),
        page("/apps", pages.apps),
        page("/functions", pages.functions),
        page("/functions/{fn_id}", pages.function),
        Mount("/static", app=StaticFiles(directory=_HERE / "static"), name="static"),
        *(
            []
            if sign_in is None
            else [
                Route("/login", sign_in.show, methods=["GET"]),
                Route("/login", sign_in.submit, methods=["POST"]),
                Route("/logout", sign_in.sign_out, methods=["POST"]),
            ]
        ),
    ]
