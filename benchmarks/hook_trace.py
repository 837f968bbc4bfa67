"""What the hook trace (``inngest_mw.hooktrace``) costs a request, asked for and not.

The section-3 request (10 memoized steps + 1 new one) through the framework-agnostic handler, with
no middleware and with 10 middlewares overriding every hook with a trivial body, each once without
and once with ``X-Inngest-MW-Trace: 1``, interleaved in one group per colour. Reported: the ratio
asked / not asked, and the added time per traced hook call (the calls counted from the trace
itself). When nobody asks, the only work is one header lookup per request and one ``is None`` test
per bound hook when the request's hooks are built; the lookup is timed on its own.

``python -m benchmarks.hook_trace [--quick] [--out DIR | --record]``; writes ``hook_trace.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import timeit
from collections.abc import Sequence
from typing import Any

from benchmarks import apps, noop
from benchmarks.hooks import HOOK_MEMOIZED
from benchmarks.output import add_out_options, out_dir
from benchmarks.timing import Config, Stats, measure_async, measure_sync
from inngest_mw import CommHandler, CommRequest, CommResponse
from inngest_mw._const import Header
from inngest_mw.hooktrace import decode, requested
from inngest_mw.pipeline import MiddlewareFactory

__all__ = ["COPIES", "main", "measure"]

COPIES = 10
ASKED = {**apps.HEADERS, Header.MW_TRACE: "1"}
_COLOURS: dict[str, tuple[bool, MiddlewareFactory]] = {
    "async": (True, noop.AsyncTrivialAll),
    "sync": (False, noop.SyncTrivialAll),
}


def _request(async_fn: bool, headers: dict[str, str], body: bytes) -> CommRequest:
    fn_id = apps.FN_ASYNC if async_fn else apps.FN_SYNC
    return CommRequest("POST", apps.url(fn_id), headers, body)


def _cases(
    async_fn: bool, factory: MiddlewareFactory
) -> dict[str, tuple[CommHandler, dict[str, str]]]:
    bare, stacked = apps.ours_handler(), apps.ours_handler([factory] * COPIES)
    return {
        "none": (bare, apps.HEADERS),
        "none asked": (bare, ASKED),
        "middleware": (stacked, apps.HEADERS),
        "middleware asked": (stacked, ASKED),
    }


def _check(key: str, response: object) -> int:
    """The response is the usual one; returns the hook calls its trace reports (0 when none)."""
    assert isinstance(response, CommResponse)
    apps.check_ours(response, HOOK_MEMOIZED)
    seen = decode(response.headers.get(Header.MW_TRACE))
    if key == "middleware asked":
        if seen is None or seen.problem is not None or not seen.calls:
            raise AssertionError(f"no readable trace: {response.headers}")
        return len(seen.calls) + seen.more
    if seen is not None:
        raise AssertionError(f"{key}: a trace nobody asked for")
    return 0


def _measure_colour(
    async_fn: bool, factory: MiddlewareFactory, cfg: Config
) -> tuple[dict[str, Stats], int]:
    body = apps.call_body(HOOK_MEMOIZED)
    cases = _cases(async_fn, factory)
    calls = 0
    if async_fn:

        async def go() -> dict[str, Stats]:
            nonlocal calls

            def make(handler: CommHandler, headers: dict[str, str]) -> apps.AsyncCall:
                async def call() -> CommResponse:
                    return await handler.handle(_request(True, headers, body))

                return call

            timed = {key: make(h, headers) for key, (h, headers) in cases.items()}
            for key, call in timed.items():
                calls = max(calls, _check(key, await call()))
            return await measure_async(timed, cfg)

        return asyncio.run(go()), calls

    def make_sync(handler: CommHandler, headers: dict[str, str]) -> apps.SyncCall:
        def call() -> CommResponse:
            return handler.handle_sync(_request(False, headers, body))

        return call

    timed_sync = {key: make_sync(h, headers) for key, (h, headers) in cases.items()}
    for key, call in timed_sync.items():
        calls = max(calls, _check(key, call()))
    return measure_sync(timed_sync, cfg), calls


def _lookup_ns() -> float:
    """One ``requested`` test on a request that does not ask, in nanoseconds."""
    headers = dict(apps.HEADERS)
    number = 200_000
    best = min(timeit.repeat(lambda: requested(headers), number=number, repeat=5))
    return best / number * 1e9


def measure(cfg: Config) -> dict[str, Any]:
    rows = []
    for colour, (async_fn, factory) in _COLOURS.items():
        stats, calls = _measure_colour(async_fn, factory, cfg)
        med = {key: s.median_us for key, s in stats.items()}
        rows.append(
            {
                "colour": colour,
                "middlewares": COPIES,
                "traced_calls": calls,
                "median_us": {k: round(v, 2) for k, v in med.items()},
                "spread": {k: round(s.spread, 4) for k, s in stats.items()},
                "ratio_no_middleware": round(med["none asked"] / med["none"], 4),
                "ratio_middleware": round(med["middleware asked"] / med["middleware"], 4),
                "added_per_call_us": round(
                    (med["middleware asked"] - med["middleware"]) / calls, 4
                ),
            }
        )
    return {
        "request": f"{HOOK_MEMOIZED} memoized + 1 new step",
        "rows": rows,
        "not_asked_lookup_ns": round(_lookup_ns(), 1),
    }


def report(result: dict[str, Any]) -> str:
    lines = [
        f"Hook trace cost on a {result['request']} request (median µs; asked = "
        "`X-Inngest-MW-Trace: 1`):",
        "",
        "| colour | no middleware | asked | ratio | 10 middlewares, every hook | asked | ratio"
        " | traced calls | added per call |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in result["rows"]:
        m = row["median_us"]
        lines.append(
            f"| {row['colour']} | {m['none']:.1f} | {m['none asked']:.1f} |"
            f" {row['ratio_no_middleware']:.3f} | {m['middleware']:.1f} |"
            f" {m['middleware asked']:.1f} | {row['ratio_middleware']:.3f} |"
            f" {row['traced_calls']} | {row['added_per_call_us']:.3f} µs |"
        )
    lines += [
        "",
        f"Not asked: one header test per request, {result['not_asked_lookup_ns']:.0f} ns.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hook_trace", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny counts: checks it runs")
    add_out_options(parser)
    args = parser.parse_args(argv)
    cfg = Config(repeat=3, target_s=0.01, warmup=1, quick=True) if args.quick else Config.full()
    result = measure(cfg)
    out = out_dir(args)
    out.mkdir(parents=True, exist_ok=True)
    (out / "hook_trace.json").write_text(json.dumps(result, indent=2) + "\n")
    print(report(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
