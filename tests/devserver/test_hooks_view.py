"""Whatever an app puts in its trace header, the engine stores, lists, prints and renders it
without an exception (so never a 5xx): decode -> stored row -> API JSON -> CLI lines -> HTML."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from inngest_mw_dev.hooks_view import format_us, hook_lines, requests_view
from inngest_mw_dev.store import RequestHooksRow
from inngest_mw_dev.ui import _environment

from inngest_mw.hooktrace import HookTrace, decode

_ATOM = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=40)
)
_ENTRY = st.lists(_ATOM, min_size=7, max_size=7) | st.lists(_ATOM, max_size=9)
_HEADER = st.one_of(
    st.text(max_size=200),
    st.builds(
        lambda h, more: json.dumps({"v": 1, "h": h, "more": more}),
        st.lists(_ENTRY, max_size=80),
        _ATOM,
    ),
    st.builds(
        lambda h: json.dumps({"v": 1, "h": h}),
        st.lists(
            st.tuples(
                st.text(min_size=1, max_size=90),
                st.sampled_from(["wrap_step", "wrap_function", "on_step_start", "x"]),
                st.integers(0, 10**9),
                st.integers(0, 10**9),
                st.integers(0, 10**9),
                st.none() | st.text(max_size=70),
                st.none() | st.text(max_size=200),
            ).map(list),
            max_size=70,
        ),
    ),
)


def _row(value: str, attempt: int) -> RequestHooksRow | None:
    seen = decode(value)
    if seen is None:
        return None
    calls = [call.to_json() for call in seen.calls]
    # Stored as JSON and read back, as the store does.
    stored: list[dict[str, Any]] = json.loads(json.dumps(calls))
    return RequestHooksRow(
        "01RUN", 1000.0 + attempt, "step", attempt, "completed", stored, seen.more, seen.problem
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(_HEADER, min_size=1, max_size=4))
def test_any_trace_header_is_listed_printed_and_rendered(values: list[str]) -> None:
    rows = [row for i, v in enumerate(values) if (row := _row(v, i)) is not None]
    view = requests_view(rows, {"h1": "charge"}, run_start=999.0)
    assert [r["request"] for r in view] == list(range(1, len(rows) + 1))
    json.dumps(view)
    for request in view:
        assert all(call["depth"] >= 0 for call in request["hooks"])
        assert request["span_us"] >= 1
    lines = hook_lines(view)
    assert len(lines) >= len(view)
    html = _environment().get_template("middleware.html").render(run={"middleware": view})
    assert 'id="middleware"' in html
    assert "<script" not in html.replace("&lt;script", "")  # labels are escaped


def test_a_real_trace_reads_back_as_it_was_written() -> None:
    trace = HookTrace()
    outer = trace.begin("Around", "wrap_function", None)
    inner = trace.begin("audit", "on_step_start", "charge")
    inner[3] = 2_000
    outer[3], outer[4] = 9_000, 7_000
    row = _row(trace.encode(), 0)
    assert row is not None
    [request] = requests_view([row], {}, run_start=999.0)
    assert [(h["hook"], h["depth"]) for h in request["hooks"]] == [
        ("wrap_function", 0),
        ("on_step_start", 1),
    ]
    assert request["hooks"][0]["self_us"] == 2
    assert [format_us(us) for us in (999, 1_000, 12_345_678)] == ["999µs", "1.00ms", "12.35s"]
