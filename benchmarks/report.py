"""Results: the targets derived from the rows, and the JSON and markdown renderings."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.engine_throughput import EngineRow
from benchmarks.floor import AWAIT_FLOOR, METHOD_FLOOR, FloorRow
from benchmarks.framework import FrameworkRow
from benchmarks.hooks import COLOURS, HOOK_MEMOIZED, MAIN_COLOURS, HookRow, MiddlewareRow
from benchmarks.load import percentiles
from benchmarks.middleware_overhead import MIDDLEWARE, STEP_CALLS, OverheadRow
from benchmarks.request_overhead import VARIANTS, RequestRow
from benchmarks.timing import Stats

__all__ = ["LinearityRow", "Results", "Target", "linearity", "targets", "to_json", "to_markdown"]


@dataclass(slots=True)
class Results:
    meta: dict[str, Any]
    floor: list[FloorRow] = field(default_factory=list)
    requests: list[RequestRow] = field(default_factory=list)
    framework: list[FrameworkRow] = field(default_factory=list)
    hooks: list[HookRow] = field(default_factory=list)
    middleware: list[MiddlewareRow] = field(default_factory=list)
    overhead: list[OverheadRow] = field(default_factory=list)
    engine: EngineRow | None = None


@dataclass(frozen=True, slots=True)
class LinearityRow:
    variant: str
    sdk: str
    per_step_us: dict[int, float]
    """Memoized-step count -> (µs at that count - µs at 0) / count."""

    @property
    def growth(self) -> float | None:
        """Per-step cost at the largest count over the second largest: ~1 when linear."""
        counts = sorted(self.per_step_us)
        if len(counts) < 2 or self.per_step_us[counts[-2]] <= 0:
            return None
        return self.per_step_us[counts[-1]] / self.per_step_us[counts[-2]]


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    value: float
    goal: str
    met: bool
    unit: str = ""


def linearity(rows: Iterable[RequestRow]) -> list[LinearityRow]:
    """µs per memoized step, from the 0-step request, at the larger counts (100 and 1000)."""
    by_variant: dict[str, dict[int, RequestRow]] = {}
    for row in rows:
        by_variant.setdefault(row.variant, {})[row.memoized] = row
    out: list[LinearityRow] = []
    for variant, by_count in by_variant.items():
        if 0 not in by_count:
            continue
        counts = [n for n in sorted(by_count) if n >= 100] or [n for n in sorted(by_count) if n]
        for sdk in ("ours", "official"):
            zero = _sdk(by_count[0], sdk).median_us
            per_step = {n: (_sdk(by_count[n], sdk).median_us - zero) / n for n in counts}
            out.append(LinearityRow(variant, sdk, per_step))
    return out


def _sdk(row: RequestRow, sdk: str) -> Stats:
    return row.ours if sdk == "ours" else row.official


def targets(results: Results) -> list[Target]:
    out: list[Target] = []
    for row in results.requests:
        if row.memoized == 10:
            out.append(
                Target(
                    f"ours/official, {row.variant}, 10 memoized steps",
                    row.ratio,
                    "<= 0.5",
                    row.ratio <= 0.5,
                    "x",
                )
            )
        if row.memoized == 1000:
            out.append(
                Target(
                    f"ours/official, {row.variant}, 1,000 memoized steps",
                    row.ratio,
                    "<= 0.1",
                    row.ratio <= 0.1,
                    "x",
                )
            )
    for fw in results.framework:
        if fw.memoized == 10 and fw.function == "async" and fw.net_ratio is not None:
            out.append(
                Target(
                    "through FastAPI, ours/official net of the framework, async, 10 memoized",
                    fw.net_ratio,
                    "<= 0.14",
                    fw.net_ratio <= 0.14,
                    "x",
                )
            )
    floors = {f.name: f.ns / 1000 for f in results.floor}
    for hook in results.hooks:
        if hook.colour not in MAIN_COLOURS:
            out.append(
                Target(
                    f"trivial `{hook.hook}` ({hook.kind}), {hook.colour} (crossing), per call",
                    hook.per_call_us,
                    "<= 5 µs",
                    hook.per_call_us <= 5,
                    "µs",
                )
            )
    by_key = {(m.colour, m.overrides, m.count): m for m in results.middleware}
    for (colour, overrides, count), noops in by_key.items():
        none = by_key.get((colour, "none", count))
        floor = floors.get(AWAIT_FLOOR if colour == "async" else METHOD_FLOOR)
        if overrides != "all" or count != 10 or none is None or not floor or not noops.calls:
            continue
        per_call = (noops.stats.median_us - none.stats.median_us) / (count * noops.calls)
        out.append(
            Target(
                f"no-op hook call (10 `all` middlewares), {colour}, per call / floor",
                max(per_call, 0.0) / floor,
                "<= 3",
                per_call / floor <= 3,
                "x",
            )
        )
    for mw in results.middleware:
        if mw.count == 10:
            what = {
                "none": "no hook",
                "all": "every hook with a no-op",
                "trivial": "every hook with a trivial body",
            }[mw.overrides]
            goal = 1.05 if mw.overrides == "none" else 1.5
            out.append(
                Target(
                    f"10 middlewares overriding {what}, {mw.colour}: request time ratio",
                    mw.ratio,
                    f"<= {goal}",
                    mw.ratio <= goal,
                    "x",
                )
            )
    return out


# -- JSON -------------------------------------------------------------------------------------


def _stats(s: Stats) -> dict[str, Any]:
    return {
        "median_us": round(s.median_us, 3),
        "spread": round(s.spread, 4),
        "number": s.number,
        "repeat": len(s.values_us),
    }


def _r(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def to_json(results: Results) -> dict[str, Any]:
    return {
        "meta": results.meta,
        "targets": [
            {
                "name": t.name,
                "value": _r(t.value),
                "unit": t.unit,
                "goal": t.goal,
                "met": t.met,
            }
            for t in targets(results)
        ],
        "floor": [{"name": f.name, "ns": round(f.ns, 2)} for f in results.floor],
        "requests": [
            {
                "variant": r.variant,
                "memoized": r.memoized,
                "body_bytes": r.body_bytes,
                "ours": _stats(r.ours),
                "official": _stats(r.official),
                "ratio": _r(r.ratio),
            }
            for r in results.requests
        ],
        "linearity": [
            {
                "variant": lin.variant,
                "sdk": lin.sdk,
                "per_step_us": {str(n): _r(v, 3) for n, v in lin.per_step_us.items()},
                "growth": _r(lin.growth, 3),
            }
            for lin in linearity(results.requests)
        ],
        "framework": [
            {
                "function": f.function,
                "memoized": f.memoized,
                "floor": _stats(f.floor),
                "official": _stats(f.official),
                "ours": _stats(f.ours),
                "ours_bare": _stats(f.ours_bare),
                "ratio": _r(f.ratio),
                "net_ratio": _r(f.net_ratio),
            }
            for f in results.framework
        ],
        "hooks": [
            {
                "hook": h.hook,
                "kind": h.kind,
                "colour": h.colour,
                "copies": h.copies,
                "calls_per_request": h.calls,
                "base": _stats(h.base),
                "without_hook": _stats(h.without_hook),
                "with_hook": _stats(h.with_hook),
                "per_call_us": _r(h.per_call_us),
                "gross_per_call_us": _r(h.gross_per_call_us),
            }
            for h in results.hooks
        ],
        "middleware": [
            {
                "colour": m.colour,
                "overrides": m.overrides,
                "count": m.count,
                "base": _stats(m.base),
                "stats": _stats(m.stats),
                "ratio": _r(m.ratio),
                "per_middleware_us": _r(m.per_middleware_us, 3),
                "direct": None if m.direct is None else _stats(m.direct),
                "floor_ratio": None if m.floor_ratio is None else _r(m.floor_ratio),
                "dispatch_us_per_call": (
                    None if m.dispatch_us_per_call is None else _r(m.dispatch_us_per_call, 3)
                ),
            }
            for m in results.middleware
        ],
        "overhead": [
            {
                "middleware": o.middleware,
                "function": o.function,
                "base": _stats(o.base),
                "stats": _stats(o.stats),
                "ratio": _r(o.ratio),
                "added_us": _r(o.added_us, 2),
                "per_step_us": _r(o.per_step_us, 3),
            }
            for o in results.overhead
        ],
        "engine": None if results.engine is None else _engine_json(results.engine),
    }


def _distribution(values: tuple[float, ...]) -> dict[str, Any]:
    p50, p99 = percentiles(values)
    return {"count": len(values), "p50_ms": p50, "p99_ms": p99}


def _engine_json(e: EngineRow) -> dict[str, Any]:
    return {
        "runs": e.runs,
        "steps": e.steps,
        "senders": e.senders,
        "completed": e.completed,
        "exact": e.exact,
        "send_s": round(e.send_s, 3),
        "total_s": round(e.total_s, 3),
        "events_per_second": round(e.events_per_second, 1),
        "runs_per_second": round(e.runs_per_second, 1),
        "run": _distribution(e.run_ms),
        "step_engine": _distribution(e.step_ms),
        "first_step": _distribution(e.first_step_ms),
        "step_gap": _distribution(e.step_gap_ms),
        "peak_rss_mib": e.peak_rss_mib,
    }


# -- markdown ---------------------------------------------------------------------------------


def _table(header: list[str], rows: Iterable[list[str]], align: str = "") -> list[str]:
    align = align or "l" + "r" * (len(header) - 1)
    marks = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _us(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ms(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"


def _noise(*stats: Stats) -> str:
    return f"±{max(s.spread for s in stats) * 100:.0f}%"


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KB" if n >= 1024 else f"{n} B"


def to_markdown(results: Results) -> str:
    meta = results.meta
    out: list[str] = ["# inngest-mw benchmark results", ""]
    out.append(
        f"{meta.get('date', '?')} · Python {meta.get('python', '?')} · {meta.get('cpu', '?')} "
        f"({meta.get('cpu_count', '?')} CPUs) · inngest {meta.get('inngest_version', '?')} · "
        f"inngest-mw {meta.get('inngest_mw_version', '?')} · "
        f"{'QUICK (tiny counts: structure only, not numbers)' if meta.get('quick') else 'full'} "
        f"run: {meta.get('repeat', '?')} repeats of ~{meta.get('target_ms', '?')} ms per case, "
        f"{meta.get('duration_s', '?')} s in all."
    )
    out += [
        "",
        "Times are medians over the repeats of the mean per request; ± is half the interquartile "
        "range of the repeats relative to the median (the worse of the cells compared).",
        "",
    ]
    goals = targets(results)
    if goals:
        out += ["## Targets", ""]
        out += _table(
            ["target", "measured", "goal", "met"],
            (
                [t.name, f"{t.value:.3f}{' ' + t.unit if t.unit else ''}", t.goal, _yes(t.met)]
                for t in goals
            ),
            "lrll",
        )
        out.append("")
    if results.requests:
        out += [
            "## 1. Request overhead, no framework",
            "",
            "One call request straight into each SDK's handler (dev mode, no signature): "
            "`n` memoized `step.run` results (~100 B each) replayed, then one new step executed "
            "(206 + one `StepRun`). µs per request.",
            "",
        ]
        for variant, label in VARIANTS.items():
            rows = [r for r in results.requests if r.variant == variant]
            if not rows:
                continue
            out += [f"**{label}**", ""]
            out += _table(
                ["memoized", "body", "ours µs", "official µs", "ours/official", "noise"],
                (
                    [
                        str(r.memoized),
                        _kb(r.body_bytes),
                        _us(r.ours.median_us),
                        _us(r.official.median_us),
                        f"{r.ratio:.3f}",
                        _noise(r.ours, r.official),
                    ]
                    for r in rows
                ),
            )
            out.append("")
        lin = linearity(results.requests)
        if lin:
            counts = sorted({n for row in lin for n in row.per_step_us})
            out += [
                "**Cost per memoized step** = (µs at n - µs at 0) / n. Flat across n means "
                "linear replay; growing with n means quadratic.",
                "",
            ]
            out += _table(
                ["variant", "SDK", *(f"µs/step @{n}" for n in counts), "growth"],
                (
                    [
                        row.variant,
                        row.sdk,
                        *(_us(row.per_step_us[n]) for n in counts),
                        "-" if row.growth is None else f"{row.growth:.2f}x",
                    ]
                    for row in lin
                ),
                "ll" + "r" * (len(counts) + 1),
            )
            out.append("")
    if results.framework:
        out += [
            "## 2. Through a framework (FastAPI, in process via `httpx.ASGITransport`)",
            "",
            '`floor`: a trivial FastAPI POST route returning `{"ok": true}`, same body posted. '
            "`ours`: `inngest_mw_fastapi.serve` (our ASGI app as the route's endpoint); `ours bare`: our ASGI app with no framework. "
            "`net ratio` = (ours - floor) / (official - floor). A sync function behind an async "
            "framework runs in a worker thread in both SDKs. µs per request.",
            "",
        ]
        out += _table(
            [
                "function",
                "memoized",
                "floor",
                "official",
                "ours",
                "ours bare",
                "ours/official",
                "net ratio",
                "noise",
            ],
            (
                [
                    f.function,
                    str(f.memoized),
                    _us(f.floor.median_us),
                    _us(f.official.median_us),
                    _us(f.ours.median_us),
                    _us(f.ours_bare.median_us),
                    f"{f.ratio:.3f}",
                    "-" if f.net_ratio is None else f"{f.net_ratio:.3f}",
                    _noise(f.floor, f.official, f.ours, f.ours_bare),
                ]
                for f in results.framework
            ),
            "llrrrrrrr",
        )
        out.append("")
    if results.floor or results.hooks or results.middleware:
        out += ["## 3. Hook overhead", ""]
    if results.floor:
        out += ["**Physical floor** (net of the empty loop)", ""]
        out += _table(["operation", "ns"], ([f.name, f"{f.ns:.1f}"] for f in results.floor))
        out.append("")
    if results.hooks:
        labels = {c.key: c.label for c in COLOURS}
        out += [
            f"**One trivial hook call** (its body stores its argument) on a {HOOK_MEMOIZED}-step "
            f"request ({HOOK_MEMOIZED} memoized + 1 new step). `copies` middlewares override only "
            "the hook; `µs/call` = (with - "
            "the same number of middlewares overriding nothing) / (copies x calls); `gross` "
            "compares with no middleware, so it also charges each middleware's per-request "
            "instance. Colours: "
            + "; ".join(f"`{key}` = {label}" for key, label in labels.items())
            + ".",
            "",
        ]
        out += _table(
            [
                "hook",
                "kind",
                "colour",
                "copies",
                "calls/request",
                "request µs (none)",
                "µs/call",
                "gross µs/call",
                "noise",
            ],
            (
                [
                    f"`{h.hook}`",
                    h.kind,
                    h.colour,
                    str(h.copies),
                    str(h.calls),
                    _us(h.base.median_us),
                    _us(h.per_call_us),
                    _us(h.gross_per_call_us),
                    _noise(h.base, h.without_hook, h.with_hook),
                ]
                for h in results.hooks
            ),
            "lllrrrrrr",
        )
        out.append("")
    if results.middleware:
        out += [
            f"**N middlewares** on the same {HOOK_MEMOIZED}-step request, as a ratio to no "
            "middleware. `none`: classes overriding no hook; `all`: every hook overridden with a "
            "no-op (`return None`, wrap hooks `return call_next()`), which is recognised and "
            "never called; `trivial`: every hook overridden with a body that stores its argument, "
            "so every hook is dispatched and called. For `trivial`, `floor ratio` is the request "
            "plus calling the same hooks of N instances directly, as often as one request calls "
            "them, with no SDK code (nested `call_next` partials for wrap hooks), over the "
            "request: no dispatch can do better. `dispatch µs/call` is what the SDK adds per "
            "hook call beyond that.",
            "",
        ]
        out += _table(
            [
                "colour",
                "overrides",
                "N",
                "µs/request",
                "ratio",
                "µs per middleware",
                "floor ratio",
                "dispatch µs/call",
                "noise",
            ],
            (
                [
                    m.colour,
                    m.overrides,
                    str(m.count),
                    _us(m.stats.median_us),
                    f"{m.ratio:.3f}",
                    _us(m.per_middleware_us),
                    "" if m.floor_ratio is None else f"{m.floor_ratio:.3f}",
                    "" if m.dispatch_us_per_call is None else f"{m.dispatch_us_per_call:.3f}",
                    _noise(m.base, m.stats),
                ]
                for m in results.middleware
            ),
            "llrrrrrrr",
        )
        out.append("")
    if results.overhead:
        out += _overhead_markdown(results.overhead)
    if results.engine is not None:
        out += _engine_markdown(results.engine)
    return "\n".join(out)


def _overhead_markdown(rows: list[OverheadRow]) -> list[str]:
    out = [
        "## 4. Middleware overhead",
        "",
        f"Each shipped middleware alone on the section-3 request ({HOOK_MEMOIZED} memoized + 1 new "
        f"step = {STEP_CALLS} step calls), exporting to memory, against no middleware in the same "
        f"run. `µs/step` = added µs / {STEP_CALLS}. `async`: async function through `handle`; "
        "`sync`: sync function through `handle_sync`. "
        + "; ".join(f"`{key}` = {label}" for key, label in MIDDLEWARE.items())
        + ".",
        "",
    ]
    out += _table(
        [
            "middleware",
            "function",
            "µs (none)",
            "µs (with)",
            "ratio",
            "added µs",
            "µs/step",
            "noise",
        ],
        (
            [
                o.middleware,
                o.function,
                _us(o.base.median_us),
                _us(o.stats.median_us),
                f"{o.ratio:.3f}",
                _us(o.added_us),
                _us(o.per_step_us),
                _noise(o.base, o.stats),
            ]
            for o in rows
        ),
        "llrrrrrr",
    )
    return [*out, ""]


def _engine_markdown(e: EngineRow) -> list[str]:
    out = [
        "## 5. Engine throughput",
        "",
        f"{e.runs:,} events, sent by {e.senders} concurrent HTTP clients, to the embedded engine "
        f"(`EngineThread`) driving a {e.steps}-step async function in an inngest-mw app under "
        "uvicorn, all in one process on 127.0.0.1. One run each; the run is over when the engine "
        "records it `Completed`.",
        "",
    ]
    out += _table(
        [
            "runs",
            "completed",
            "exact",
            "events/s (ingest)",
            "runs/s",
            "wall s",
            "peak RSS (process)",
        ],
        [
            [
                f"{e.runs:,}",
                f"{e.completed:,}",
                _yes(e.exact),
                f"{e.events_per_second:,.0f}",
                f"{e.runs_per_second:,.1f}",
                f"{e.total_s:.2f}",
                f"{e.peak_rss_mib:.0f} MiB",
            ]
        ],
        "rrlrrrr",
    )
    out += ["", "**Latency distribution** (ms)", ""]
    out += _table(
        ["latency", "measured by", "samples", "p50 ms", "p99 ms"],
        (
            [what, who, f"{len(values):,}", _ms(p50), _ms(p99)]
            for what, who, values in (
                ("event sent -> run completed", "engine `ended_at`", e.run_ms),
                ("event sent -> first step runs", "app clock", e.first_step_ms),
                ("step -> next step runs", "app clock", e.step_gap_ms),
                ("step duration (call sent -> step saved)", "engine `duration_ms`", e.step_ms),
            )
            for p50, p99 in [percentiles(values)]
        ),
        "llrrr",
    )
    return [*out, ""]


def _yes(met: bool) -> str:
    return "yes" if met else "**no**"
