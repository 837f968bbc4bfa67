"""Section 3: what a no-op hook, and a stack of no-op middleware, adds to a 10-step request.

The request is the section-1 function with 10 memoized steps and one new step (11 step calls).

* Per hook: ``K`` copies of a middleware overriding only that hook, against none; the difference
  divided by ``K x`` (calls of the hook per request, counted by a run with counting hooks) is the
  cost of one call. ``K`` copies make the difference large against the request's noise.
* Per middleware count: 1, 10 and 50 middlewares overriding no hook, or every hook with a no-op,
  as a ratio to the same request without middleware.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks import apps, noop
from benchmarks.timing import Config, Stats, measure_async, measure_sync
from inngest_mw import CommHandler, CommRequest, CommResponse, Inngest
from inngest_mw.pipeline import ALL_HOOKS, Middleware, MiddlewareFactory, MiddlewareSync

__all__ = [
    "COLOURS",
    "HOOK_MEMOIZED",
    "MIDDLEWARE_COUNTS",
    "Colour",
    "HookRow",
    "MiddlewareRow",
    "measure_requests",
    "run_hooks",
    "run_middleware_counts",
]

HOOK_MEMOIZED = 10
MIDDLEWARE_COUNTS = (1, 10, 50)


@dataclass(frozen=True, slots=True)
class Colour:
    key: str
    label: str
    async_hooks: bool
    async_fn: bool
    copies: int
    """How many copies of the one-hook middleware the per-hook rows stack."""


COLOURS: tuple[Colour, ...] = (
    Colour("async", "`Middleware`, async function, `handle`", True, True, 50),
    Colour("sync", "`MiddlewareSync`, sync function, `handle_sync`", False, False, 50),
    Colour("sync-on-async", "`MiddlewareSync`, async function, `handle`", False, True, 50),
    Colour("async-on-sync", "`Middleware`, sync function, `handle_sync`", True, False, 50),
)
MAIN_COLOURS = ("async", "sync")


@dataclass(frozen=True, slots=True)
class HookRow:
    hook: str
    kind: str
    colour: str
    copies: int
    calls: int
    """Calls of the hook per request, per middleware."""
    base: Stats
    """No middleware."""
    without_hook: Stats
    """``copies`` middlewares of the same colour overriding no hook."""
    with_hook: Stats
    """``copies`` middlewares overriding only ``hook``, with a no-op."""

    @property
    def per_call_us(self) -> float:
        """The cost of one call of the overridden hook: with minus without, per call."""
        added = self.with_hook.median_us - self.without_hook.median_us
        return added / (self.copies * self.calls)

    @property
    def gross_per_call_us(self) -> float:
        """The same against no middleware at all: also charges each middleware's instance."""
        added = self.with_hook.median_us - self.base.median_us
        return added / (self.copies * self.calls)


@dataclass(frozen=True, slots=True)
class MiddlewareRow:
    colour: str
    overrides: str  # "none" | "all" (no-op bodies) | "trivial" (every hook, trivial bodies)
    count: int
    base: Stats
    stats: Stats
    calls: int = 0
    """Hook calls per request per middleware that override every hook (trivial bodies)."""
    direct: Stats | None = None
    """``trivial`` rows: calling the same hooks of ``count`` instances directly, as many times
    as one request calls them, with no SDK at all (the physical floor of those calls)."""

    @property
    def floor_ratio(self) -> float | None:
        """The request with the hooks' own cost only: (base + direct) / base."""
        if self.direct is None:
            return None
        return (self.base.median_us + self.direct.median_us) / self.base.median_us

    @property
    def dispatch_us_per_call(self) -> float | None:
        """What the SDK adds per hook call beyond calling the hook itself."""
        if self.direct is None or not self.calls:
            return None
        added = self.stats.median_us - self.base.median_us - self.direct.median_us
        return added / (self.count * self.calls)

    @property
    def ratio(self) -> float:
        return self.stats.median_us / self.base.median_us

    @property
    def per_middleware_us(self) -> float:
        return (self.stats.median_us - self.base.median_us) / self.count


# -- drivers ----------------------------------------------------------------------------------


def _handler(middleware: Sequence[MiddlewareFactory]) -> CommHandler:
    return apps.ours_handler(middleware)


def _async_call(handler: CommHandler, fn_id: str, body: bytes) -> apps.AsyncCall:
    target, headers = apps.url(fn_id), apps.HEADERS

    async def call() -> CommResponse:
        return await handler.handle(CommRequest("POST", target, headers, body))

    return call


def _sync_call(handler: CommHandler, fn_id: str, body: bytes) -> apps.SyncCall:
    target, headers = apps.url(fn_id), apps.HEADERS

    def call() -> CommResponse:
        return handler.handle_sync(CommRequest("POST", target, headers, body))

    return call


def _measure(colour: Colour, handlers: dict[str, CommHandler], cfg: Config) -> dict[str, Stats]:
    """Time one request per handler (checked first), interleaved, in the colour's entry point."""
    body = apps.call_body(HOOK_MEMOIZED)
    cases = {key: (handler, body) for key, handler in handlers.items()}
    return measure_requests(colour.async_fn, cases, cfg)


def measure_requests(
    async_fn: bool,
    cases: dict[str, tuple[CommHandler, bytes]],
    cfg: Config,
    between: Callable[[], object] | None = None,
) -> dict[str, Stats]:
    """Time one 10-step request per ``(handler, body)`` case, each response checked first,
    interleaved: the async function through ``handle``, else the sync one through
    ``handle_sync``. ``between`` runs untimed before every repeat (see ``timing``)."""
    fn_id = apps.FN_ASYNC if async_fn else apps.FN_SYNC
    if async_fn:

        async def go() -> dict[str, Stats]:
            calls = {key: _async_call(h, fn_id, body) for key, (h, body) in cases.items()}
            for call in calls.values():
                response = await call()
                assert isinstance(response, CommResponse)
                apps.check_ours(response, HOOK_MEMOIZED)
            return await measure_async(calls, cfg, between)

        return asyncio.run(go())
    sync_calls = {key: _sync_call(h, fn_id, body) for key, (h, body) in cases.items()}
    for call in sync_calls.values():
        response = call()
        assert isinstance(response, CommResponse)
        apps.check_ours(response, HOOK_MEMOIZED)
    return measure_sync(sync_calls, cfg, between)


# -- counting how often each hook runs ----------------------------------------------------------


def _counting(cls: type[Middleware | MiddlewareSync], counts: dict[str, int]) -> MiddlewareFactory:
    """A factory for ``cls`` (overriding every hook) whose instances count each hook call."""
    is_async = issubclass(cls, Middleware)

    def wrap(hook: str, original: Callable[..., Any]) -> Callable[..., Any]:
        if is_async:

            async def counted_async(*args: Any) -> Any:
                counts[hook] = counts.get(hook, 0) + 1
                return await original(*args)

            return counted_async

        def counted(*args: Any) -> Any:
            counts[hook] = counts.get(hook, 0) + 1
            return original(*args)

        return counted

    def factory(client: Inngest, raw_request: object) -> Middleware | MiddlewareSync:
        instance = cls(client, raw_request)
        for hook in ALL_HOOKS:
            setattr(instance, hook, wrap(hook, getattr(instance, hook)))
        return instance

    return factory


def hook_calls(colour: Colour) -> dict[str, int]:
    """How many times each hook runs in one 10-step request of this colour, per middleware."""
    counts: dict[str, int] = {}
    cls = noop.AsyncTrivialAll if colour.async_hooks else noop.SyncTrivialAll
    handler = _handler([_counting(cls, counts)])
    fn_id = apps.FN_ASYNC if colour.async_fn else apps.FN_SYNC
    request = CommRequest("POST", apps.url(fn_id), apps.HEADERS, apps.call_body(HOOK_MEMOIZED))
    if colour.async_fn:
        response = asyncio.run(handler.handle(request))
    else:
        response = handler.handle_sync(request)
    apps.check_ours(response, HOOK_MEMOIZED)
    return counts


# -- the floor: the same hooks called directly ------------------------------------------------


def _hook_lists(
    cls: type[Middleware | MiddlewareSync], count: int, calls: dict[str, int]
) -> tuple[list[list[Callable[..., Any]]], list[list[Callable[..., Any]]]]:
    """``count`` instances' bound hooks, as one request calls them: a list per chain-hook call
    and a list per wrap-hook call (its layers, outermost first)."""
    client = apps.ours_client()
    instances = [cls(client, None) for _ in range(count)]
    chains: list[list[Callable[..., Any]]] = []
    onions: list[list[Callable[..., Any]]] = []
    for hook, n in calls.items():
        target = onions if hook.startswith("wrap_") else chains
        target.extend([getattr(i, hook) for i in instances] for _ in range(n))
    return chains, onions


def _direct_sync(cls: type[MiddlewareSync], count: int, calls: dict[str, int]) -> Callable[[], Any]:
    """One request's worth of calls of ``count`` instances' hooks, as plain calls: each chain
    hook ``calls[hook]`` times per instance, each wrap hook nested ``count`` deep around a
    trivial inner call. No SDK code runs."""
    chains, onions = _hook_lists(cls, count, calls)

    def layer(hooks: list[Callable[..., Any]], i: int) -> Any:
        if i == len(hooks):
            return None
        return hooks[i](functools.partial(layer, hooks, i + 1), i)

    def request() -> None:
        for chain in chains:
            for hook in chain:
                hook(chain)
        for onion in onions:
            layer(onion, 0)

    return request


def _direct_async(cls: type[Middleware], count: int, calls: dict[str, int]) -> Callable[[], Any]:
    """As ``_direct_sync``, for async hooks: each awaited, the onions of coroutines."""
    chains, onions = _hook_lists(cls, count, calls)

    async def layer(hooks: list[Callable[..., Any]], i: int) -> Any:
        if i == len(hooks):
            return None
        return await hooks[i](functools.partial(layer, hooks, i + 1), i)

    async def request() -> None:
        for chain in chains:
            for hook in chain:
                await hook(chain)
        for onion in onions:
            await layer(onion, 0)

    return request


def _direct(colour: Colour, counts: tuple[int, ...], cfg: Config) -> dict[int, Stats]:
    calls = hook_calls(colour)
    if colour.async_hooks:
        async_cases = {n: _direct_async(noop.AsyncTrivialAll, n, calls) for n in counts}

        async def go() -> dict[str, Stats]:
            return await measure_async({str(n): c for n, c in async_cases.items()}, cfg)

        found = asyncio.run(go())
    else:
        sync_cases = {str(n): _direct_sync(noop.SyncTrivialAll, n, calls) for n in counts}
        found = measure_sync(sync_cases, cfg)
    return {int(n): stats for n, stats in found.items()}


# -- the two measurements ---------------------------------------------------------------------


def run_hooks(cfg: Config, colours: Sequence[Colour] = COLOURS) -> list[HookRow]:
    rows: list[HookRow] = []
    for colour in colours:
        calls = hook_calls(colour)
        none_cls = noop.AsyncNone if colour.async_hooks else noop.SyncNone
        handlers = {"base": _handler([])}
        for hook, (_, async_cls, sync_cls) in noop.PER_HOOK.items():
            cls = async_cls if colour.async_hooks else sync_cls
            copies = colour.copies
            handlers.setdefault(f"none/{copies}", _handler([none_cls] * copies))
            handlers[hook] = _handler([cls] * copies)
        stats = _measure(colour, handlers, cfg)
        for hook, (kind, _, _) in noop.PER_HOOK.items():
            rows.append(
                HookRow(
                    hook=hook,
                    kind=kind,
                    colour=colour.key,
                    copies=colour.copies,
                    calls=calls.get(hook, 0),
                    base=stats["base"],
                    without_hook=stats[f"none/{colour.copies}"],
                    with_hook=stats[hook],
                )
            )
    return rows


def run_middleware_counts(
    cfg: Config, counts: tuple[int, ...] = MIDDLEWARE_COUNTS
) -> list[MiddlewareRow]:
    rows: list[MiddlewareRow] = []
    for colour in (c for c in COLOURS if c.key in MAIN_COLOURS):
        none_cls = noop.AsyncNone if colour.async_hooks else noop.SyncNone
        all_cls = noop.AsyncAll if colour.async_hooks else noop.SyncAll
        trivial_cls = noop.AsyncTrivialAll if colour.async_hooks else noop.SyncTrivialAll
        handlers = {"base": _handler([])}
        for n in counts:
            handlers[f"none/{n}"] = _handler([none_cls] * n)
            handlers[f"all/{n}"] = _handler([all_cls] * n)
            handlers[f"trivial/{n}"] = _handler([trivial_cls] * n)
        stats = _measure(colour, handlers, cfg)
        calls = sum(hook_calls(colour).values())
        direct = _direct(colour, counts, cfg)
        for overrides in ("none", "all", "trivial"):
            for n in counts:
                rows.append(
                    MiddlewareRow(
                        colour=colour.key,
                        overrides=overrides,
                        count=n,
                        base=stats["base"],
                        stats=stats[f"{overrides}/{n}"],
                        calls=calls,
                        direct=direct[n] if overrides == "trivial" else None,
                    )
                )
    return rows
