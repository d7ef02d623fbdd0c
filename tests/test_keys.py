"""Content keys: canonical hashing, file fingerprints, function identity, clear errors."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import decimal
import enum
import json
import os
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flowcache.errors import UnhashableInput
from flowcache.keys.canonical import (
    PROVENANCE,
    Provenance,
    content_key,
    hash_inputs,
    register_hasher,
)
from flowcache.keys.code import function_identity
from flowcache.keys.fingerprints import FileRef, Fingerprinter

ROOT = Path(__file__).resolve().parents[1]


def key_of(value, **kwargs) -> str:
    return hash_inputs({"x": value}, **kwargs).hex()


@dataclasses.dataclass
class Point:
    x: int
    y: list


class Color(enum.Enum):
    RED = 1
    BLUE = 2


Pair = collections.namedtuple("Pair", "a b")

EQUAL_PAIRS = [
    ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
    ({3, 1, 2}, {2, 3, 1}),
    (frozenset({"x", "y"}), frozenset({"y", "x"})),
    ({1: {"z", "a"}}, {1: {"a", "z"}}),
    (Point(1, [2]), Point(1, [2])),
    (np.arange(6).reshape(2, 3), np.arange(6).reshape(2, 3).copy()),
    (np.arange(6).reshape(2, 3).T, np.ascontiguousarray(np.arange(6).reshape(2, 3).T)),
    (pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}), pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})),
    (float("nan"), float("nan")),
]

DIFFERENT = [
    1, 1.0, True, "1", b"1", bytearray(b"1"), None, [1], (1,), {1}, frozenset({1}), {1: 1},
    [1, 2], [2, 1], (1, 2), -0.0, 0.0, 2**70, -(2**70), 1 + 2j, "", b"", Color.RED, Color.BLUE,
    Point(1, [2]), Point(2, [1]), Pair(1, 2), dt.date(2024, 1, 1), dt.datetime(2024, 1, 1),
    dt.datetime(2024, 1, 1, tzinfo=dt.UTC), dt.timedelta(seconds=1), decimal.Decimal("1.0"),
    uuid.UUID(int=1), range(3), np.int64(1), np.float32(1), np.arange(3), np.arange(3.0),
    np.arange(4).reshape(2, 2), np.arange(4), pd.Series([1, 2]), pd.Series([1, 2], name="s"),
    pd.DataFrame({"a": [1, 2]}), pd.DataFrame({"b": [1, 2]}), pd.DataFrame({"a": [1.0, 2.0]}),
    pd.DataFrame({"a": [1, 2]}, index=[5, 6]), pd.Index([1, 2]), {"a": [1, {2, 3}]},
    Ellipsis, np.array(["a", None], dtype=object),
]


@pytest.mark.parametrize(("left", "right"), EQUAL_PAIRS)
def test_equal_values_give_equal_keys(left, right):
    assert key_of(left) == key_of(right)


def test_distinct_values_give_distinct_keys():
    keys = [key_of(value) for value in DIFFERENT]
    clashes = [(DIFFERENT[i], DIFFERENT[j]) for i in range(len(keys))
               for j in range(i + 1, len(keys)) if keys[i] == keys[j]]
    assert clashes == []


def test_parameter_names_matter_but_not_their_order():
    assert hash_inputs({"a": 1, "b": 2}) == hash_inputs({"b": 2, "a": 1})
    assert hash_inputs({"a": 1, "b": 2}) != hash_inputs({"a": 2, "b": 1})


def test_content_key_separates_namespace_identity_and_version():
    digest = hash_inputs({"a": 1})
    base = content_key(namespace="alice", identity=b"f", inputs_digest=digest)
    assert len(base) == 64
    assert base != content_key(namespace="bob", identity=b"f", inputs_digest=digest)
    assert base != content_key(namespace="alice", identity=b"g", inputs_digest=digest)
    assert base != content_key(namespace="alice", identity=b"f", inputs_digest=digest,
                               version="2")


def test_large_buffers_hash_without_changing_the_key_definition():
    data = os.urandom(3 << 20)
    assert key_of(data) == key_of(bytes(data))
    assert key_of(data) != key_of(data[:-1] + bytes([data[-1] ^ 1]))
    array = np.frombuffer(data, dtype=np.uint8)
    assert key_of(array) == key_of(array.copy())


@pytest.mark.parametrize("value", [threading.Lock(), threading.RLock(), iter([1, 2]),
                                   (x for x in [1]), open(os.devnull, "rb")])  # noqa: SIM115
def test_live_objects_are_refused_with_the_parameter_named(value):
    with pytest.raises(UnhashableInput) as info:
        hash_inputs({"client": value})
    message = str(info.value)
    assert "'client'" in message
    assert "exclude=['client']" in message
    assert "key_fn" in message


def test_nested_unhashable_names_its_path_and_top_level_parameter():
    with pytest.raises(UnhashableInput) as info:
        hash_inputs({"config": {"pool": [1, threading.Lock()]}})
    assert "config['pool'][1]" in str(info.value)
    assert "exclude=['config']" in str(info.value)


def test_objects_holding_locks_are_refused():
    class Client:
        def __init__(self) -> None:
            self.lock = threading.Lock()

    with pytest.raises(UnhashableInput, match="'c"):
        hash_inputs({"c": Client()})


def test_recursive_structures_are_refused_not_looped():
    looped: list = []
    looped.append(looped)
    with pytest.raises(UnhashableInput, match="recursive"):
        hash_inputs({"x": looped})


def test_registered_hasher_and_key_protocol():
    class Model:
        def __init__(self, name, weights):
            self.name, self.weights, self.session = name, weights, threading.Lock()

    register_hasher(Model, lambda m: (m.name, m.weights))
    assert key_of(Model("m", [1])) == key_of(Model("m", [1]))
    assert key_of(Model("m", [1])) != key_of(Model("m", [2]))

    class Keyed:
        def __init__(self, v):
            self.v, self.lock = v, threading.Lock()

        def __flowcache_key__(self):
            return self.v

    assert key_of(Keyed(1)) == key_of(Keyed(1)) != key_of(Keyed(2))


def test_plain_objects_hash_by_their_state():
    class Settings:
        def __init__(self, a):
            self.a = a

    assert key_of(Settings(1)) == key_of(Settings(1)) != key_of(Settings(2))


# -- determinism across processes -------------------------------------------------------------
_PROBE = textwrap.dedent("""
    import json, sys, pathlib
    import numpy as np, pandas as pd
    from flowcache.keys.canonical import hash_inputs
    value = {
        "set": {"b", "a", "c", 3, 2.5}, "frozen": frozenset({("x", 1), ("y", 2)}),
        "dict": {"z": 1, "a": [1, 2, {"q": None}]}, "arr": np.arange(12).reshape(3, 4),
        "df": pd.DataFrame({"k": ["a", "b"], "v": [1.5, 2.5]}), "bytes": b"\\x00" * 100,
        "path": pathlib.Path(sys.argv[1]),
    }
    print(hash_inputs(value).hex())
""")


def test_keys_are_identical_across_processes_and_hash_seeds(tmp_path):
    data = tmp_path / "input.csv"
    data.write_text("a,b\n1,2\n")
    digests = set()
    for seed in ("0", "1", "12345", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        out = subprocess.run([sys.executable, "-c", _PROBE, str(data)], env=env,
                             capture_output=True, text=True, check=True)
        digests.add(out.stdout.strip())
    assert len(digests) == 1


# -- files ------------------------------------------------------------------------------------
def test_local_file_edit_changes_key_and_unchanged_file_keeps_it(tmp_path):
    path = tmp_path / "sample.txt"
    path.write_text("one")
    first = key_of(path)
    assert key_of(path) == first
    assert key_of(Path(str(path))) == first
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert key_of(path) != first


def test_directories_are_fingerprinted_recursively(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "sub" / "f").write_text("1")
    before = key_of(tmp_path / "d")
    (tmp_path / "d" / "sub" / "g").write_text("2")
    assert key_of(tmp_path / "d") != before


def test_missing_file_is_keyed_not_an_error(tmp_path):
    assert key_of(tmp_path / "nope") == key_of(tmp_path / "nope")


def _fresh_process_key(url: str, options: dict) -> str:
    code = ("import json, sys; from flowcache.keys.canonical import hash_inputs; "
            "from flowcache.keys.fingerprints import FileRef, Fingerprinter; "
            "opts = json.loads(sys.argv[2]); "
            "print(hash_inputs({'x': FileRef(sys.argv[1])}, "
            "fingerprinter=Fingerprinter(opts)).hex())")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code, url, json.dumps(options)], env=env,
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.parametrize("backend", ["s3", "gcs"])
def test_remote_file_edit_changes_key(backend, request):
    endpoint = request.getfixturevalue(backend)
    protocol = endpoint.protocol
    bucket = endpoint.new_bucket()
    fs = endpoint.filesystem()
    url = f"{protocol}://{bucket}/raw/sample.csv"
    fs.pipe(url, b"a,b\n1,2\n")
    options = {protocol: {k: v for k, v in endpoint.options().items()
                          if k != "skip_instance_cache"}}
    fingerprinter = Fingerprinter(options)
    first = key_of(FileRef(url), fingerprinter=fingerprinter)
    assert key_of(FileRef(url), fingerprinter=fingerprinter) == first
    assert _fresh_process_key(url, options) == first
    fs.pipe(url, b"a,b\n1,3\n")  # same size, new content
    second = key_of(FileRef(url), fingerprinter=fingerprinter)
    assert second != first
    assert _fresh_process_key(url, options) == second


def test_fsspec_open_file_is_fingerprinted(tmp_path):
    import fsspec

    path = tmp_path / "f.txt"
    path.write_text("x")
    before = key_of(fsspec.open(str(path)))
    path.write_text("xy")
    assert key_of(fsspec.open(str(path))) != before


# -- chain hashing ----------------------------------------------------------------------------
def test_upstream_results_are_keyed_by_their_producer_key():
    provenance = Provenance(min_bytes=16)
    value = b"v" * 64
    plain = key_of(value, provenance=provenance)
    provenance.remember(value, "k" * 64)
    chained = key_of(value, provenance=provenance)
    assert chained != plain
    assert key_of(b"v" * 64, provenance=provenance) == plain  # equal bytes, another object
    provenance.remember([1, 2] * 100, "m" * 64)  # mutable: never remembered
    assert provenance.lookup([1, 2] * 100) is None


def test_default_provenance_ignores_small_values():
    PROVENANCE.remember(b"small", "k" * 64)
    assert PROVENANCE.lookup(b"small") is None


# -- function identity ------------------------------------------------------------------------
def _load_module(tmp_path: Path, name: str, source: str):
    import importlib.util

    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_function_identity_follows_project_helpers(tmp_path):
    template = """
        import json
        SCALE = {scale}

        def helper(x):
            return x * SCALE + {offset}

        def task(x):
            # a comment
            return helper(x) + len(json.dumps(x))
    """
    base = _load_module(tmp_path, "fc_mod_a", template.format(scale=2, offset=1))
    same = _load_module(tmp_path, "fc_mod_b", template.format(scale=2, offset=1)
                        .replace("# a comment", "# another comment"))
    helper_changed = _load_module(tmp_path, "fc_mod_c", template.format(scale=2, offset=5))
    constant_changed = _load_module(tmp_path, "fc_mod_d", template.format(scale=3, offset=1))
    identity = function_identity(base.task)
    # the module name is part of a function's identity; compare within one name
    assert function_identity(base.task) == identity
    for other in (same, helper_changed, constant_changed):
        other.task.__module__ = base.__name__
        other.helper.__module__ = base.__name__
    assert function_identity(same.task) == identity  # comments are not code
    assert function_identity(helper_changed.task) != identity  # a helper changed
    assert function_identity(constant_changed.task) != identity  # a module constant changed
    assert function_identity(helper_changed.task) != function_identity(constant_changed.task)


def test_decorators_and_formatting_do_not_change_identity(tmp_path):
    first = _load_module(tmp_path, "fc_dec_1", """
        import functools
        def deco(**kw):
            return lambda f: functools.wraps(f)(lambda *a: f(*a))
        @deco(lifetime="flow")
        def work(x):
            return x + 1
    """)
    second = _load_module(tmp_path, "fc_dec_2", """
        import functools
        def deco(**kw):
            return lambda f: functools.wraps(f)(lambda *a: f(*a))
        @deco(lifetime="keep")
        def work(x):
            return   x+1
    """)
    second.work.__wrapped__.__module__ = "fc_dec_1"
    assert function_identity(first.work) == function_identity(second.work)


def test_library_functions_are_named_not_walked():
    def task(x):
        return json.dumps(x)

    assert function_identity(task) == function_identity(task)
    assert len(function_identity(json.dumps)) == 32


def test_function_inputs_are_keyed_by_identity():
    def f(x):
        return x

    def g(x):
        return x + 1

    assert key_of(f) != key_of(g)
    assert key_of(f) == key_of(f)
