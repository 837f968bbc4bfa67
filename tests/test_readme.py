"""Every usage block of the README runs, in order, in one namespace, as a reader would paste them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from inngest_mw.testing import run_sync

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def test_the_readme_has_usage_blocks_and_every_one_runs() -> None:
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 3
    namespace: dict[str, Any] = {"__name__": "readme"}
    for index, block in enumerate(blocks):
        code = compile(block, f"README.md python block {index + 1}", "exec")
        exec(code, namespace)
    # The middleware block's function reads what its middleware injected.
    result = run_sync(namespace["orders"], event={"name": "shop/orders", "data": {}})
    assert result.output == ["o-7"]
