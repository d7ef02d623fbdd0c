"""The ``files()`` task option: a task's input files localized, its output files uploaded.

::

    @files(inputs=["sample"], outputs=["report"], lifetime="flow")
    @task(retries=2)
    def summarize(sample: Path, report: Path) -> None:
        pd.read_csv(sample).describe().to_csv(report)

    summarize("s3://lab/raw/s1.csv", "s3://lab/reports/s1.csv")

The caller passes URLs (``str``, ``FileRef``, a path, or a list of them); the body gets local
paths. Each *input* is localized first (:func:`flowcache.files.localize`: a node-local copy,
reused while the remote file's fingerprint matches, fetched through the cache's tiers). Each
*output* parameter gets a fresh local path to write; when the body returns, every output is
sent to its URL through ``flowcache::`` and confirmed (size and checksum) before the task run
ends, so a failed upload fails the run and its ``retries`` apply, and the cache is then filled
so a downstream task reading the file hits. If the body fails, nothing is uploaded.

Cached copies belong to the run's user, with the given lifetime (``"flow"``: purged by
``purge_intermediates`` at the end of the flow run). Outputs written to local directories are
recorded in that directory's run manifest (``flowcache runs DIR``), the same record
``cache(outputs=...)`` writes; ``on_outputs=`` receives a :class:`FilesCall` for anything else
(a remote manifest, a catalogue). Stack it *under* ``cache()``, next to ``@task``: the cache
then keys the call by the URLs (pass them in ``cache(files=[...])`` to key inputs by version)
and a hit runs neither the body nor the uploads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from flowcache.keys.fingerprints import FileRef, Fingerprinter, split_protocol
from flowcache.keys.recipe import KeyRecipe
from flowcache.lifetimes import Lifetime
from flowcache.manifest import OutputCall
from flowcache.store import TieredStore
from prefect_cache.context import call_context

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("prefect_cache")


@dataclass(frozen=True)
class FilesOptions:
    """What ``files(...)`` was given, checked once at decoration time."""

    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    store: TieredStore | None = None
    lifetime: Lifetime | str | float | timedelta | None = None
    consistency: Any = "always"
    storage_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    fs_options: Mapping[str, Any] = field(default_factory=dict)
    local_dir: str | None = None
    manifest: bool = True
    on_outputs: Callable[[FilesCall], None] | None = None


@dataclass
class FilesCall:
    """One run of a task with declared files, as handed to ``on_outputs``."""

    task: str
    flow: str | None
    run_id: str | None
    inputs: dict[str, Path] = field(default_factory=dict)  # URL -> local copy read
    outputs: dict[str, Any] = field(default_factory=dict)  # URL -> confirmed Version
    started: float = 0.0
    finished: float = 0.0


def files(__fn: Any = None, *, inputs: Iterable[str] = (), outputs: Iterable[str] = (),
          store: TieredStore | None = None,
          lifetime: Lifetime | str | float | timedelta | None = None,
          consistency: Any = "always",
          storage_options: Mapping[str, Mapping[str, Any]] | None = None,
          local_dir: str | os.PathLike[str] | None = None, manifest: bool = True,
          on_outputs: Callable[[FilesCall], None] | None = None,
          **fs_options: Any) -> Any:
    """Declare a task's input and output files (parameters holding URLs).

    Args:
        inputs: parameters whose URLs are localized before the body runs (it gets paths).
        outputs: parameters whose URLs the body's files are uploaded to (it gets paths).
        store: the ``TieredStore`` (default: the configured one, ``use_store``'s inside).
        lifetime: of the cached copies: ``"flow"``, a TTL (``"2h"``) or ``"keep"``
            (default: the ``flowcache::`` filesystem's, 7 days).
        consistency: ``"always"``, ``"never"`` or an interval (see flowcache.files).
        storage_options: per protocol, for the remote filesystems (default: configured).
        local_dir: where localized copies and staged outputs live (node-local disk).
        manifest: record outputs in local directories' run manifests.
        on_outputs: called with a :class:`FilesCall` once every output is confirmed.
        fs_options: other ``flowcache::`` options (``block_size``, ``fetch_bytes``...).
    """
    if isinstance(inputs, str) or isinstance(outputs, str):
        raise TypeError("files(inputs=..., outputs=...) take lists of parameter names")
    both = set(inputs) & set(outputs)
    if both:
        raise TypeError(f"a parameter is an input or an output, not both: {sorted(both)}")
    options = FilesOptions(tuple(inputs), tuple(outputs), store, lifetime, consistency,
                           dict(storage_options or {}), dict(fs_options),
                           os.fspath(local_dir) if local_dir is not None else None, manifest,
                           on_outputs)

    def apply(target: Any) -> Any:
        from prefect import Task

        if isinstance(target, Task):
            wrapped = target.with_options()
            wrapped.fn = _wrap(target.fn, options, target.name)
            for name, value in vars(target).items():  # with_options() drops our marks
                if name.startswith("flowcache_"):
                    setattr(wrapped, name, value)
            wrapped.flowcache_files = options
            return wrapped
        if callable(target):
            return _wrap(target, options, getattr(target, "__qualname__", "function"))
        raise TypeError(f"files() decorates a Prefect task or a function, not {target!r}")

    return apply(__fn) if __fn is not None else apply


def _wrap(fn: Callable[..., Any], options: FilesOptions, name: str) -> Callable[..., Any]:
    signature = inspect.signature(fn)
    unknown = set(options.inputs + options.outputs) - set(signature.parameters)
    if unknown:
        raise TypeError(f"{name} has no parameter(s) {', '.join(sorted(unknown))} (named in "
                        "files(inputs=..., outputs=...))")
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            call = _Call(options, signature, name, args, kwargs)
            bound = await asyncio.to_thread(call.prepare)
            try:
                with call.scope():
                    result = await fn(*bound.args, **bound.kwargs)
                await asyncio.to_thread(call.finish)
                return result
            finally:
                call.cleanup()
        return run_async

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        call = _Call(options, signature, name, args, kwargs)
        bound = call.prepare()
        try:
            with call.scope():
                result = fn(*bound.args, **bound.kwargs)
            call.finish()
            return result
        finally:
            call.cleanup()
    return run


class _Call:
    """One call: localize inputs, stage outputs, run, upload and confirm, record."""

    def __init__(self, options: FilesOptions, signature: inspect.Signature, name: str,
                 args: tuple, kwargs: dict) -> None:
        from flowcache.config import default_store

        self.options = options
        self.context, _ = call_context(name)
        self.store = options.store or default_store()
        self.bound = signature.bind(*args, **kwargs)
        self.bound.apply_defaults()
        self.arguments = dict(self.bound.arguments)  # the URLs, as the caller gave them
        self.staging: Path | None = None
        self.staged: list[tuple[str, str, Path]] = []  # (parameter, URL, local path)
        self.record = FilesCall(self.context.task_name, self.context.flow_name,
                                self.context.run_id)
        self.manifest_call: Any = None

    def filesystem(self, url: str) -> tuple[Any, str]:
        from flowcache.files import FlowcacheFileSystem

        protocol, path = split_protocol(url)
        meta = {k: v for k, v in (("task", self.context.task_name),
                                  ("flow", self.context.flow_name),
                                  ("run", self.context.run_id)) if v}
        options: dict[str, Any] = {"store": self.store, "consistency": self.options.consistency,
                                   "run_id": self.context.run_id, "meta": meta,
                                   "local_dir": self.options.local_dir,
                                   **self.options.fs_options}
        if self.options.lifetime is not None:
            options["lifetime"] = self.options.lifetime
        target_options = self.options.storage_options.get(protocol)
        fs = FlowcacheFileSystem(target_protocol=protocol, target_options=target_options,
                                 **options)
        return fs, path

    def prepare(self) -> inspect.BoundArguments:
        if self.options.manifest and any(
                split_protocol(url)[0] == "file" for name in self.options.outputs
                for url in _urls(self.arguments[name])):
            self.manifest_call = self._begin_manifest()
        for name in self.options.inputs:
            self.bound.arguments[name] = _map(self.arguments[name], self._localize)
        if self.options.outputs:
            if self.options.local_dir is not None:
                Path(self.options.local_dir).mkdir(parents=True, exist_ok=True)
            self.staging = Path(tempfile.mkdtemp(prefix="flowcache-outputs-",
                                                 dir=self.options.local_dir))
        for name in self.options.outputs:
            self.bound.arguments[name] = _map(self.arguments[name],
                                              lambda url, name=name: self._stage(name, url))
        self.record.started = time.time()
        return self.bound

    def _localize(self, url: str) -> Path:
        fs, path = self.filesystem(url)
        local = fs.localize(path)
        self.record.inputs[url] = local
        return local

    def _stage(self, name: str, url: str) -> Path:
        assert self.staging is not None
        slot = self.staging / str(len(self.staged))
        slot.mkdir()
        local = slot / (os.path.basename(split_protocol(url)[1].rstrip("/")) or "output")
        self.staged.append((name, url, local))
        return local

    def scope(self) -> contextlib.AbstractContextManager:
        from flowcache.files import run_scope

        return run_scope(self.context.run_id)

    def finish(self) -> None:
        """Upload every output (confirmed: raises ``DurableWriteError``), then record them."""
        self.record.finished = time.time()
        for name, url, local in self.staged:
            if not local.is_file():
                raise FileNotFoundError(
                    f"task {self.context.task_name!r} declared output {name!r} ({url}) but "
                    f"wrote no file at {local}")
            fs, path = self.filesystem(url)
            with open(local, "rb") as source:
                target = fs.open(path, "wb")
                try:
                    shutil.copyfileobj(source, target, 8 << 20)
                except BaseException:
                    target.discard()
                    raise
                target.close()  # confirmed here, or raises
            self.record.outputs[url] = target.version
        if self.manifest_call is not None:
            self.manifest_call.started, self.manifest_call.finished = (self.record.started,
                                                                       self.record.finished)
            self.manifest_call.finish(None, key=None, nbytes=0,
                                      workflow=self.context.flow_name or self.context.task_name,
                                      task=self.context.task_name, run_id=self.context.run_id)
        if self.options.on_outputs is not None:
            self.options.on_outputs(self.record)

    def _begin_manifest(self) -> Any:
        """The run manifest's record of this call (local outputs only; see flowcache.manifest).

        Inputs are fingerprinted now, before the body runs: the manifest marks an output stale
        when an input changes after the output was made from it.
        """
        fingerprinter = Fingerprinter({**self.store.storage_options,
                                       **self.options.storage_options})
        recipe = KeyRecipe.parse(files=self.options.inputs, outputs=self.options.outputs)
        return OutputCall.begin(recipe, self.arguments, fingerprinter=fingerprinter)

    def cleanup(self) -> None:
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)


def _map(value: Any, convert: Callable[[str], Path]) -> Any:
    """Apply ``convert`` to each URL in ``value`` (one URL, or a list/tuple of them)."""
    if isinstance(value, (list, tuple)):
        return type(value)(_map(item, convert) for item in value)
    if isinstance(value, FileRef):
        return convert(value.url)
    if isinstance(value, (str, os.PathLike)):
        return convert(os.fspath(value))
    raise TypeError(f"files(): expected a URL or path (or a list of them), got "
                    f"{type(value).__name__}")


def _urls(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [url for item in value for url in _urls(item)]
    if isinstance(value, FileRef):
        return [value.url]
    return [os.fspath(value)] if isinstance(value, (str, os.PathLike)) else []
