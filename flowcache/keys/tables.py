"""pandas values as canonical tokens: labels, dtypes and column contents, never block layout.

Two equal DataFrames are often laid out differently: one built column by column has a block per
column, one built from a 2-D array has one strided block, ``copy()`` or a consolidation regroups
them, a string column sits in one Arrow chunk or many. So a frame is keyed column by column, in
column order, each column by its dtype and its values in a canonical form, plus its index and
column labels (with their names). Nothing is pickled: pickles are neither layout-independent nor
the same across processes (NOTES.md).

Pandas objects are recognised with ``isinstance`` against the loaded ``pandas`` module, never
by module name (pandas 3 reports ``pandas``, pandas 2 ``pandas.core.frame``). A column's values:

* numpy dtypes: the buffer (:mod:`flowcache.keys.arrays`), datetimes as int64 ticks with their
  unit and time zone in the dtype;
* nullable (``Int64``, ``Float64``, ``boolean``): the missing mask and the values filled with 0;
* ``str``/``string`` (Python or Arrow storage alike) and all-text ``object`` columns: kinds,
  byte lengths and the UTF-8 text, read straight from Arrow buffers where they are Arrow;
* categorical: categories (recursively), order flag and codes; intervals: both ends;
* anything else: its numpy form, or each object through the key builder.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from flowcache.keys.arrays import (
    Objects,
    Token,
    buffer_of,
    dtype_name,
    object_tokens,
    text_of,
    text_tokens,
    values_tokens,
)


def is_pandas(value: Any) -> bool:
    """True for DataFrames, Series, Indexes and extension arrays; never imports pandas."""
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(
        value, (pd.DataFrame, pd.Series, pd.Index, pd.api.extensions.ExtensionArray))


def pandas_tokens(value: Any, path: str) -> Iterator[Token]:
    """Tokens of a DataFrame, Series, Index or extension array."""
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        yield from _subclass(value, pd.DataFrame)
        yield f"frame:{value.shape}".encode()
        yield Objects([dict(value.attrs)], f"{path}.attrs")
        yield from index_tokens(value.index, f"{path}.index")
        yield from index_tokens(value.columns, f"{path}.columns")
        for label, column in value.items():
            yield from column_tokens(column.array, f"{path}[{label!r}]")
    elif isinstance(value, pd.Series):
        yield from _subclass(value, pd.Series)
        yield b"series"
        yield Objects([value.name, dict(value.attrs)], f"{path}.name")
        yield from index_tokens(value.index, f"{path}.index")
        yield from column_tokens(value.array, path)
    elif isinstance(value, pd.Index):
        yield from index_tokens(value, path)
    else:
        yield b"array"
        yield from column_tokens(value, path)


def _subclass(value: Any, base: type) -> Iterator[Token]:
    if type(value) is not base:  # GeoDataFrame and the like carry more than their columns
        yield f"subclass:{type(value).__module__}.{type(value).__qualname__}".encode()


def index_tokens(index: Any, path: str) -> Iterator[Token]:
    """An Index by its names and values. A RangeIndex by the numbers it holds, never
    materialised (a row per 8 bytes of key work): it stays apart from an int64 Index of the
    same numbers, as ``1`` from ``1.0``, since operations keep the difference. A MultiIndex
    by the values of each level, not by levels and codes, which keep unused labels after
    slicing."""
    import pandas as pd

    yield f"index:{index.nlevels}".encode()
    yield Objects(list(index.names), f"{path}.names")
    if isinstance(index, pd.RangeIndex):
        size = len(index)
        first = index.start if size else 0
        step = index.step if size > 1 else 1
        yield f"range:{first}:{step}:{size}".encode()
        return
    if index.nlevels == 1:
        yield from column_tokens(index.array, path)
        return
    for level in range(index.nlevels):
        yield from column_tokens(index.get_level_values(level).array, f"{path}.levels[{level}]")


def column_tokens(values: Any, path: str) -> Iterator[Token]:
    """One column's dtype and values (``values`` is an extension array or an ndarray)."""
    import numpy as np
    import pandas as pd

    arrays = pd.arrays
    if isinstance(values, arrays.NumpyExtensionArray):  # pandas' wrapper of a numpy column
        values = values.to_numpy(copy=False)
    if isinstance(values, np.ndarray) and values.dtype.kind in "mM":
        values = pd.array(values, copy=False)  # numpy datetimes key like pandas' own
    dtype = values.dtype
    if isinstance(values, np.ndarray):
        yield f"numpy:{dtype_name(dtype)}:{len(values)}".encode()
        yield from values_tokens(values, path)
    elif isinstance(values, (arrays.DatetimeArray, arrays.TimedeltaArray, arrays.PeriodArray)):
        yield f"ticks:{dtype}:{len(values)}".encode()  # the dtype names unit, zone or period
        yield buffer_of(np.asarray(values.asi8))
    elif isinstance(dtype, pd.CategoricalDtype):
        yield f"category:{dtype.ordered}:{len(values)}".encode()
        yield from index_tokens(dtype.categories, f"{path}.categories")
        yield buffer_of(np.asarray(values.codes, dtype=np.int64))
    elif isinstance(values, (arrays.IntegerArray, arrays.FloatingArray, arrays.BooleanArray)):
        yield f"masked:{dtype}:{len(values)}".encode()
        yield buffer_of(np.asarray(values.isna(), dtype=bool))
        filler = False if dtype.numpy_dtype.kind == "b" else 0
        yield buffer_of(values.to_numpy(dtype=dtype.numpy_dtype, na_value=filler))
    elif isinstance(dtype, pd.StringDtype) or _arrow_text(values) is not None:
        # storage is named: Python and Arrow strings answer some methods with other dtypes
        yield f"text:{dtype}:{getattr(dtype, 'storage', 'arrow')}".encode()
        yield from _text(values)
    elif isinstance(values, arrays.IntervalArray):
        yield f"interval:{dtype}:{len(values)}".encode()
        yield buffer_of(np.asarray(values.isna(), dtype=bool))
        yield from column_tokens(values.left.array, f"{path}.left")
        yield from column_tokens(values.right.array, f"{path}.right")
    else:
        yield from _other(values, path)


def _text(values: Any) -> Iterator[Token]:
    import numpy as np

    chunked = _arrow_text(values)
    if chunked is not None:
        yield from text_tokens(*_arrow_text_parts(chunked))
        return
    kinds = np.asarray(values.isna(), dtype=np.uint8)
    strings = values.to_numpy(dtype=object, na_value="").tolist()
    yield from text_tokens(kinds, *text_of(strings))


def _arrow_text(values: Any) -> Any:
    """The Arrow string data behind ``values`` (a ChunkedArray), or None."""
    import pandas as pd

    arrow_backed = getattr(pd.arrays, "ArrowExtensionArray", ())
    if not isinstance(values, arrow_backed):
        return None
    import pyarrow as pa

    chunked = values.__arrow_array__()
    kind = chunked.type
    text = pa.types.is_string(kind) or pa.types.is_large_string(kind)
    return chunked if text or pa.types.is_string_view(kind) else None


def _arrow_text_parts(chunked: Any) -> tuple[Any, Any, memoryview | bytes]:
    """Missing flags, byte lengths and text of Arrow strings, read from the buffers (one copy
    only when the column is in several chunks, has missing entries, whose slots may hold
    anything, or is a ``string_view``, whose views are no flat text)."""
    import numpy as np
    import pyarrow as pa

    if len(chunked) == 0:
        return np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=np.int64), b""
    array = chunked.chunk(0) if chunked.num_chunks == 1 else chunked.combine_chunks()
    if pa.types.is_string_view(array.type):
        array = array.cast(pa.large_string())
    kinds = np.zeros(len(array), dtype=np.uint8)
    if array.null_count:
        kinds = array.is_null().to_numpy(zero_copy_only=False).astype(np.uint8)
        array = array.fill_null("")
    _, offsets, data = array.buffers()
    width = np.int32 if pa.types.is_string(array.type) else np.int64
    ends = np.frombuffer(offsets, dtype=width)[array.offset:array.offset + len(array) + 1]
    lengths = np.diff(ends).astype(np.int64)
    text = b"" if data is None else memoryview(data)[int(ends[0]):int(ends[-1])]
    return kinds, lengths, text


def _other(values: Any, path: str) -> Iterator[Token]:
    """Any other extension array (sparse, Arrow numbers, third-party): its numpy form, or
    its objects one by one; the dtype's name says which kind of column it was."""
    import numpy as np

    dense = np.asarray(values)
    yield f"other:{values.dtype}:{len(values)}".encode()
    yield buffer_of(np.asarray(values.isna(), dtype=bool))
    if dense.dtype.hasobject:
        yield from object_tokens(dense.tolist(), path)
    else:
        yield f"{dtype_name(dense.dtype)}".encode()
        yield from values_tokens(dense, path)
