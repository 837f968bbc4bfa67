"""``EncryptionMiddleware``: step outputs, function results and chosen event fields leave the
process encrypted and come back decrypted, so the server only ever stores ciphertext.

It is a ``MiddlewareSync`` (no I/O), so one class serves sync and async functions. Encryption runs
where a value leaves (``transform_output`` for step outputs and results, ``before_send_events``,
``transform_step_input`` for invoke payloads); decryption runs once per request in
``transform_input``, over memoized steps and incoming events, before any user code runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inngest_mw import ConfigError, MiddlewareSync, Opcode
from inngest_mw_encryption import _marker
from inngest_mw_encryption._codec import Codec
from inngest_mw_encryption.errors import DecryptionError
from inngest_mw_encryption.strategy import EncryptionStrategy, LibsodiumStrategy

if TYPE_CHECKING:
    from inngest_mw import (
        Context,
        ContextSync,
        Event,
        Function,
        Inngest,
        Memo,
        MiddlewareFactory,
        StepInfo,
        StepMemos,
        TransformOutputResult,
    )

__all__ = ["EncryptionMiddleware", "EncryptionSettings"]

DEFAULT_EVENT_FIELD = "encrypted"


@dataclass(frozen=True, slots=True)
class EncryptionSettings:
    """What every request's middleware instance shares; built once by ``factory``."""

    strategy: EncryptionStrategy
    event_encryption_field: str = DEFAULT_EVENT_FIELD
    decrypt_only: bool = False


class EncryptionMiddleware(MiddlewareSync):
    """Encrypts on the way out, decrypts on the way in. Build it with ``factory``:

    ``Inngest(middleware=[EncryptionMiddleware.factory(key=os.environ["ENC_KEY"])])``.
    """

    def __init__(
        self, client: Inngest, raw_request: object, settings: EncryptionSettings | None = None
    ) -> None:
        if settings is None:
            # Listed as a bare class, it would be built per request with no key to use.
            raise ConfigError(
                "EncryptionMiddleware needs a key: list EncryptionMiddleware.factory(key=...) "
                "as middleware, not the class itself"
            )
        super().__init__(client, raw_request)
        self.settings = settings
        self._codec = Codec(settings.strategy)

    @classmethod
    def factory(
        cls,
        key: str | bytes | None = None,
        *,
        fallback_decryption_keys: Sequence[str | bytes] = (),
        event_encryption_field: str = DEFAULT_EVENT_FIELD,
        decrypt_only: bool = False,
        strategy: EncryptionStrategy | None = None,
    ) -> MiddlewareFactory:
        """Encrypt with ``key``, decrypt with it or any fallback key (rotation).

        ``decrypt_only`` rolls encryption in or out: values are decrypted, nothing new is
        encrypted. ``strategy`` replaces the libsodium default (then pass no keys); it holds its
        own keys and rotation.
        """
        if strategy is None:
            if key is None:
                raise ConfigError("EncryptionMiddleware.factory: pass key=... (or strategy=...)")
            strategy = LibsodiumStrategy(key, fallback_decryption_keys)
        elif key is not None or fallback_decryption_keys:
            raise ConfigError(
                "EncryptionMiddleware.factory: a custom strategy holds its own keys; "
                "pass either key/fallback_decryption_keys or strategy"
            )
        if not isinstance(event_encryption_field, str) or not event_encryption_field:
            raise ConfigError("EncryptionMiddleware.factory: event_encryption_field must be a name")
        settings = EncryptionSettings(strategy, event_encryption_field, decrypt_only)

        def make(client: Inngest, raw_request: object) -> EncryptionMiddleware:
            return cls(client, raw_request, settings)

        make.__qualname__ = f"{cls.__qualname__}.factory"
        return make

    # -- inbound ------------------------------------------------------------------------------

    def transform_input(
        self, ctx: Context | ContextSync, function: Function[Any], steps: StepMemos
    ) -> None:
        for hashed_id, memo in steps.items():
            self._open_memo(hashed_id, memo)
        self._open_event(ctx.event, "the triggering event")
        for index, event in enumerate(ctx.events):
            self._open_event(event, f"event {index} of the batch")

    def _open_memo(self, hashed_id: str, memo: Memo) -> None:
        what = f"step {hashed_id} output"
        data = memo.data
        if _marker.is_marker(data):
            memo.data = self._codec.open(data, what)
        elif _is_event(data):
            # A wait_for_event result is the matched event itself, whose fields may be encrypted;
            # memos do not say their step kind, so any event-shaped output is treated as one.
            opened = self._codec.open_fields(data["data"], f"the event step {hashed_id} got")
            if opened is not None:
                memo.data = {**data, "data": opened}
        error = memo.error
        if _marker.is_marker(error):
            opened_error = self._codec.open(error, f"step {hashed_id} error")
            if not isinstance(opened_error, dict):
                raise DecryptionError(f"cannot decrypt step {hashed_id} error: not an object")
            memo.error = opened_error
        elif error is not None:
            memo.error = self._codec.open_fields(error, f"step {hashed_id} error") or error

    def _open_event(self, event: Event, what: str) -> None:
        opened = self._codec.open_fields(event.data, f"{what} ({event.name!r})")
        if opened is not None:
            event.data = opened

    # -- outbound -----------------------------------------------------------------------------

    def transform_output(self, result: TransformOutputResult) -> None:
        # A new step's output (StepRun) or the function's return value; never the null data of
        # sleeps, waits or invokes. Sealing here rather than in ``wrap_step_handler`` keeps the
        # hook a plain call on the async path (a sync wrap hook there costs a thread hop) and lets
        # ``on_step_complete`` observers see plaintext.
        if self.settings.decrypt_only or result.error is not None or not result.has_output():
            return
        if result.output is None:
            return
        if result.step is None:
            result.output = self._seal(result.output, "the function's return value")
        elif result.step.op == Opcode.STEP_RUN:
            result.output = self._seal(result.output, f"step {result.step.id!r} output")
            opts = result.step.opts
            if opts is not None and "input" in opts:  # ai.wrap shows its input: sealed too
                opts["input"] = [self._seal(opts["input"], f"step {result.step.id!r} input")]

    def before_send_events(self, events: list[Event]) -> list[Event] | None:
        if self.settings.decrypt_only:
            return None
        field = self.settings.event_encryption_field
        if not any(event.data.get(field) is not None for event in events):
            return None
        # Copies, so the caller's events (perhaps sent again on a retry) stay plaintext.
        return [
            event
            if event.data.get(field) is None
            else event.model_copy(
                update={
                    "data": {
                        **event.data,
                        field: self._seal(
                            event.data[field], f"field {field!r} of event {event.name!r}"
                        ),
                    }
                }
            )
            for event in events
        ]

    def transform_step_input(self, info: StepInfo) -> None:
        if self.settings.decrypt_only or info.kind != "invoke" or info.memoized:
            return
        payload = info.options.get("payload")
        data = payload.get("data") if isinstance(payload, dict) else None
        field = self.settings.event_encryption_field
        if not isinstance(payload, dict) or not isinstance(data, dict) or data.get(field) is None:
            return
        sealed = self._seal(data[field], f"field {field!r} of the data step {info.id!r} invokes")
        info.options = {**info.options, "payload": {**payload, "data": {**data, field: sealed}}}

    def _seal(self, value: object, what: str) -> object:
        try:
            ready = self.client.serialize(value)
        except Exception:
            # Not JSON-serializable: the SDK reports that itself, naming the step or function.
            return value
        return self._codec.seal(ready, what)


def _is_event(value: object) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("name"), str)
        and isinstance(value.get("data"), dict)
    )
