"""The ``tracestate`` a call request carries: the traceref JSON an app's span exporter reads back."""

from __future__ import annotations

import json
import re
from urllib.parse import unquote

from inngest_mw_dev.ids import deterministic_uuid
from inngest_mw_dev.tracectx import trace_headers, tracestate


def _parts(state: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in state.split(","))


def test_traceref_is_percent_encoded_json_with_one_trace_per_run() -> None:
    parts = _parts(tracestate("01KBFRX0T8X2Y3Z4A5B6C7D8E9", "shop-checkout"))
    assert set(parts) == {"inngest@traceref", "inngest@fn"}
    assert re.fullmatch(r"[A-Za-z0-9%._~-]+", parts["inngest@traceref"])  # no raw , = or "
    ref = json.loads(unquote(parts["inngest@traceref"]))
    assert list(ref) == ["tp", "ts"]
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", ref["tp"])
    assert ref["ts"] == ""
    assert parts["inngest@fn"] == deterministic_uuid("shop-checkout")


def test_same_run_same_state_other_run_other_trace() -> None:
    first = tracestate("01KBFRX0T8X2Y3Z4A5B6C7D8E9", "fn")
    assert tracestate("01KBFRX0T8X2Y3Z4A5B6C7D8E9", "fn") == first
    other = tracestate("01KBFRX0T8X2Y3Z4A5B6C7D8EA", "fn")
    assert _parts(other)["inngest@traceref"] != _parts(first)["inngest@traceref"]
    assert trace_headers("01KBFRX0T8X2Y3Z4A5B6C7D8E9", "fn") == {"tracestate": first}
