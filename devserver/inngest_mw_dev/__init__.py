"""Embedded Inngest-compatible engine: ``Engine`` (asyncio) and ``EngineThread`` (background)."""

from inngest_mw_dev.engine import Engine
from inngest_mw_dev.thread import EngineThread

__all__ = ["Engine", "EngineThread"]
