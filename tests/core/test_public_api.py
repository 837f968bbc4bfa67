"""The public surface: the names the README and the architecture promise, a sorted ``__all__``, no optional imports."""

from __future__ import annotations

import subprocess
import sys

import inngest_mw

PROMISED_NAMES = [
    "Inngest",
    "Context",
    "ContextSync",
    "Step",
    "StepSync",
    "Event",
    "Function",
    "TriggerEvent",
    "TriggerCron",
    "Batch",
    "Cancel",
    "Concurrency",
    "Debounce",
    "Priority",
    "RateLimit",
    "Throttle",
    "Timeouts",
    "Singleton",
    "NonRetriableError",
    "RetryAfterError",
    "StepError",
    "Middleware",
    "MiddlewareSync",
]


def test_every_public_name_of_the_design_is_exported() -> None:
    missing = [name for name in PROMISED_NAMES if name not in inngest_mw.__all__]
    assert missing == []
    for name in inngest_mw.__all__:
        assert hasattr(inngest_mw, name), name


def test_all_is_sorted() -> None:
    assert list(inngest_mw.__all__) == sorted(inngest_mw.__all__)


def test_importing_the_core_loads_no_optional_dependency() -> None:
    optional = [
        "starlette",
        "uvicorn",
        "opentelemetry",
        "sentry_sdk",
        "nacl",
        "fastapi",
        "flask",
        "pytest",
    ]
    code = f"import sys, inngest_mw, inngest_mw.testing; print([m for m in {optional!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_shipped_middleware_and_integrations_use_only_public_names() -> None:
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    sources = [
        *root.glob("middleware/*/inngest_mw_*/**/*.py"),
        *root.glob("integrations/*/inngest_mw_*/**/*.py"),
    ]
    assert sources
    private = []
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith("inngest_mw."):
                    private.append(f"{path.name}: from {node.module}")
                elif node.module == "inngest_mw":
                    private += [
                        f"{path.name}: {a.name}"
                        for a in node.names
                        if a.name not in inngest_mw.__all__
                    ]
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "inngest_mw"
                and node.attr not in inngest_mw.__all__
            ):
                private.append(f"{path.name}: inngest_mw.{node.attr}")
    assert private == []
