"""Turning step and function outputs into JSON values and back.

By default any value pydantic can dump (models, dataclasses, datetimes, ...) is accepted and memoized
values come back as plain JSON unless an ``output_type`` asks for a typed value. A client-level
``Serializer`` replaces both directions.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Protocol

import pydantic
import pydantic_core

if TYPE_CHECKING:
    from inngest_mw.client import Inngest

__all__ = ["PydanticSerializer", "Serializer", "decode", "encode"]


class Serializer(Protocol):
    """Custom (de)serialization of outputs, e.g. to keep types across requests."""

    def serialize(self, obj: object, typ: object) -> object: ...

    def deserialize(self, obj: object, typ: object) -> object: ...


@functools.lru_cache(maxsize=512)
def _adapter(typ: Any) -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(typ)


class PydanticSerializer:
    """Dump with pydantic's JSON mode; validate memoized values into ``typ`` when one is given."""

    def serialize(self, obj: object, typ: object) -> object:
        return pydantic_core.to_jsonable_python(obj)

    def deserialize(self, obj: object, typ: object) -> object:
        if typ is None:
            return obj
        return _adapter(typ).validate_python(obj)


_default = PydanticSerializer()


def encode(client: Inngest, value: object, typ: object = None) -> object:
    """A JSON-ready value; raises ``pydantic_core.PydanticSerializationError`` when impossible."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    return (client.serializer or _default).serialize(value, typ)


def decode(client: Inngest, data: object, typ: object) -> object:
    if typ is None and client.serializer is None:
        return data
    return (client.serializer or _default).deserialize(data, typ)
