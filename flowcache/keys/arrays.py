"""numpy values as canonical tokens: what an array holds, never how it is laid out in memory.

A key must not change when equal values sit in memory differently: a Fortran-ordered copy, a
strided view, a big-endian file's buffer or a structured dtype with padding all hold the same
values as their tidy C-ordered twin, so they get the same tokens. What a reader of the array can
tell apart stays apart: dtype (``int32`` vs ``int64``, ``U3`` vs ``U5``), shape (``(2, 3)`` vs
``(3, 2)`` over the same bytes), field names. NaNs of any bit pattern count as one NaN, as the
scalar ``float`` encoder has it (``0/0`` and ``np.nan`` differ in their sign bit on x86).

The output is a stream of tokens for :class:`~flowcache.keys.canonical.KeyBuilder`: ``bytes``
and ``memoryview`` (hashed as length-prefixed bytes, in place) and :class:`Objects` (Python
objects it keys one by one). numpy is imported only when a numpy value is being keyed.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

#: kinds of the entries of a text column (one byte per entry)
TEXT, MISSING_NONE, MISSING_NAN = 0, 1, 2


@dataclass(frozen=True)
class Objects:
    """Python objects the key builder hashes one by one, in order (``path`` names them)."""

    items: Sequence[Any]
    path: str


Token: TypeAlias = "bytes | memoryview | Objects"


def is_numpy(value: Any) -> bool:
    """True for numpy arrays and scalars; never imports numpy (an array needs it loaded)."""
    np = sys.modules.get("numpy")
    return np is not None and isinstance(value, (np.ndarray, np.generic))


def numpy_tokens(value: Any, path: str) -> Iterator[Token]:
    """Tokens of an ndarray (or subclass) or a numpy scalar."""
    import numpy as np

    if isinstance(value, np.generic):
        yield b"numpy.scalar"
        yield from ndarray_tokens(np.asarray(value), path)
        return
    if isinstance(value, np.ma.MaskedArray):
        # what hides under the mask is garbage: key the mask and the data filled in
        yield b"numpy.masked"
        yield from ndarray_tokens(np.ma.getmaskarray(value), f"{path}.mask")
        yield from ndarray_tokens(np.asarray(value.filled()), path)
        return
    if type(value) is not np.ndarray and not isinstance(value, np.memmap):
        # a subclass (matrix, recarray...) behaves differently from a plain array
        yield f"numpy.subclass:{type(value).__module__}.{type(value).__qualname__}".encode()
    yield from ndarray_tokens(np.asarray(value), path)


def ndarray_tokens(array: Any, path: str) -> Iterator[Token]:
    """Tokens of a plain ndarray: canonical dtype, shape, then the values in C order."""
    yield f"ndarray:{dtype_name(array.dtype)}:{array.shape}".encode()
    yield from values_tokens(array, path)


def dtype_name(dtype: Any) -> str:
    """A dtype's canonical text: little-endian, structured fields by name (no offsets)."""
    if dtype.names is not None:
        fields = ",".join(f"{name!r}:{dtype_name(dtype.fields[name][0])}" for name in dtype.names)
        return "{" + fields + "}"
    if dtype.subdtype is not None:
        base, shape = dtype.subdtype
        return f"{dtype_name(base)}{shape}"
    if dtype.kind == "T":  # numpy's variable-width StringDType
        return str(dtype)
    return dtype.newbyteorder("<").str


def values_tokens(array: Any, path: str) -> Iterator[Token]:
    """The values of ``array`` (shape and dtype told elsewhere) in C order."""
    dtype = array.dtype
    if dtype.names is not None:
        # field by field, so padding bytes and field offsets never reach the key
        for name in dtype.names:
            yield from values_tokens(array[name], f"{path}[{name!r}]")
        return
    if dtype.hasobject or dtype.kind == "T":
        flat = array.reshape(-1, order="C")
        yield from object_tokens(flat.tolist(), path if array.ndim == 1 else f"{path}.flat")
        return
    yield buffer_of(array)


def buffer_of(array: Any) -> memoryview:
    """The bytes of a fixed-width array, C-ordered, little-endian, with one NaN pattern."""
    import numpy as np

    dtype = array.dtype
    if dtype.byteorder == ">" or (dtype.byteorder == "=" and sys.byteorder == "big"):
        array = array.astype(dtype.newbyteorder("<"))
    array = np.ascontiguousarray(array).reshape(-1)  # before the NaN scan: strided is slow
    if dtype.kind == "c":  # real and imaginary parts apart: (nan, 1) and (nan, 2) differ
        array = array.view(np.finfo(dtype).dtype.newbyteorder("<"))
    if array.dtype.kind == "f":
        nan = np.isnan(array)
        if nan.any():
            array = np.where(nan, array.dtype.type(np.nan), array)
    return memoryview(array.view(np.uint8))


def object_tokens(items: list[Any], path: str) -> Iterator[Token]:
    """Tokens of Python objects: text in bulk when every item is a ``str`` or missing
    (``None``/NaN), else each object through the key builder."""
    import numpy as np

    kinds = bytearray(len(items))
    strings: list[str] = []
    for position, item in enumerate(items):
        kind = type(item)
        if kind is str:
            strings.append(item)
            continue
        if item is None:
            kinds[position] = MISSING_NONE
        elif kind is float and item != item:
            kinds[position] = MISSING_NAN
        else:
            yield b"objects"
            yield Objects(items, path)
            return
        strings.append("")
    lengths, payload = text_of(strings)
    yield from text_tokens(np.frombuffer(kinds, dtype=np.uint8), lengths, payload)


def text_of(strings: list[str]) -> tuple[Any, bytes]:
    """UTF-8 byte length of each string and their concatenation (what Arrow holds)."""
    import numpy as np

    payload = "".join(strings).encode("utf-8", "surrogatepass")
    lengths = np.fromiter(map(len, strings), dtype=np.int64, count=len(strings))
    if len(payload) != int(lengths.sum()):  # not all ASCII: byte lengths differ from lengths
        lengths = np.fromiter((len(s.encode("utf-8", "surrogatepass")) for s in strings),
                              dtype=np.int64, count=len(strings))
    return lengths, payload


def text_tokens(kinds: Any, lengths: Any, payload: bytes | memoryview) -> Iterator[Token]:
    """Tokens of a text column: per entry its kind (text or which missing value) and byte
    length, then all the text; the same for Python strings and Arrow buffers."""
    import numpy as np

    yield f"text:{len(kinds)}".encode()
    yield buffer_of(np.asarray(kinds, dtype=np.uint8))
    yield buffer_of(np.asarray(lengths, dtype=np.int64))
    yield payload
