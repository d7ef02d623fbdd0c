"""The key recipe: one value saying how a call of a function becomes its content key.

``key = H(namespace, function identity, version, canonical inputs)``; what the inputs are is the
recipe's to say, once, for every path that makes a key: the ``cache()`` task option (Prefect and
Dask), the ``CONTENT`` cache policy, Dask graph caching, run manifests and declared task files.
So one call has one key whichever engine runs it, and they cannot drift apart.

* ``exclude``: parameters left out (clients, loggers, output paths...);
* ``files``: parameters whose ``str`` values (or lists of them) name files or URLs, keyed by the
  file's version (:mod:`flowcache.keys.fingerprints`), not by their text; ``Path``, ``FileRef``
  and fsspec ``OpenFile`` values are keyed by version wherever they appear;
* ``detect_files``: also key any ``str`` argument that looks like a URL (``s3://``, ``gs://``,
  ``file://``) or names an existing local file by its version (Dask graph caching, whose tasks
  have no declared options);
* ``outputs``: parameters holding where the call writes (keyed by location, never by what is
  there now: running the call changes that);
* ``key_fn``: ``key_fn(**arguments)`` replaces the arguments as the input (then nothing else of
  the above applies);
* ``version``: bump it to invalidate results when something outside the code changed;
* ``fingerprinter``: what reads file versions; by default the store's, which carries the store's
  storage options (endpoint, credentials), so ``s3://`` inputs are read where the store reads.

An argument that cannot be hashed is an :class:`~flowcache.errors.UnhashableInput` naming the
parameter, the task, and the fix that applies on the caller's path (``remedy``).
"""

from __future__ import annotations

import functools
import inspect
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from flowcache.errors import UnhashableInput
from flowcache.keys.canonical import content_key, hash_inputs
from flowcache.keys.code import function_identity
from flowcache.keys.fingerprints import FileRef, Fingerprinter

#: in ``outputs=``: the call's return value holds the output path(s)
RETURN = "return"
#: the remedy named by errors on the ``cache()`` path
CACHE_REMEDY = "exclude it with cache(exclude=[{param!r}]) or give the task a key_fn="
_URL = re.compile(r"^(s3|s3a|gs|gcs|file)://", re.IGNORECASE)
_MAX_PATH = 4096


@dataclass(frozen=True)
class KeyRecipe:
    exclude: frozenset[str] = frozenset()
    files: frozenset[str] = frozenset()
    outputs: frozenset[str] = frozenset()
    key_fn: Callable[..., Any] | None = None
    version: str | None = None
    fingerprinter: Fingerprinter | None = None
    detect_files: bool = False
    #: how to get past an unhashable argument on this path (``{param!r}`` is filled in)
    remedy: str = CACHE_REMEDY

    @classmethod
    def parse(cls, *, exclude: Iterable[str] = (), files: Iterable[str] = (),
              outputs: Iterable[str] = (), key_fn: Callable[..., Any] | None = None,
              version: str | None = None, fingerprinter: Fingerprinter | None = None,
              detect_files: bool = False, remedy: str = CACHE_REMEDY) -> KeyRecipe:
        """The recipe from user spellings, checked once (at decoration time)."""
        for option, names in (("exclude", exclude), ("files", files), ("outputs", outputs)):
            if isinstance(names, str):
                raise TypeError(f"{option}= takes a list of parameter names, not the string "
                                f"{names!r}: write {option}=[{names!r}]")
        both = set(files) & set(outputs)
        if both:
            raise TypeError("a parameter is an input file (files=) or an output (outputs=), "
                            f"not both: {', '.join(sorted(both))}")
        if key_fn is not None and not callable(key_fn):
            raise TypeError(f"key_fn= takes a function of the task's arguments, not {key_fn!r}")
        return cls(frozenset(exclude), frozenset(files), frozenset(outputs), key_fn,
                   None if version is None else str(version), fingerprinter, detect_files,
                   remedy)

    def with_remedy(self, remedy: str) -> KeyRecipe:
        return replace(self, remedy=remedy)

    def check(self, fn: Callable[..., Any]) -> None:
        """Every parameter the recipe names exists on ``fn`` (a ``TypeError`` naming it)."""
        parameters = signature_of(fn).parameters
        unknown = (self.exclude | self.files | (self.outputs - {RETURN})) - set(parameters)
        if unknown:
            raise TypeError(f"{getattr(fn, '__qualname__', fn)} has no parameter(s) "
                            f"{', '.join(sorted(unknown))} (named in exclude=, files= or "
                            "outputs=)")

    # -- what counts --------------------------------------------------------------------------
    def inputs(self, arguments: Mapping[str, Any], fn: Callable[..., Any] | None = None
               ) -> dict[str, Any]:
        """The values the key hashes, by name: files as :class:`FileRef`, outputs by location.

        ``arguments`` are a call's bound arguments by parameter name (defaults applied); a
        ``**kwargs`` parameter may come as one dict (as Prefect gives it) or already spread.
        """
        arguments = spread_var_keyword(arguments, fn)
        if self.key_fn is not None:
            return {"key_fn": self.key_fn(**_call_form(arguments))}
        inputs: dict[str, Any] = {}
        for name, value in arguments.items():
            if name in self.exclude:
                continue
            if name in self.outputs:
                inputs[name] = output_location(value)
            elif name in self.files:
                inputs[name] = as_file_refs(value)
            elif self.detect_files:
                inputs[name] = detect_file(value)
            else:
                inputs[name] = value
        return inputs

    def file_inputs(self, arguments: Mapping[str, Any]) -> tuple[dict[str, list[Any]],
                                                                  dict[str, Any]]:
        """The call's input files (by parameter: their references) and the rest of its
        configuration (by parameter: values), for run manifests. Outputs and excluded
        parameters are in neither."""
        files: dict[str, list[Any]] = {}
        config: dict[str, Any] = {}
        for name, value in arguments.items():
            if name in self.exclude or name in self.outputs:
                continue
            refs = file_refs(as_file_refs(value) if name in self.files else value)
            if refs:
                files[name] = refs
            else:
                config[name] = value
        return files, config

    # -- the key ------------------------------------------------------------------------------
    def key(self, fn: Callable[..., Any], arguments: Mapping[str, Any], *, namespace: str,
            fingerprinter: Fingerprinter | None = None, task: str | None = None) -> str:
        """The content key of calling ``fn`` with ``arguments`` (bound, by parameter name).

        ``fingerprinter``: the store's, unless the recipe names its own.
        """
        try:
            digest = hash_inputs(self.inputs(arguments, fn),
                                 fingerprinter=self.fingerprinter or fingerprinter)
        except UnhashableInput as exc:
            raise UnhashableInput(exc.param, exc.value_type, task=task or _name(fn),
                                  reason=exc.reason, remedy=self.remedy) from None
        return content_key(namespace=namespace, identity=function_identity(fn),
                           inputs_digest=digest, version=self.version)


def bind_arguments(fn: Callable[..., Any], args: tuple, kwargs: Mapping[str, Any]
                   ) -> dict[str, Any]:
    """``fn(*args, **kwargs)``'s arguments by parameter name, defaults applied (as Prefect
    binds a task's parameters)."""
    bound = signature_of(fn).bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


@functools.lru_cache(maxsize=2048)
def _signature(fn: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(fn)


def signature_of(fn: Callable[..., Any]) -> inspect.Signature:
    """``inspect.signature``, remembered per function (graphs call one function many times)."""
    try:
        return _signature(fn)
    except TypeError:  # not hashable
        return inspect.signature(fn)


def spread_var_keyword(arguments: Mapping[str, Any], fn: Callable[..., Any] | None
                       ) -> dict[str, Any]:
    """``{"kwargs": {"a": 1}}`` -> ``{"**a": 1}`` for a ``**kwargs`` parameter of ``fn``, so
    a keyword is keyed the same whichever way the engine bound it."""
    arguments = dict(arguments)
    if fn is None:
        return arguments
    for name, parameter in signature_of(fn).parameters.items():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD and isinstance(
                arguments.get(name), Mapping):
            arguments.update({f"**{k}": v for k, v in arguments.pop(name).items()})
    return arguments


def _call_form(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments as keywords again (``**a`` back to ``a``), for ``key_fn``."""
    return {name.removeprefix("**"): value for name, value in arguments.items()}


def as_file_refs(value: Any) -> Any:
    """A ``files=`` parameter's value with its strings (one, or a list/tuple) as FileRefs."""
    if isinstance(value, str):
        return FileRef(value)
    if isinstance(value, (list, tuple)):
        return type(value)(as_file_refs(item) for item in value)
    return value


def detect_file(value: Any) -> Any:
    """A string that is a URL, or the path of an existing local file, as a FileRef (also
    inside lists, tuples and dict values)."""
    if isinstance(value, str):
        if 0 < len(value) < _MAX_PATH and (_URL.match(value) or (
                (os.sep in value or "." in value) and os.path.isfile(value))):
            return FileRef(value)
        return value
    if type(value) in (list, tuple):
        return type(value)(detect_file(item) for item in value)
    if type(value) is dict:
        return {name: detect_file(item) for name, item in value.items()}
    return value


def output_location(value: Any) -> Any:
    """What an output parameter contributes to the content key: where the call writes (the
    path's text), never the fingerprint of what is there now (that changes by running it)."""
    if isinstance(value, list):
        return [output_location(item) for item in value]
    if isinstance(value, tuple):
        return tuple(output_location(item) for item in value)
    if isinstance(value, FileRef):
        return value.url
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def file_refs(value: Any) -> list[Any]:
    """File references in ``value`` (paths and FileRefs, one level of list/tuple; all of the
    list, or none)."""
    if isinstance(value, (list, tuple)):
        found = [file_refs(item) for item in value]
        return [ref for refs in found for ref in refs] if found and all(found) else []
    if isinstance(value, FileRef):
        return [value]
    if isinstance(value, os.PathLike):
        return [value]
    return []


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", getattr(fn, "__name__", repr(fn)))
