"""Function identity: a digest of a function's code and of the project code it calls.

Prefect's ``TASK_SOURCE`` hashes only the task's own source, so editing a helper the task calls
leaves stale results in the cache. Here a function's identity covers:

* its source, parsed and re-dumped without decorators, comments or formatting (so reformatting
  or changing ``@cache(...)`` options does not invalidate results, but any code change does);
* recursively, every *project-local* function or class it references through globals, module
  attributes or closures;
* the values of simple constants (numbers, strings, tuples of them) it reads from project modules.

"Project-local" means defined in a module that is not part of the standard library or of an
installed distribution (``site-packages``), nor flowcache itself. Third-party code is identified
by name only: upgrading a library does not invalidate the cache.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import inspect
import sys
import sysconfig
import textwrap
import types
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import blake3

_OWN_PACKAGES = ("flowcache", "prefect_cache", "dask_cache")
_SIMPLE_CONSTANTS = (int, float, complex, str, bytes, bool, type(None))
_MAX_CONSTANT_BYTES = 1 << 16


@functools.cache
def _library_roots() -> tuple[str, ...]:
    roots = set()
    for name in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(name)
        if path:
            roots.add(str(Path(path).resolve()))
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix}:
        roots.add(str(Path(prefix, "lib").resolve()))
    return tuple(sorted(roots))


@functools.lru_cache(maxsize=4096)
def is_project_module(module_name: str | None) -> bool:
    """True for modules the user's project defines (not stdlib, site-packages or flowcache)."""
    if not module_name:
        return False
    if module_name == "__main__":
        return True
    top = module_name.partition(".")[0]
    if top in _OWN_PACKAGES or top in sys.builtin_module_names:
        return False
    module = sys.modules.get(module_name)
    filename = getattr(module, "__file__", None)
    if not filename:
        return False
    resolved = str(Path(filename).resolve())
    if "site-packages" in resolved or "dist-packages" in resolved:
        return False
    return not any(resolved.startswith(root + "/") for root in _library_roots())


def function_identity(fn: Callable[..., Any]) -> bytes:
    """A 32-byte digest identifying ``fn``'s behaviour as far as source code can tell.

    Digests are memoised per function object (a closure over other values is another object).
    """
    fn = inspect.unwrap(fn)
    try:
        return _IDENTITIES[fn]
    except (KeyError, TypeError):
        pass
    hasher = blake3.blake3()
    for chunk in _walk(fn, seen=set()):
        hasher.update(len(chunk).to_bytes(8, "little"))
        hasher.update(chunk)
    digest = hasher.digest()
    with contextlib.suppress(TypeError):  # not weak-referenceable: recomputed next time
        _IDENTITIES[fn] = digest
    return digest


_IDENTITIES: weakref.WeakKeyDictionary[Any, bytes] = weakref.WeakKeyDictionary()


def _walk(obj: Any, seen: set[int]) -> Iterator[bytes]:
    """Yield canonical byte chunks for ``obj`` and the project code it reaches."""
    if id(obj) in seen:
        yield b"<seen>" + _qualified_name(obj).encode()
        return
    seen.add(id(obj))
    if isinstance(obj, functools.partial):
        yield b"partial"
        yield from _walk(obj.func, seen)
        yield repr((len(obj.args), sorted(obj.keywords))).encode()
        return
    if isinstance(obj, (classmethod, staticmethod)):
        obj = obj.__func__
    if isinstance(obj, types.MethodType):
        obj = obj.__func__
    if inspect.isclass(obj):
        yield b"class:" + _qualified_name(obj).encode()
        if is_project_module(obj.__module__):
            yield _source_digest(obj)
            for member in vars(obj).values():
                if isinstance(member, (classmethod, staticmethod)):
                    member = member.__func__
                target = member
                if inspect.isfunction(target):
                    yield from _walk(target, seen)
        return
    if not inspect.isfunction(obj):
        yield b"callable:" + _qualified_name(obj).encode()
        return
    yield b"function:" + _qualified_name(obj).encode()
    yield _source_digest(obj)
    yield from _references(obj, seen)


def _references(fn: types.FunctionType, seen: set[int]) -> Iterator[bytes]:
    names = sorted(set(_code_names(fn.__code__)))
    fn_globals = fn.__globals__
    for name in names:
        if name not in fn_globals:
            continue
        value = fn_globals[name]
        if inspect.ismodule(value):
            if is_project_module(value.__name__):
                for attr in names:
                    member = getattr(value, attr, None)
                    if member is not None and _is_project_code(member):
                        yield f"attr:{value.__name__}.{attr}".encode()
                        yield from _walk(member, seen)
            continue
        if _is_project_code(value):
            yield f"global:{name}".encode()
            yield from _walk(value, seen)
        elif is_project_module(fn.__module__) and _is_simple_constant(value):
            yield f"const:{name}".encode() + _constant_bytes(value)
    for index, cell in enumerate(fn.__closure__ or ()):
        try:
            value = cell.cell_contents
        except ValueError:  # empty cell
            continue
        if _is_project_code(value):
            yield f"closure:{index}".encode()
            yield from _walk(value, seen)
        elif _is_simple_constant(value):
            yield f"closure:{index}".encode() + _constant_bytes(value)


def _code_names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_names(const)


def _is_project_code(value: Any) -> bool:
    if isinstance(value, functools.partial):
        return _is_project_code(value.func)
    if inspect.isfunction(value) or inspect.isclass(value):
        return is_project_module(getattr(value, "__module__", None))
    return False


def _is_simple_constant(value: Any) -> bool:
    if isinstance(value, _SIMPLE_CONSTANTS):
        return not isinstance(value, (str, bytes)) or len(value) <= _MAX_CONSTANT_BYTES
    if isinstance(value, (tuple, frozenset)) and len(value) <= 256:
        return all(_is_simple_constant(v) for v in value)
    return False


def _constant_bytes(value: Any) -> bytes:
    if isinstance(value, frozenset):
        return b"frozenset" + b"".join(sorted(_constant_bytes(v) for v in value))
    if isinstance(value, tuple):
        return b"(" + b",".join(_constant_bytes(v) for v in value) + b")"
    return type(value).__name__.encode() + b":" + repr(value).encode()


def _qualified_name(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or ""
    name = (getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
            or type(obj).__name__)
    return f"{module}.{name}"


def _source_digest(obj: Any) -> bytes:
    """Digest of the object's AST without decorators; falls back to its bytecode."""
    try:
        source = textwrap.dedent(inspect.getsource(obj))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError, IndentationError):
        return _bytecode_digest(obj)
    node = _first_definition(tree, getattr(obj, "__name__", ""))
    if node is None:
        return _bytecode_digest(obj)
    if hasattr(node, "decorator_list"):
        node.decorator_list = []
    return blake3.blake3(ast.dump(node, annotate_fields=False).encode()).digest()


def _first_definition(tree: ast.AST, name: str) -> ast.AST | None:
    definitions = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    fallback = None
    for node in ast.walk(tree):
        if isinstance(node, definitions):
            if node.name == name:
                return node
            fallback = fallback or node
        elif isinstance(node, ast.Lambda) and name == "<lambda>":
            return node
    return fallback


def _bytecode_digest(obj: Any) -> bytes:
    code = getattr(obj, "__code__", None)
    if code is None:
        return blake3.blake3(_qualified_name(obj).encode()).digest()
    hasher = blake3.blake3()
    _feed_code(hasher, code)
    return hasher.digest()


def _feed_code(hasher: blake3.blake3, code: types.CodeType) -> None:
    hasher.update(code.co_code)
    hasher.update(repr(code.co_names).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _feed_code(hasher, const)
        else:
            hasher.update(_constant_bytes(const) if _is_simple_constant(const) else b"?")
