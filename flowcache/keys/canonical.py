"""Canonical hashing: a type-dispatched blake3 digest of values, the same in every process.

``key = H(namespace, task identity, version, canonical inputs)`` (:func:`content_key`; what the
inputs are is the key recipe's to say, :mod:`flowcache.keys.recipe`). Every value is fed to the hash
as a type tag followed by a length-prefixed canonical encoding, so equal inputs give equal keys in
any process and under any ``PYTHONHASHSEED`` (sets and dicts are ordered by their elements'
digests, never by Python's ``hash``). Pickles are never used as keys: they are not deterministic.

* buffers (``bytes``, numpy arrays, pandas columns) are hashed in place where contiguous;
  arrays and frames by their contents, whatever their memory layout
  (:mod:`~flowcache.keys.arrays`, :mod:`~flowcache.keys.tables`);
* ``pathlib.Path``/``os.PathLike``/:class:`~flowcache.keys.fingerprints.FileRef` inputs are
  hashed by their file fingerprint, so an edited file is a new key;
* functions by their :func:`~flowcache.keys.code.function_identity`;
* a large immutable value that an upstream cached task produced is hashed by that task's key
  (chain hashing, see :class:`Provenance`), never re-read;
* anything else through ``__flowcache_key__``, a registered hasher, dataclass fields, or its
  pickle reduction (``__reduce_ex__``), which refuses locks, sockets, clients and the like.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import fractions
import io
import math
import os
import socket
import struct
import threading
import types
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import blake3

from flowcache.errors import UnhashableInput
from flowcache.keys.arrays import Objects, Token, is_numpy, numpy_tokens
from flowcache.keys.code import function_identity
from flowcache.keys.fingerprints import FileRef, Fingerprinter
from flowcache.keys.provenance import PROVENANCE, Provenance, Upstream
from flowcache.keys.tables import is_pandas, pandas_tokens

KEY_VERSION = b"flowcache-key-v1"
_LARGE = 1 << 20  # buffers from this size are hashed on all cores
_MAX_DEPTH = 200

Hasher = Callable[[Any], Any]
_HASHERS: dict[type, Hasher] = {}


def register_hasher(cls: type, fn: Hasher) -> None:
    """Key instances of ``cls`` (and subclasses) by ``fn(value)``, itself a hashable value.

    ``register_hasher(MyModel, lambda m: (m.name, m.weights))``
    """
    _HASHERS[cls] = fn



# Tags: one byte before every encoded value so that, e.g., b"1", "1", 1 and 1.0 differ.
_T_NONE, _T_BOOL, _T_INT, _T_FLOAT, _T_COMPLEX, _T_STR, _T_BYTES, _T_BYTEARRAY = range(1, 9)
(_T_LIST, _T_TUPLE, _T_DICT, _T_SET, _T_FROZENSET, _T_DATACLASS, _T_ENUM, _T_OBJECT,
 _T_FILE, _T_FUNCTION, _T_TYPE, _T_NDARRAY, _T_PANDAS, _T_CHAIN, _T_CUSTOM, _T_REDUCE,
 _T_SCALAR, _T_ELLIPSIS, _T_DIGEST) = range(9, 28)

_REFUSED = (
    type(threading.Lock()), type(threading.RLock()), threading.Condition, threading.Event,
    threading.Semaphore, threading.Thread, socket.socket, io.IOBase, types.GeneratorType,
    types.CoroutineType, types.AsyncGeneratorType, types.ModuleType, types.FrameType,
)


class KeyBuilder:
    """Feeds values into a blake3 hasher canonically; one builder per key being made."""

    def __init__(self, *, fingerprinter: Fingerprinter | None = None,
                 provenance: Provenance | None = PROVENANCE) -> None:
        self.fingerprinter = fingerprinter or Fingerprinter()
        self.provenance = provenance
        self._hasher = blake3.blake3()

    def digest(self) -> bytes:
        return self._hasher.digest()

    def hexdigest(self) -> str:
        return self._hasher.hexdigest()

    def add_raw(self, label: str, data: bytes) -> None:
        """Feed pre-hashed bytes (a namespace, a task identity) under a label."""
        self._bytes(_T_DIGEST, label.encode())
        self._bytes(_T_DIGEST, data)

    def add(self, value: Any, path: str = "value") -> None:
        """Feed one value; ``path`` names it in errors (``"samples[3]"``)."""
        self._feed(self._hasher, value, path, 0)

    def value_digest(self, value: Any, path: str) -> bytes:
        hasher = blake3.blake3()
        self._feed(hasher, value, path, 0)
        return hasher.digest()

    # -- encoding -----------------------------------------------------------------------------
    def _bytes(self, tag: int, data: bytes | memoryview, hasher: blake3.blake3 | None = None
               ) -> None:
        h = self._hasher if hasher is None else hasher
        h.update(struct.pack("<BQ", tag, len(data) if isinstance(data, bytes) else data.nbytes))
        if len(data) >= _LARGE:
            h.update(blake3.blake3(data, max_threads=blake3.blake3.AUTO).digest())
        else:
            h.update(data)

    def _feed(self, h: blake3.blake3, value: Any, path: str, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise UnhashableInput(path, type(value), reason="nested too deeply or recursive")
        cls = type(value)
        encode = _EXACT.get(cls)
        if encode is not None:
            encode(self, h, value, path, depth)
            return
        if self.provenance is not None:
            chained = self.provenance.lookup(value)
            if chained is not None:
                self._bytes(_T_CHAIN, chained.encode(), h)
                return
        self._feed_other(h, value, path, depth)

    def _feed_other(self, h: blake3.blake3, value: Any, path: str, depth: int) -> None:
        cls = type(value)
        custom = getattr(value, "__flowcache_key__", None)
        if custom is not None and not isinstance(value, type):
            self._bytes(_T_CUSTOM, _qualname(cls).encode(), h)
            self._feed(h, custom(), path, depth + 1)
            return
        for base in cls.__mro__:
            hasher_fn = _HASHERS.get(base)
            if hasher_fn is not None:
                self._bytes(_T_CUSTOM, _qualname(cls).encode(), h)
                self._feed(h, hasher_fn(value), path, depth + 1)
                return
        if isinstance(value, (_REFUSED, Iterator)):
            raise UnhashableInput(path, cls, reason=_refusal_reason(value))
        if isinstance(value, (FileRef, os.PathLike)) or _is_fsspec_file(value):
            self._file(h, value, path)
            return
        for base, encode in _SUBCLASS_ENCODERS:
            if isinstance(value, base):
                encode(self, h, value, path, depth)
                return
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            self._bytes(_T_DATACLASS, _qualname(cls).encode(), h)
            for f in dataclasses.fields(value):
                self._bytes(_T_STR, f.name.encode(), h)
                self._feed(h, getattr(value, f.name), f"{path}.{f.name}", depth + 1)
            return
        if is_numpy(value):
            self._tokens(h, _T_NDARRAY, numpy_tokens(value, path), value, path, depth)
            return
        if is_pandas(value):
            self._tokens(h, _T_PANDAS, pandas_tokens(value, path), value, path, depth)
            return
        if callable(value) and isinstance(value, (types.FunctionType, types.MethodType,
                                                  types.BuiltinFunctionType)):
            self._bytes(_T_FUNCTION, function_identity(value), h)
            return
        if isinstance(value, type):
            self._bytes(_T_TYPE, _qualname(value).encode(), h)
            return
        self._reduce(h, value, path, depth)

    def _sequence(self, h: blake3.blake3, tag: int, items: Any, path: str, depth: int) -> None:
        h.update(struct.pack("<BQ", tag, len(items)))
        for index, item in enumerate(items):
            self._feed(h, item, f"{path}[{index}]", depth + 1)

    def _mapping(self, h: blake3.blake3, value: Mapping, path: str, depth: int) -> None:
        pairs = []
        for k, v in value.items():
            pairs.append((self.value_digest_at(k, f"{path} key", depth),
                          self.value_digest_at(v, f"{path}[{k!r}]", depth)))
        pairs.sort()
        h.update(struct.pack("<BQ", _T_DICT, len(pairs)))
        for kd, vd in pairs:
            h.update(kd)
            h.update(vd)

    def _set(self, h: blake3.blake3, tag: int, value: Any, path: str, depth: int) -> None:
        digests = sorted(self.value_digest_at(v, f"{path} item", depth) for v in value)
        h.update(struct.pack("<BQ", tag, len(digests)))
        for d in digests:
            h.update(d)

    def value_digest_at(self, value: Any, path: str, depth: int) -> bytes:
        hasher = blake3.blake3()
        self._feed(hasher, value, path, depth + 1)
        return hasher.digest()

    def _file(self, h: blake3.blake3, value: Any, path: str) -> None:
        try:
            fingerprint = self.fingerprinter.fingerprint(value)
        except (OSError, ValueError) as exc:
            raise UnhashableInput(path, type(value),
                                  reason=f"cannot read its file metadata: {exc}") from exc
        self._bytes(_T_FILE, b"", h)
        self._feed(h, fingerprint, path, 0)

    def _tokens(self, h: blake3.blake3, tag: int, tokens: Iterator[Token], value: Any,
                path: str, depth: int) -> None:
        """Feed a numpy or pandas value's tokens (:mod:`~flowcache.keys.arrays`), digested
        apart so the value is one length-prefixed item wherever it sits. A column numpy or
        pandas cannot read back (an Arrow type pandas lacks) is an :class:`UnhashableInput`."""
        inner = blake3.blake3()
        try:
            for token in tokens:
                if isinstance(token, Objects):
                    self._sequence(inner, _T_LIST, token.items, token.path, depth)
                else:
                    self._bytes(_T_BYTES, token, inner)
        except UnhashableInput:
            raise
        except (TypeError, ValueError, NotImplementedError) as exc:
            raise UnhashableInput(path, type(value), reason=f"its values cannot be read: "
                                  f"{type(exc).__name__}: {exc}") from exc
        self._bytes(tag, inner.digest(), h)

    def _reduce(self, h: blake3.blake3, value: Any, path: str, depth: int) -> None:
        cls = type(value)
        try:
            reduced = value.__reduce_ex__(4)
        except Exception as exc:
            raise UnhashableInput(path, cls, reason=f"it cannot be reduced: {exc}") from exc
        if isinstance(reduced, str) or not isinstance(reduced, tuple):
            self._bytes(_T_OBJECT, f"{_qualname(cls)}:{reduced}".encode(), h)
            return
        self._bytes(_T_REDUCE, _qualname(cls).encode(), h)
        constructor, args, *rest = (*reduced, None, None, None)[:5]
        self._bytes(_T_STR, _qualname(constructor).encode(), h)
        self._feed(h, args, f"{path}", depth + 1)
        state, list_items, dict_items = rest[0], rest[1], rest[2]
        if state is not None:
            self._feed(h, state, f"{path}.__dict__", depth + 1)
        if list_items is not None:
            self._feed(h, list(list_items), f"{path}", depth + 1)
        if dict_items is not None:
            self._feed(h, dict(dict_items), f"{path}", depth + 1)


def _qualname(obj: Any) -> str:
    module = getattr(obj, "__module__", "") or ""
    return f"{module}.{getattr(obj, '__qualname__', getattr(obj, '__name__', repr(obj)))}"


def _refusal_reason(value: Any) -> str:
    if isinstance(value, io.IOBase):
        return "an open file; pass its path instead"
    if isinstance(value, (Iterator, types.AsyncGeneratorType)):
        return "an iterator would be consumed by hashing; pass a list"
    return "it holds live process state that has no content to hash"


def _is_fsspec_file(value: Any) -> bool:
    module = type(value).__module__
    return module.startswith("fsspec") and type(value).__name__ == "OpenFile"


def _enc_none(b: KeyBuilder, h: Any, v: Any, p: str, d: int) -> None:
    h.update(struct.pack("<BQ", _T_NONE, 0))


def _enc_bool(b: KeyBuilder, h: Any, v: bool, p: str, d: int) -> None:
    h.update(struct.pack("<BQB", _T_BOOL, 1, v))


def _enc_int(b: KeyBuilder, h: Any, v: int, p: str, d: int) -> None:
    b._bytes(_T_INT, v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True), h)


def _enc_float(b: KeyBuilder, h: Any, v: float, p: str, d: int) -> None:
    h.update(struct.pack("<BQd", _T_FLOAT, 8, math.nan if math.isnan(v) else v))


def _enc_complex(b: KeyBuilder, h: Any, v: complex, p: str, d: int) -> None:
    h.update(struct.pack("<BQdd", _T_COMPLEX, 16, v.real, v.imag))


def _enc_str(b: KeyBuilder, h: Any, v: str, p: str, d: int) -> None:
    if b.provenance is not None and len(v) >= b.provenance.min_bytes:
        chained = b.provenance.lookup(v)
        if chained is not None:
            b._bytes(_T_CHAIN, chained.encode(), h)
            return
    b._bytes(_T_STR, v.encode("utf-8", "surrogatepass"), h)


def _enc_bytes(b: KeyBuilder, h: Any, v: bytes, p: str, d: int) -> None:
    if b.provenance is not None and len(v) >= b.provenance.min_bytes:
        chained = b.provenance.lookup(v)
        if chained is not None:
            b._bytes(_T_CHAIN, chained.encode(), h)
            return
    b._bytes(_T_BYTES, v, h)


def _enc_bytearray(b: KeyBuilder, h: Any, v: bytearray, p: str, d: int) -> None:
    b._bytes(_T_BYTEARRAY, memoryview(v), h)


def _enc_list(b: KeyBuilder, h: Any, v: list, p: str, d: int) -> None:
    b._sequence(h, _T_LIST, v, p, d)


def _enc_tuple(b: KeyBuilder, h: Any, v: tuple, p: str, d: int) -> None:
    b._sequence(h, _T_TUPLE, v, p, d)


def _enc_dict(b: KeyBuilder, h: Any, v: dict, p: str, d: int) -> None:
    b._mapping(h, v, p, d)


def _enc_set(b: KeyBuilder, h: Any, v: set, p: str, d: int) -> None:
    b._set(h, _T_SET, v, p, d)


def _enc_frozenset(b: KeyBuilder, h: Any, v: frozenset, p: str, d: int) -> None:
    b._set(h, _T_FROZENSET, v, p, d)


def _enc_text(tag: int, render: Callable[[Any], str]) -> Callable[..., None]:
    def encode(b: KeyBuilder, h: Any, v: Any, p: str, d: int) -> None:
        b._bytes(tag, f"{_qualname(type(v))}:{render(v)}".encode(), h)
    return encode


def _enc_enum(b: KeyBuilder, h: Any, v: enum.Enum, p: str, d: int) -> None:
    b._bytes(_T_ENUM, _qualname(type(v)).encode(), h)
    b._feed(h, v.value, p, d + 1)


def _enc_mapping(b: KeyBuilder, h: Any, v: Mapping, p: str, d: int) -> None:
    b._mapping(h, v, p, d)


def _enc_named(b: KeyBuilder, h: Any, v: tuple, p: str, d: int) -> None:
    b._bytes(_T_DATACLASS, _qualname(type(v)).encode(), h)
    b._sequence(h, _T_TUPLE, tuple(v), p, d)


_EXACT: dict[type, Callable[..., None]] = {
    type(None): _enc_none, bool: _enc_bool, int: _enc_int, float: _enc_float,
    complex: _enc_complex, str: _enc_str, bytes: _enc_bytes, bytearray: _enc_bytearray,
    memoryview: lambda b, h, v, p, d: b._bytes(
        _T_BYTES, v.cast("B") if v.c_contiguous else memoryview(v.tobytes()), h),
    list: _enc_list, tuple: _enc_tuple, dict: _enc_dict, set: _enc_set,
    frozenset: _enc_frozenset, type(Ellipsis): lambda b, h, v, p, d: h.update(bytes([_T_ELLIPSIS])),
    dt.datetime: _enc_text(_T_OBJECT, lambda v: v.isoformat() + repr(v.tzinfo)),
    dt.date: _enc_text(_T_OBJECT, dt.date.isoformat),
    dt.time: _enc_text(_T_OBJECT, lambda v: v.isoformat() + repr(v.tzinfo)),
    dt.timedelta: _enc_text(_T_OBJECT, lambda v: repr((v.days, v.seconds, v.microseconds))),
    decimal.Decimal: _enc_text(_T_OBJECT, str), fractions.Fraction: _enc_text(_T_OBJECT, str),
    uuid.UUID: _enc_text(_T_OBJECT, str), range: _enc_text(_T_OBJECT, repr),
    slice: _enc_text(_T_OBJECT, repr),
    Upstream: lambda b, h, v, p, d: b._bytes(_T_CHAIN, v.key.encode(), h),
}
# Subclasses of builtins (IntEnum, OrderedDict, namedtuples...) checked in this order.
_SUBCLASS_ENCODERS: list[tuple[type, Callable[..., None]]] = [
    (enum.Enum, _enc_enum),
    (bool, _enc_bool), (int, _enc_int), (float, _enc_float), (str, _enc_str), (bytes, _enc_bytes),
    (Mapping, _enc_mapping),
    (tuple, lambda b, h, v, p, d: (_enc_named if hasattr(v, "_fields") else _enc_tuple)(
        b, h, v, p, d)),
    (list, _enc_list), (set, _enc_set), (frozenset, _enc_frozenset),
]


def hash_inputs(inputs: Mapping[str, Any], *, fingerprinter: Fingerprinter | None = None,
                provenance: Provenance | None = PROVENANCE) -> bytes:
    """Digest of named inputs, independent of their order; errors name the parameter."""
    builder = KeyBuilder(fingerprinter=fingerprinter, provenance=provenance)
    digests = sorted((name.encode(), builder.value_digest(value, name))
                     for name, value in inputs.items())
    outer = blake3.blake3()
    for name, digest in digests:
        outer.update(struct.pack("<Q", len(name)) + name + digest)
    return outer.digest()


def content_key(*, namespace: str, identity: bytes, inputs_digest: bytes,
                version: str | None = None) -> str:
    """The hex content key of one task invocation."""
    hasher = blake3.blake3(KEY_VERSION)
    for part in (namespace.encode(), identity, (version or "").encode(), inputs_digest):
        hasher.update(struct.pack("<Q", len(part)))
        hasher.update(part)
    return hasher.hexdigest()
