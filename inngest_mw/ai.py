"""``step.ai.infer``: model helpers for the request the server makes on the run's behalf.

A helper (``openai``, ``anthropic``, ``gemini``) says where the provider's API is, how it
authenticates and which body format it takes; the body itself is the provider's own request shape,
passed through untouched except for the model name filled in when the body has none. The server
(``AIGateway`` opcode) makes the request, so the call is durable and is not app compute time; the
step returns the provider's JSON answer as it came.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from inngest_mw.errors import ConfigError

__all__ = ["AIFormat", "AIModel", "anthropic", "gemini", "infer_options", "openai"]


class AIFormat(enum.StrEnum):
    """The request formats the server knows (it decides where the key goes from this)."""

    OPENAI_CHAT = "openai-chat"
    """``Authorization: Bearer <key>``; any OpenAI-compatible chat completions API."""
    ANTHROPIC = "anthropic"
    """``x-api-key: <key>``."""
    GEMINI = "gemini"
    """``?key=<key>`` appended to the URL."""
    BEDROCK = "bedrock"
    """``Authorization: <key>`` verbatim (a pre-signed value)."""


@dataclass(frozen=True, slots=True)
class AIModel:
    """Where and how to call one model; build it with ``openai``, ``anthropic`` or ``gemini``."""

    url: str
    format: AIFormat
    auth_key: str = field(repr=False)
    model: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def request_body(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``body`` with the model name filled in where the format carries it in the body."""
        out = dict(body)
        if self.model and self.format in (AIFormat.OPENAI_CHAT, AIFormat.ANTHROPIC):
            out.setdefault("model", self.model)
        return out


def _key(api_key: str | None, env: str, helper: str) -> str:
    key = api_key if api_key is not None else os.environ.get(env)
    if not key:
        raise ConfigError(f"{helper}: no API key: pass api_key=... or set {env}")
    return key


def _base(base_url: str) -> str:
    return base_url if base_url.endswith("/") else base_url + "/"


def openai(
    model: str,
    *,
    api_key: str | None = None,
    base_url: str = "https://api.openai.com/v1/",
    headers: Mapping[str, str] | None = None,
) -> AIModel:
    """An OpenAI-compatible chat completions model (``base_url`` for any compatible API)."""
    return AIModel(
        url=_base(base_url) + "chat/completions",
        format=AIFormat.OPENAI_CHAT,
        auth_key=_key(api_key, "OPENAI_API_KEY", "openai"),
        model=model,
        headers=dict(headers or {}),
    )


def anthropic(
    model: str,
    *,
    api_key: str | None = None,
    base_url: str = "https://api.anthropic.com/v1/",
    version: str = "2023-06-01",
    headers: Mapping[str, str] | None = None,
) -> AIModel:
    """An Anthropic Messages API model; ``version`` is sent as ``anthropic-version``."""
    return AIModel(
        url=_base(base_url) + "messages",
        format=AIFormat.ANTHROPIC,
        auth_key=_key(api_key, "ANTHROPIC_API_KEY", "anthropic"),
        model=model,
        headers={"anthropic-version": version, **(headers or {})},
    )


def gemini(
    model: str,
    *,
    api_key: str | None = None,
    base_url: str = "https://generativelanguage.googleapis.com/v1beta/",
    headers: Mapping[str, str] | None = None,
) -> AIModel:
    """A Gemini ``generateContent`` model (the model is part of the URL)."""
    return AIModel(
        url=f"{_base(base_url)}models/{model}:generateContent",
        format=AIFormat.GEMINI,
        auth_key=_key(api_key, "GEMINI_API_KEY", "gemini"),
        model=model,
        headers=dict(headers or {}),
    )


def infer_options(model: AIModel, body: Mapping[str, Any]) -> dict[str, Any]:
    """The ``AIGateway`` opcode's options."""
    if not isinstance(model, AIModel):
        raise TypeError("ai.infer: model must be an AIModel, e.g. inngest_mw.ai.openai('gpt-4o')")
    if not isinstance(body, Mapping):
        raise TypeError("ai.infer: body must be a dict (the provider's request body)")
    return {
        "type": "step.ai.infer",
        "url": model.url,
        "headers": dict(model.headers),
        "auth_key": model.auth_key,
        "format": str(model.format),
        "body": model.request_body(body),
    }
