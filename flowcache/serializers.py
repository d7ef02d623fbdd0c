"""Serializers: how a result becomes payload bytes, chosen per value and named in the frame.

``raw`` passes ``bytes`` through untouched (no pickling, no copy on write); everything else goes
through ``cloudpickle`` (protocol 5) by default. A serializer is only ever asked to ``loads`` a
payload whose frame was verified first (see :mod:`flowcache.frames`).
"""

from __future__ import annotations

import pickle
from typing import Any, Protocol

import cloudpickle

from flowcache.errors import ConfigError, UnserializableResult


class Serializer(Protocol):
    name: str

    def dumps(self, value: Any) -> bytes | memoryview: ...

    def loads(self, payload: bytes | memoryview) -> Any: ...


class RawBytes:
    """``bytes`` stored as they are: no pickle, so no pickle risk and no copy."""

    name = "raw"

    def dumps(self, value: Any) -> bytes | memoryview:
        if not isinstance(value, bytes):
            raise UnserializableResult(type(value), TypeError("the raw serializer takes bytes"))
        return value

    def loads(self, payload: bytes | memoryview) -> Any:
        return payload if type(payload) is bytes else bytes(payload)


class CloudPickle:
    """Any picklable value, functions and classes defined in ``__main__`` included."""

    name = "cloudpickle"

    def dumps(self, value: Any) -> bytes | memoryview:
        try:
            return cloudpickle.dumps(value, protocol=5)
        except Exception as exc:
            raise UnserializableResult(type(value), exc) from exc

    def loads(self, payload: bytes | memoryview) -> Any:
        return pickle.loads(payload)


class Pickle:
    """The standard library's pickle, for values that need no cloudpickle features."""

    name = "pickle"

    def dumps(self, value: Any) -> bytes | memoryview:
        try:
            return pickle.dumps(value, protocol=5)
        except Exception as exc:
            raise UnserializableResult(type(value), exc) from exc

    def loads(self, payload: bytes | memoryview) -> Any:
        return pickle.loads(payload)


SERIALIZERS: dict[str, Serializer] = {s.name: s for s in (RawBytes(), CloudPickle(), Pickle())}


def register_serializer(serializer: Serializer) -> None:
    """Make a serializer available by name (to writers and, with the same code, to readers)."""
    SERIALIZERS[serializer.name] = serializer


def get_serializer(name: str) -> Serializer:
    try:
        return SERIALIZERS[name]
    except KeyError:
        raise ConfigError(
            f"unknown serializer {name!r}; known: {', '.join(sorted(SERIALIZERS))}. "
            "Register it with flowcache.serializers.register_serializer()."
        ) from None


def choose_serializer(value: Any, preferred: str | None = None) -> Serializer:
    """``preferred`` when given; ``raw`` for bytes; ``cloudpickle`` otherwise."""
    if preferred is not None:
        return get_serializer(preferred)
    if type(value) is bytes:
        return SERIALIZERS["raw"]
    return SERIALIZERS["cloudpickle"]
