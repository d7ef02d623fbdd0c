"""Keys of numpy arrays and pandas objects: by content, whatever their memory layout, including
zero-size arrays and empty frames, the same in every process (issue 16)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from flowcache.config import StoreConfig
from flowcache.errors import UnhashableInput
from flowcache.identity import new_key
from flowcache.keys.canonical import hash_inputs

ROOT = Path(__file__).resolve().parents[1]
GRID = np.arange(12.0).reshape(4, 3)


def key_of(value) -> str:
    return hash_inputs({"x": value}).hex()


def column_by_column() -> pd.DataFrame:
    frame = pd.DataFrame(index=range(4))
    for position, name in enumerate("abc"):
        frame[name] = GRID[:, position]  # one block per column
    return frame


def arrow_text(*chunks: list) -> pd.Series:
    return pd.Series(pd.arrays.ArrowExtensionArray(pa.chunked_array(chunks, type=pa.string())))


# -- equal content, different layout: one key -------------------------------------------------
SAME_CONTENT = {
    "one block vs a block per column": (pd.DataFrame(GRID, columns=list("abc")),
                                        column_by_column()),
    "a block per column vs its copy": (column_by_column(), column_by_column().copy()),
    "C vs Fortran order": (pd.DataFrame(np.ascontiguousarray(GRID), columns=list("abc")),
                           pd.DataFrame(np.asfortranarray(GRID), columns=list("abc"))),
    "mixed dtypes consolidated or not": (
        pd.DataFrame({"i": [1, 2], "f": [0.5, 1.5], "j": [3, 4]}),
        pd.DataFrame({"i": [1, 2]}).assign(f=[0.5, 1.5]).assign(j=[3, 4])),
    "a strided view vs its copy": (GRID[::2, ::-1], GRID[::2, ::-1].copy()),
    "big-endian vs little-endian": (np.arange(5, dtype=">i4"), np.arange(5, dtype="<i4")),
    "NaNs of two bit patterns": (np.array([np.nan, 1.0]),
                                 np.array([-np.nan, 1.0])),  # the sign bit differs
    "Arrow text in one chunk or two": (arrow_text(["a", "bb"], ["ccc"]),
                                       arrow_text(["a", "bb", "ccc"])),
    "Arrow text with nulls in one chunk or two": (arrow_text(["a", None], [None, "é"]),
                                                  arrow_text(["a", None, None, "é"])),
    "str column sliced vs built": (pd.Series(["x", "a", None, "b"]).iloc[1:].reset_index(drop=True),
                                   pd.Series(["a", None, "b"])),
    "MultiIndex sliced (unused levels) vs built": (
        pd.MultiIndex.from_product([["a", "b"], [1, 2]])[:2],
        pd.MultiIndex.from_tuples([("a", 1), ("a", 2)])),
    "RangeIndex by its numbers, not its bounds": (pd.RangeIndex(0, 3, 5),
                                                  pd.RangeIndex(0, 1, 7)),
    "empty RangeIndex wherever it starts": (pd.RangeIndex(4, 4), pd.RangeIndex(0, 0)),
    "categorical copy": (pd.Series(["x", "y", "x"], dtype="category"),
                         pd.Series(["x", "y", "x"], dtype="category").copy()),
}


@pytest.mark.parametrize("case", list(SAME_CONTENT))
def test_equal_content_gives_one_key_whatever_the_layout(case):
    left, right = SAME_CONTENT[case]
    assert key_of(left) == key_of(right)


def test_the_frames_compared_really_are_laid_out_differently():
    """A guard on the cases above: their pickles differ, so layout is what the key ignores."""
    one_block, per_column = SAME_CONTENT["one block vs a block per column"]
    assert one_block.equals(per_column)
    assert pickle.dumps(one_block) != pickle.dumps(per_column)
    assert pickle.dumps(per_column) != pickle.dumps(per_column.copy())


# -- different content: different keys -------------------------------------------------------
BASE = pd.DataFrame({"a": [1, 2, 3], "b": [0.5, 1.5, 2.5]})
DISTINCT = {
    "base": BASE,
    "a value": BASE.assign(b=[0.5, 1.5, 9.5]),
    "a dtype": BASE.astype({"a": "int32"}),
    "a column name": BASE.rename(columns={"b": "c"}),
    "the column order": BASE[["b", "a"]],
    "the index": BASE.set_axis([10, 11, 12]),
    "the index's name": BASE.rename_axis("row"),
    "the columns' name": BASE.rename_axis("col", axis=1),
    "series": BASE["a"],
    "series named otherwise": BASE["a"].rename("z"),
    "index": pd.Index([1, 2, 3]),
    "index of float": pd.Index([1.0, 2.0, 3.0]),
    "range index": pd.RangeIndex(1, 4),
    "range index otherwise": pd.RangeIndex(1, 7, 2),
    "series over a range index": pd.Series([1, 2, 3], index=pd.RangeIndex(1, 4)),
    "series over an int64 index": pd.Series([1, 2, 3], index=[1, 2, 3]),
    "multiindex": pd.MultiIndex.from_tuples([("a", 1), ("b", 2)]),
    "multiindex swapped": pd.MultiIndex.from_tuples([(1, "a"), (2, "b")]),
    "multiindex names": pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["k", "n"]),
    "categorical": pd.Series(["x", "y", "x"], dtype="category"),
    "categorical ordered": pd.Series(pd.Categorical(["x", "y", "x"], ordered=True)),
    "categorical other categories": pd.Series(pd.Categorical(["x", "y", "x"],
                                                             categories=["y", "x"])),
    "categorical as str": pd.Series(["x", "y", "x"]),
    "datetime utc": pd.Series(pd.date_range("2024-01-01", periods=3, freq="h", tz="UTC")),
    "datetime paris, same instants": pd.Series(
        pd.date_range("2024-01-01", periods=3, freq="h", tz="UTC").tz_convert("Europe/Paris")),
    "datetime naive": pd.Series(pd.date_range("2024-01-01", periods=3, freq="h")),
    "datetime naive in s": pd.Series(pd.date_range("2024-01-01", periods=3, freq="h",
                                                   unit="s")),
    "str with a missing": pd.Series(["a", None, "c"]),
    "str with an empty": pd.Series(["a", "", "c"]),
    "str split otherwise": pd.Series(["ab", "", "c"]),
    "string (pd.NA) with a missing": pd.Series(["a", None, "c"], dtype="string"),
    "str stored in Python with a missing": pd.Series(
        ["a", None, "c"], dtype=pd.StringDtype("python", na_value=np.nan)),
    "Arrow string_view with a missing": pd.Series(pd.arrays.ArrowExtensionArray(
        pa.chunked_array([["a", None, "c"]], type=pa.string_view()))),
    "object text": pd.Series(["a", None, "c"], dtype=object),
    "object mixed": pd.Series(["a", 1, 2.5], dtype=object),
    "object mixed otherwise": pd.Series(["a", "1", 2.5], dtype=object),
    "Int64 with NA": pd.Series([1, None, 3], dtype="Int64"),
    "Int64 with 0": pd.Series([1, 0, 3], dtype="Int64"),
    "int64": pd.Series([1, 0, 3]),
    "Float64 with NA": pd.Series([1.0, None, 3.0], dtype="Float64"),
    "float64 with NaN": pd.Series([1.0, None, 3.0]),
    "boolean": pd.Series([True, None, False], dtype="boolean"),
}


def test_different_content_gives_different_keys():
    keys = {name: key_of(value) for name, value in DISTINCT.items()}
    clashes = [(a, b) for a in keys for b in keys if a < b and keys[a] == keys[b]]
    assert clashes == []


@pytest.mark.parametrize("name", list(DISTINCT))
def test_each_kind_keys_the_same_twice_and_after_a_copy(name):
    value = DISTINCT[name]
    assert key_of(value) == key_of(value) == key_of(value.copy())


def test_pandas_objects_are_not_keyed_through_their_pickle(monkeypatch):
    """pandas 3 reports its classes' module as ``pandas``: they must still reach the pandas
    encoder, never the pickle-reduction fallback."""
    assert type(BASE).__module__ == "pandas"
    monkeypatch.setattr(pd.DataFrame, "__reduce_ex__", _refuse_reduce, raising=False)
    monkeypatch.setattr(pd.Series, "__reduce_ex__", _refuse_reduce, raising=False)
    assert key_of(BASE) == key_of(BASE.copy())
    assert key_of(BASE["a"]) != key_of(BASE["b"])


def _refuse_reduce(self, protocol):
    raise AssertionError("a pandas object was keyed by its pickle")


def test_an_object_column_holding_a_live_object_names_where_it_is():
    frame = pd.DataFrame({"ok": [1, 2], "bad": [1, iter([2])]})
    with pytest.raises(UnhashableInput) as info:
        hash_inputs({"frame": frame})
    assert "'frame" in str(info.value)


def test_a_column_pandas_cannot_read_is_a_typed_error_naming_the_parameter():
    views = pa.chunked_array([[b"a", None]], type=pa.binary_view())  # pandas 3 lacks it
    with pytest.raises(UnhashableInput) as info:
        hash_inputs({"blobs": pd.DataFrame({"b": pd.arrays.ArrowExtensionArray(views)})})
    assert info.value.param.startswith("blobs")
    assert "binary_view" in str(info.value)


# -- zero-size arrays and empty frames --------------------------------------------------------
EMPTY = {
    "zeros (0, 3)": np.zeros((0, 3)),
    "zeros (3, 0)": np.zeros((3, 0)),
    "zeros (0,)": np.zeros((0,)),
    "zeros (0, 0)": np.zeros((0, 0)),
    "int zeros (0, 3)": np.zeros((0, 3), dtype=np.int64),
    "empty text array": np.array([], dtype="U1"),
    "empty object array": np.array([], dtype=object),
    "frame without columns": pd.DataFrame(),
    "frame with columns": pd.DataFrame(columns=["a", "b"]),
    "frame with one column": pd.DataFrame(columns=["a"]),
    "frame with float columns": pd.DataFrame({"a": np.zeros(0), "b": np.zeros(0)}),
    "frame with rows, no columns": pd.DataFrame(index=range(3)),
    "series": pd.Series([], dtype=float),
    "str series": pd.Series([], dtype="str"),
    "Int64 series": pd.Series([], dtype="Int64"),
    "categorical series": pd.Series([], dtype="category"),
    "index": pd.Index([], dtype=np.int64),
    "nothing": None,
}

NUMPY_DISTINCT = {
    "complex nan in the real part": np.array([complex(np.nan, 1.0)]),
    "complex nan in the other part": np.array([complex(1.0, np.nan)]),
    "complex nan and another imaginary part": np.array([complex(np.nan, 2.0)]),
    "complex64": np.array([complex(np.nan, 1.0)], dtype=np.complex64),
    "float nan": np.array([np.nan]),
    "float32 nan": np.array([np.nan], dtype=np.float32),
    "float16 nan": np.array([np.nan], dtype=np.float16),
    "a 0-d array": np.array(1.5),
    "a 1-d array": np.array([1.5]),
    "U1": np.array(["a"]),
    "U2": np.array(["a"], dtype="U2"),
    "object text": np.array(["a"], dtype=object),
    "structured": np.array([(1, 2.0)], dtype=[("a", "<i4"), ("b", "<f8")]),
    "structured renamed": np.array([(1, 2.0)], dtype=[("a", "<i4"), ("c", "<f8")]),
    "datetime64[s]": np.array([0], dtype="M8[s]"),
    "datetime64[ms]": np.array([0], dtype="M8[ms]"),
}


def test_numpy_values_that_differ_key_differently():
    keys = {name: key_of(value) for name, value in NUMPY_DISTINCT.items()}
    clashes = [(a, b) for a in keys for b in keys if a < b and keys[a] == keys[b]]
    assert clashes == []
    padded = np.zeros(1, dtype=np.dtype({"names": ["a", "b"], "formats": ["<i4", "<f8"],
                                         "offsets": [0, 16], "itemsize": 32}))
    padded[0] = (1, 2.0)
    assert key_of(padded) == keys["structured"]  # padding and offsets are layout
    assert key_of(np.array([complex(np.nan, 1.0)]).astype(">c16")) == keys[
        "complex nan in the real part"]


def test_zero_size_arrays_and_empty_frames_key_distinctly():
    keys = {name: key_of(value) for name, value in EMPTY.items()}
    clashes = [(a, b) for a in keys for b in keys if a < b and keys[a] == keys[b]]
    assert clashes == []
    assert key_of(np.zeros((0, 3))) == key_of(np.zeros((0, 3), order="F"))


# -- the same in every process ----------------------------------------------------------------
_PROBE = textwrap.dedent("""
    import numpy as np, pandas as pd, pyarrow as pa
    from flowcache.keys.canonical import hash_inputs
    frame = pd.DataFrame({
        "i": np.arange(6), "f": np.linspace(0, 1, 6), "s": ["a", None, "ccc", "d", "", "é"],
        "o": pd.Series([{"k", "j"}, 1, "x", None, 2.5, (1, 2)], dtype=object),
        "c": pd.Categorical(list("xyzxyz")), "n": pd.array([1, None, 3, 4, 5, 6], dtype="Int64"),
        "t": pd.date_range("2024-03-31", periods=6, freq="h", tz="Europe/Paris"),
        "a": pd.arrays.ArrowExtensionArray(pa.chunked_array([["p", "q"], ["r", None, "s", "t"]])),
    }, index=pd.MultiIndex.from_product([["u", "v"], [1, 2, 3]], names=["g", "n"]))
    print(hash_inputs({"frame": frame, "empty": pd.DataFrame(columns=["a"]),
                       "zero": np.zeros((0, 3))}).hex())
""")


def test_frame_keys_are_identical_across_processes_and_hash_seeds():
    digests = set()
    for seed in ("0", "1", "4242", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        out = subprocess.run([sys.executable, "-c", _PROBE], env=env, cwd=ROOT,
                             capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stderr
        digests.add(out.stdout.strip())
    assert len(digests) == 1


# -- end to end: a dask dataframe read from parquet -------------------------------------------
def test_a_parquet_column_sum_computes_then_hits(tmp_path):
    import dask.dataframe as dd

    import dask_cache

    pd.DataFrame({"a": [1, 2, 3, 4], "b": ["w", "x", "y", "z"]}).to_parquet(tmp_path / "t.parquet")
    store = StoreConfig.from_env({
        "FLOWCACHE_STORE": f"memory+{tmp_path}/durable", "FLOWCACHE_USER": "gus",
        "FLOWCACHE_SIGNING_KEY": new_key().hex(),
        "FLOWCACHE_LOCK_DIR": str(tmp_path / "locks")}).build()

    def total():
        return dd.read_parquet(tmp_path / "t.parquet")["a"].sum()

    (first,), plan = dask_cache.compute(total(), store=store, scheduler="sync",
                                        return_plan=True)
    assert first == 10
    assert plan.computes
    (second,), plan = dask_cache.compute(total(), store=store, scheduler="sync",
                                         return_plan=True)
    assert second == 10
    assert plan.computes == set()
    assert plan.loads
