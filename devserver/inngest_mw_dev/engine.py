"""The engine: HTTP server, queue scheduler and workers, app syncing, on one asyncio loop.

State transitions live in ``machine.RunMachine``; this module only moves work: it leases due
queue items, performs the HTTP calls they need and hands the results back to the machine. All
SQLite work (the store, the machine's transitions, the reads of API and UI requests) runs on the
store thread (``storethread``), one job per scheduler tick or request; the loop only awaits it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import uvicorn

from inngest_mw.errors import SignatureError
from inngest_mw.jsonbody import JSONBodyError, parse_json
from inngest_mw.signature import sign, verify
from inngest_mw_dev.appclient import AppClient
from inngest_mw_dev.connect_http import is_connect_url
from inngest_mw_dev.executor import CallOutcome, Transport, call_app
from inngest_mw_dev.gateway import GatewayCall, GatewayDone, perform
from inngest_mw_dev.kinds import QueueKind
from inngest_mw_dev.live import LiveFeed
from inngest_mw_dev.machine import HistoryNote, PreparedCall, RunMachine
from inngest_mw_dev.registration import Registration, RegistrationError, parse_registration
from inngest_mw_dev.store import QueueItem, Store
from inngest_mw_dev.storethread import StoreThread
from inngest_mw_dev.syncs import SyncError, SyncLog, SyncStatus, url_problem
from inngest_mw_dev.uiauth import new_sign_in_code

if TYPE_CHECKING:
    from inngest_mw_dev.connect_gateway import ConnectGateway

__all__ = ["Engine"]

log = logging.getLogger("inngest_mw_dev")
T = TypeVar("T")
# Work per transaction: large enough to amortise the commit, small enough that an event POST,
# which is served between ticks, never waits long for the loop. Answers that arrived beyond the
# first _MAX_OUTCOMES_PER_TICK wait for the next tick (they stay leased, so nothing is lost).
_MAX_PER_TICK = 16
_MAX_OUTCOMES_PER_TICK = 16
# Leases per tick while the items leased are run in the tick itself (events, run items) and may
# have queued work due now: an event's run starts its first call in the tick that took the event.
_LEASE_ROUNDS = 3
_RETRY_UNEXPECTED_S = 5.0


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the engine's owner decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Engine:
    """An Inngest-compatible engine backed by one SQLite file.

    ``port=0`` binds a free port; ``url`` is known once ``start()`` returns. ``clock`` is
    injectable so tests can make timers (cron ticks, sleeps) due without waiting.
    """

    def __init__(
        self,
        db_path: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 8288,
        signing_key: str | None = None,
        event_keys: Sequence[str] | None = None,
        app_urls: Sequence[str] = (),
        poll_interval: float | None = None,
        tick: float = 0.05,
        retry_base: float = 1.0,
        request_timeout: float = 300.0,
        workers: int = 100,
        clock: Callable[[], float] = time.time,
        on_history: Callable[[HistoryNote], None] | None = None,
        on_notice: Callable[[str], None] | None = None,
        connect_port: int | None = None,
        connect_heartbeat: float = 10.0,
        connect_lease: float = 120.0,
    ) -> None:
        self.db_path = Path(db_path)
        self.host, self.port = host, port
        self.signing_key = signing_key or None
        self.sign_in_code = new_sign_in_code() if self.signing_key else None
        """With a signing key: the web UI's sign-in code for this start (``uiauth``)."""
        self.event_keys = list(event_keys or [])
        self.app_urls = list(app_urls)
        self.poll_interval = poll_interval
        self.tick = tick
        self.retry_base = retry_base
        self.request_timeout = request_timeout
        self.workers = workers
        self.clock = clock
        self.on_history = on_history
        self.on_notice = on_notice
        self.connect_port = connect_port
        """The connect gateway's port (0: any free one); None runs no gateway."""
        self.connect: ConnectGateway | None = None
        self._connect_timing = (connect_heartbeat, connect_lease)
        self.feed = LiveFeed()
        self.url = ""
        self._syncs: SyncLog | None = None
        self._registrations: Counter[str] = Counter()  # per app URL
        self._store: Store | None = None
        self._db: StoreThread | None = None
        self._machine: RunMachine | None = None
        self._http: httpx.AsyncClient | None = None
        self._calls: AppClient | None = None
        self._server: _Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._outcomes: list[tuple[QueueItem, CallOutcome | GatewayDone, float]] = []
        self._wake = asyncio.Event()

    @property
    def server_kind(self) -> str:
        """``cloud`` when a signing key is configured (signed calls, authenticated API)."""
        return "cloud" if self.signing_key else "dev"

    @property
    def machine(self) -> RunMachine:
        if self._machine is None:
            raise RuntimeError("the engine is not started")
        return self._machine

    @property
    def store(self) -> Store:
        return self.machine.store

    @property
    def syncs(self) -> SyncLog:
        if self._syncs is None:
            raise RuntimeError("the engine is not started")
        return self._syncs

    async def db(self, job: Callable[..., T], *args: Any) -> T:
        """Run ``job(*args)`` on the store thread: every use of ``store`` and ``machine`` from
        the loop goes through here, one job per request (see ``storethread``)."""
        if self._db is None:
            raise RuntimeError("the engine is not started")
        return await self._db.run(job, *args)

    def db_sync(self, job: Callable[..., T], *args: Any) -> T:
        """``db`` for a thread other than the loop's (tests, tools): waits for the result."""
        if self._db is None:
            raise RuntimeError("the engine is not started")
        return self._db.call(job, *args)

    def _later(self, action: Callable[[], None]) -> None:
        """Run ``action`` on the loop: now, or after the store thread's current job."""
        if self._db is None:
            action()
        else:
            self._db.later(action)

    def notice(self, line: str) -> None:
        """One line for the live log (``inngest-mw dev``) and the UI's live feed."""
        self._later(lambda: self._notice(line))

    def _notice(self, line: str) -> None:
        self.feed.publish("notice", line=line)
        log.info("%s", line)
        if self.on_notice is not None:
            self.on_notice(line)

    def _on_history(self, note: HistoryNote) -> None:
        if self._db is None:
            self._publish_history([note])
        else:  # the entries of one store thread job are published by one action
            self._db.later_batch(self._publish_history, note)

    def _publish_history(self, notes: list[HistoryNote]) -> None:
        feed, listener = self.feed, self.on_history
        for note in notes:
            feed.publish(
                "history",
                run_id=note.run_id,
                function_id=note.function_id,
                type=note.kind,
                step=note.step,
            )
            if listener is not None:
                listener(note)

    # lifecycle

    async def start(self) -> None:
        """Open the database, recover leases, serve HTTP and begin processing the queue."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        from inngest_mw_dev.api import create_app

        self._wake = asyncio.Event()
        self._db = StoreThread()
        await self._db.run(self._open)
        self._outcomes = []
        self._http = httpx.AsyncClient(follow_redirects=False)
        self._calls = AppClient()
        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose proto says
        # TCP, and without it every keep-alive response waits ~40 ms on Nagle + delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self.url = f"http://{self.host}:{self.port}"
        config = uvicorn.Config(
            create_app(self),
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self._server = _Server(config)
        serving = asyncio.create_task(self._server.serve(sockets=[sock]))
        self._tasks.append(serving)
        while not self._server.started:
            if serving.done():
                serving.result()
                raise RuntimeError("HTTP server stopped during start-up")
            await asyncio.sleep(0.01)
        if self.connect_port is not None:
            from inngest_mw_dev.connect_gateway import ConnectGateway  # protobuf, websockets

            heartbeat, lease = self._connect_timing
            self.connect = ConnectGateway(
                self, host=self.host, port=self.connect_port, heartbeat_s=heartbeat, lease_s=lease
            )
            await self.connect.start()
        self._tasks.append(asyncio.create_task(self._scheduler()))
        for url in self.app_urls:
            self._tasks.append(asyncio.create_task(self._initial_sync(url)))
        if self.poll_interval:
            self._tasks.append(asyncio.create_task(self._poll(self.poll_interval)))

    def _open(self) -> None:
        """Open the store and the machine (on the store thread, which alone may use them)."""
        self._store = Store(self.db_path, exclusive=True)
        recovered = self._store.release_all_leases()
        if recovered:
            log.info("re-queued %d item(s) interrupted by the previous shutdown", recovered)
        self._syncs = SyncLog(self._store)
        self._machine = RunMachine(
            self._store, clock=self.clock, retry_base=self.retry_base, on_history=self._on_history
        )

    def _close(self, outcomes: list[tuple[QueueItem, CallOutcome | GatewayDone, float]]) -> None:
        """Commit the responses already received (rather than run their steps again), then
        close the store."""
        if self._machine is not None:
            for item, outcome, started in outcomes:
                with contextlib.suppress(Exception):
                    self._machine.apply_outcome(item, outcome, started)
        if self._store is not None:
            self._store.close()

    async def stop(self) -> None:
        """Stop serving and abandon in-flight calls (their items run again at the next start)."""
        if self._server is not None:
            self._server.should_exit = True
        serving, others = self._tasks[:1], self._tasks[1:]
        for task in [*others, *self._inflight.values()]:
            task.cancel()
        await asyncio.gather(*others, *self._inflight.values(), return_exceptions=True)
        if self.connect is not None:
            await self.connect.stop()
            self.connect = None
        await asyncio.gather(*serving, return_exceptions=True)
        self._tasks.clear()
        self._inflight.clear()
        outcomes, self._outcomes = self._outcomes, []
        if self._http is not None:
            await self._http.aclose()
        if self._calls is not None:
            await self._calls.aclose()
        if self._db is not None:
            try:
                await self._db.run(self._close, outcomes)
            finally:
                self._db.stop()
        self._server = self._http = self._calls = self._store = self._syncs = self._db = None

    def wake(self) -> None:
        """Tell the scheduler new work is due now (instead of at the next tick)."""
        self._later(self._wake.set)

    # app syncing

    async def sync_app(self, url: str) -> tuple[int, str]:
        """Ask the app at ``url`` to register (``PUT``); return its status and body text.

        The outcome is recorded (``syncs``) and told in the live log once per change: a failure
        with the app's reason, or an app that answered but registered with another server.
        Raises ``SyncError`` when the URL is malformed or nothing answers at it.
        """
        if self._http is None:
            raise RuntimeError("the engine is not started")
        problem = url_problem(url)
        if problem is not None:
            await self.db(self._sync_failed, url, problem)
            raise SyncError(url, problem, malformed=True)
        registrations = self._registrations[url.rstrip("/")]
        # In-band first, as the real server syncs: the app answers with its registration, so it
        # registers here whatever server its own settings point at. An SDK that does not answer
        # in-band registers out of band (with the server it is configured for) instead.
        body = json.dumps({"url": url}).encode()
        headers = {
            "X-Inngest-Server-Kind": self.server_kind,
            "X-Inngest-Sync-Kind": "in_band",
            "Content-Type": "application/json",
        }
        if self.signing_key:
            # Signed, as a call is: an app in cloud mode trusts the URL it registers only from a
            # request signed with its key.
            headers["X-Inngest-Signature"] = sign(body, self.signing_key)
        try:
            response = await self._http.put(url, content=body, headers=headers, timeout=30)
        except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as exc:
            # InvalidURL is no HTTPError, and an IDNA error is a UnicodeError: both mean the
            # URL, not the app, is at fault.
            malformed = not isinstance(exc, httpx.HTTPError)
            reason = f"cannot reach the app ({type(exc).__name__}: {exc})"
            await self.db(self._sync_failed, url, reason)
            raise SyncError(url, reason, malformed=malformed) from exc
        if response.status_code == 200 and response.headers.get("x-inngest-sync-kind") == "in_band":
            problem = await self.db(self._register_in_band, response)
            if problem:
                await self.db(self._sync_failed, url, problem)
                return 400, problem
            return response.status_code, response.text
        if response.status_code != 200:
            reason = f"HTTP {response.status_code}: {_reason(response)}"
            if self._registrations[url.rstrip("/")] == registrations:
                reason += (
                    f" (the app did not register here: if it targets another server, start"
                    f" it with INNGEST_DEV={self.url})"
                )
            await self.db(self._sync_failed, url, reason)
        elif self._registrations[url.rstrip("/")] == registrations:
            # The SDK registers with its configured base URL, which the sync request cannot
            # change for an out-of-band sync: say how to point it here.
            reason = (
                f"the app answered but registered with another server; start it with"
                f" INNGEST_DEV={self.url} (or INNGEST_BASE_URL={self.url})"
            )
            await self.db(self._sync_elsewhere, url, reason)
        return response.status_code, response.text

    def _sync_elsewhere(self, url: str, reason: str) -> None:
        if self.syncs.record(url, SyncStatus.ELSEWHERE, self.clock(), error=reason):
            self.notice(f"sync of {url}: {reason}")

    def _register_in_band(self, response: httpx.Response) -> str | None:
        """Register an app from its in-band answer; the reason it cannot be, if so (a store
        thread job)."""
        if self.signing_key:
            try:
                verify(
                    response.content,
                    response.headers.get("x-inngest-signature"),
                    [self.signing_key],
                )
            except SignatureError as exc:
                return (
                    f"the app's in-band answer is not signed with this server's key: {exc.message}"
                )
        try:
            reply = parse_json(response.content)
        except JSONBodyError as exc:
            return f"the app's in-band answer is {exc.reason}"
        if not isinstance(reply, dict):
            return "the app's in-band answer is not a JSON object"
        language, version = reply.get("sdk_language", ""), reply.get("sdk_version", "")
        try:
            registration = parse_registration(
                {
                    "appName": reply.get("app_id"),
                    "url": reply.get("url"),
                    "functions": reply.get("functions", []),
                    "framework": reply.get("framework", ""),
                    "sdk": f"{language}:v{version}" if language else "",
                }
            )
        except RegistrationError as exc:
            return f"the app's in-band registration is invalid: {exc}"
        self.register(registration)
        return None

    def _sync_failed(self, url: str, reason: str) -> None:
        if self.syncs.record(url, SyncStatus.FAILED, self.clock(), error=reason):
            self.notice(f"sync of {url} failed: {reason}")
        self._later(lambda: self.feed.publish("sync", url=url))

    def register(self, registration: Registration) -> dict[str, object]:
        """Register an app (``/fn/register``, or its in-band sync answer): store its functions,
        record the sync, tell the live log, and wake the scheduler; the reply for the app.

        A store thread job: ``await engine.db(engine.register, registration)``.
        """
        reply = self.machine.register(registration)
        self._record_registration(registration, reply)
        self.wake()
        return reply

    def _record_registration(self, registration: Registration, reply: dict[str, object]) -> None:
        self._registrations[registration.url.rstrip("/")] += 1
        count = len(registration.functions)
        if self.syncs.record(
            registration.url,
            SyncStatus.SYNCED,
            self.clock(),
            app_name=registration.app_name,
            functions=count,
        ) or reply.get("modified"):
            plural = "" if count == 1 else "s"
            self.notice(
                f"app {registration.app_name} synced from {registration.url}:"
                f" {count} function{plural}"
            )
        self._later(lambda: self.feed.publish("sync", url=registration.url))

    async def _initial_sync(self, url: str) -> None:
        """Sync an ``app_urls`` entry, retrying for a while in case the app starts later."""
        for attempt in range(30):
            try:
                status, _ = await self.sync_app(url)
            except SyncError as exc:
                if exc.malformed:  # the live log has said why; trying again cannot help
                    return
                log.debug("sync of %s failed (attempt %d): %s", url, attempt + 1, exc)
            else:
                if status == 200:
                    return
            await asyncio.sleep(1)
        self.notice(
            f"giving up syncing {url} after 30 attempts; once the app is up, resync it"
            " from the UI's Apps page or with POST /fn/sync"
        )

    async def _poll(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            for url in self.app_urls:
                try:
                    await self.sync_app(url)
                except SyncError as exc:
                    log.debug("poll of %s failed: %s", url, exc)
            self.feed.publish("poll", urls=len(self.app_urls))

    # queue processing

    @property
    def _lease_seconds(self) -> float:
        return self.request_timeout + 60.0

    async def _scheduler(self) -> None:
        while True:
            self._wake.clear()
            try:
                busy = await self._tick()
            except Exception:
                log.exception("the scheduler failed to lease work; trying again")
                busy = False
            if busy:
                await asyncio.sleep(0)  # let HTTP responses and event intake in between slices
                continue
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that
            # arrives as the event is set (stop() would then wait forever for this loop).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.tick):
                    await self._wake.wait()

    async def _tick(self) -> bool:
        """One group commit: apply the outcomes that arrived, lease due work, run what needs no
        app and prepare the calls (one store thread job); then send those calls. True when more
        work may be due now.

        A response is committed at most one tick after it arrived; if the engine dies before, the
        call's lease survives and the step runs again after the restart (at-least-once). Should
        any transition raise, the whole group is rolled back and redone one item per transaction,
        so only the item at fault is set aside.
        """
        outcomes = self._outcomes[:_MAX_OUTCOMES_PER_TICK]
        del self._outcomes[:_MAX_OUTCOMES_PER_TICK]
        limit = min(self.workers - len(self._inflight), _MAX_PER_TICK)
        calls, leased = await self.db(self._group, outcomes, limit)
        for item, prepared in calls:
            work = (
                self._call(item, prepared)
                if isinstance(prepared, PreparedCall)
                else self._gateway(item, prepared)
            )
            self._inflight[item.id] = asyncio.create_task(work)
        return leased >= limit > 0 or bool(self._outcomes)

    def _group(
        self, outcomes: list[tuple[QueueItem, CallOutcome | GatewayDone, float]], limit: int
    ) -> tuple[list[tuple[QueueItem, PreparedCall | GatewayCall]], int]:
        """The tick's store thread job: its transitions in one transaction, or, should one of
        them raise, each in a transaction of its own; the calls to make and the items leased."""
        notices: list[str] = []
        try:
            with self.machine.batch():
                work = self._work(outcomes, limit, notices, isolate=False)
        except Exception:
            log.warning("a grouped transaction failed; redoing it one item at a time")
            notices.clear()
            work = self._work(outcomes, limit, notices, isolate=True)
        for line in notices:
            self.notice(line)
        return work

    def _work(
        self,
        outcomes: list[tuple[QueueItem, CallOutcome | GatewayDone, float]],
        limit: int,
        notices: list[str],
        *,
        isolate: bool,
    ) -> tuple[list[tuple[QueueItem, PreparedCall | GatewayCall]], int]:
        """The tick's transitions; with ``isolate``, each in its own transaction. Live-log lines
        go to ``notices``, published once the tick has committed.

        Work an item makes due at once (an event starting runs, a run item queueing the run's
        next call) is leased again in the same tick, up to ``_LEASE_ROUNDS`` rounds, so that a
        run's first call does not wait for the scheduler's timer."""
        machine = self.machine
        for item, outcome, started in outcomes:
            self._guarded(isolate, item, machine.apply_outcome, item, outcome, started)
        calls: list[tuple[QueueItem, PreparedCall | GatewayCall]] = []
        leased = 0
        for _ in range(_LEASE_ROUNDS):
            if leased >= limit:
                break
            items = machine.lease(self.clock(), self._lease_seconds, limit - leased)
            leased += len(items)
            if not self._dispatch(items, calls, notices, isolate):
                break
        return calls, leased

    def _dispatch(
        self,
        items: list[QueueItem],
        calls: list[tuple[QueueItem, PreparedCall | GatewayCall]],
        notices: list[str],
        isolate: bool,
    ) -> bool:
        """Prepare the calls of ``items`` into ``calls`` and run the rest; True when one of them
        was an item run here (an event, a run item), which may have queued work due now."""
        machine = self.machine
        ran_here = False
        for item in items:
            if item.kind == QueueKind.CALL:
                prepared = self._guarded(isolate, item, machine.prepare_call, item)
                if prepared is not None:
                    calls.append((item, prepared))
            elif item.kind == QueueKind.GATEWAY:
                request = self._guarded(isolate, item, machine.prepare_gateway, item)
                if request is not None:
                    calls.append((item, request))
            elif item.kind == QueueKind.EVENT:
                ran_here = True
                event = self._guarded(isolate, item, machine.process_event, item)
                if event is not None and self.on_notice is not None:
                    name = str(event.get("name", ""))
                    if not name.startswith("inngest/"):
                        notices.append(f"event {name} ({event.get('id')}) matched no function")
            else:
                ran_here = True
                self._guarded(isolate, item, machine.run_item, item)
        return ran_here

    def _guarded(
        self, isolate: bool, item: QueueItem, transition: Callable[..., T], *args: Any
    ) -> T | None:
        """Run one transition; when isolated, a failure puts its item back for a later try."""
        if not isolate:
            return transition(*args)
        try:
            return transition(*args)
        except Exception:
            log.exception("queue item %d (%s) failed; retrying in 5s", item.id, item.kind)
            with contextlib.suppress(Exception):
                self.machine.retry_later(item, _RETRY_UNEXPECTED_S)
            return None

    async def _call(self, item: QueueItem, prepared: PreparedCall) -> None:
        try:
            if self._calls is None:
                return
            started = self.clock()
            transport: Transport = self._calls
            if self.connect is not None and is_connect_url(prepared.app_url):
                transport = self.connect
            outcome = await call_app(
                transport,
                app_url=prepared.app_url,
                fn_id=prepared.fn_id,
                step_id=prepared.step_id,
                run_id=prepared.run_id,
                body=prepared.body,
                signing_key=self.signing_key,
                server_kind=self.server_kind,
                timeout=self.request_timeout,
                now=self.clock(),
            )
            self._outcomes.append((item, outcome, started))
        finally:
            self._inflight.pop(item.id, None)
            self._wake.set()

    async def _gateway(self, item: QueueItem, call: GatewayCall) -> None:
        """Make a run's ``step.fetch`` / ``step.ai.infer`` request; the tick commits the answer."""
        try:
            if self._http is None:
                return
            started = self.clock()
            done = await perform(self._http, call, self.request_timeout)
            self._outcomes.append((item, done, started))
        finally:
            self._inflight.pop(item.id, None)
            self._wake.set()


def _reason(response: httpx.Response) -> str:
    """The app's own message from a failed sync answer, else the start of its body."""
    try:
        body = parse_json(response.content)  # a peer's body: it may nest past the recursion limit
    except JSONBodyError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return response.text[:300] or "no body"
