"""The ``flowcache::`` fsspec filesystem: remote files read through the store's tiers.

::

    import pandas as pd
    df = pd.read_parquet("flowcache::s3://bucket/table.parquet")
    with fsspec.open("flowcache::gs://bucket/out.csv", "w") as f: ...   # confirmed on close

Like fsspec's ``filecache::``, it wraps a *target* filesystem (``s3``, ``gs``, ``file``...) given
by the rest of the URL; target options go under the target's protocol name
(``storage_options={"s3": {"endpoint_url": ...}}``) and default to the store configuration's
``FLOWCACHE_STORAGE_OPTIONS``. Options of this filesystem (``flowcache={...}`` or top-level
keyword arguments): ``store``, ``consistency``, ``block_size``, ``fetch_bytes``, ``lifetime``,
``run_id``, ``meta``, ``fill_on_write``, ``spool_bytes``, ``spool_dir``, ``local_dir``.

Opening a file for reading resolves its current version (see
:mod:`flowcache.files.consistency`), then serves ranges from the block cache
(:mod:`flowcache.files.blocks`). Writing goes to the target first and is confirmed before
``close()`` returns (:mod:`flowcache.files.writes`). Everything else (``ls``, ``info``,
``mkdir``...) is the target's.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from contextvars import ContextVar
from datetime import timedelta
from pathlib import Path
from typing import Any

import fsspec
from fsspec.callbacks import DEFAULT_CALLBACK
from fsspec.implementations.chained import ChainedFileSystem

from flowcache.errors import RemoteChanged
from flowcache.files.blocks import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_FETCH_BYTES,
    BlockPolicy,
    BlockReader,
    workers_for,
)
from flowcache.files.consistency import Consistency, book_for, parse_consistency
from flowcache.files.handles import CachedFile
from flowcache.files.localize import localize_version
from flowcache.files.records import drop_stale, read_record, write_record
from flowcache.files.remote import fetch_range
from flowcache.files.versions import Version, canonical_url, protocol_of, version_of
from flowcache.files.writes import ConfirmedWriteFile, Spool, cache_written, writes_need_parents
from flowcache.lifetimes import FlowScoped, Lifetime, parse_lifetime
from flowcache.store import TieredStore
from flowcache.units import parse_size

log = logging.getLogger("flowcache.files")

DEFAULT_LIFETIME = "7d"


class FlowcacheFileSystem(ChainedFileSystem):
    """Reads of ``target`` files served from a :class:`TieredStore`; writes confirmed.

    Instances are cheap views (``cachable = False``): what must outlive one ``fsspec.open``
    call (the versions seen, the fetch workers) is kept per store in this process, so every
    filesystem over one store shares it.
    """

    protocol = "flowcache"
    cachable = False
    _strip_tokenize_options = ("fo",)

    def __init__(self, target_protocol: str | None = None,
                 target_options: Mapping[str, Any] | None = None,
                 fs: fsspec.AbstractFileSystem | None = None, *,
                 store: TieredStore | None = None,
                 consistency: Consistency | str | float | timedelta | None = "always",
                 block_size: int | str = DEFAULT_BLOCK_SIZE,
                 fetch_bytes: int | str = DEFAULT_FETCH_BYTES,
                 lifetime: Lifetime | str | float | timedelta | None = DEFAULT_LIFETIME,
                 run_id: str | None = None, meta: Mapping[str, Any] | None = None,
                 fill_on_write: bool = True, spool_bytes: int | str = 64 << 20,
                 spool_dir: str | None = None, local_dir: str | None = None,
                 clock: Callable[[], float] = time.monotonic, fo: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        from flowcache.config import default_store

        if (fs is None) == (target_protocol is None):
            raise ValueError("flowcache:: wraps another filesystem: give a chained URL such as "
                             "'flowcache::s3://bucket/key', or target_protocol= (or fs=)")
        self.store = store if store is not None else default_store()
        if fs is None:
            options = dict(_configured_options(self.store, target_protocol))
            options.update(target_options or {})
            fs = fsspec.filesystem(target_protocol, **options)
        self.fs = fs
        self.target_protocol = protocol_of(fs)
        self.consistency = parse_consistency(consistency)
        lifetime = parse_lifetime(lifetime)
        if isinstance(lifetime, FlowScoped) and not lifetime.run_id:
            lifetime = FlowScoped(run_id or current_run_id(), lifetime.max_age)
        self.policy = BlockPolicy(parse_size(block_size), parse_size(fetch_bytes), lifetime,
                                  dict(meta or {}))
        self.fill_on_write = fill_on_write
        self.spool_bytes = parse_size(spool_bytes)
        self.spool_dir = spool_dir
        self.local_dir = local_dir
        self.clock = clock

        def strip(path: str) -> str:  # per instance, as each wraps its own target
            return self.fs._strip_protocol(type(self)._strip_protocol(path))

        self._strip_protocol = strip  # type: ignore[method-assign]

    # -- paths --------------------------------------------------------------------------------
    def url(self, path: str) -> str:
        return canonical_url(self.fs, self._strip_protocol(path))

    # -- versions -----------------------------------------------------------------------------
    def current_version(self, path: str) -> Version:
        """The version of ``path`` to read, per the consistency policy.

        A version different from the one cached drops the cached blocks of the others;
        a file that is gone drops all of them and raises ``FileNotFoundError``.
        """
        path = self._strip_protocol(path)
        url = canonical_url(self.fs, path)
        book = book_for(self.store)
        now = self.clock()
        seen = book.get(url)
        if seen is not None and not self.consistency.due(seen.checked_at, now):
            return seen.version
        if seen is None and self.consistency.trusts_records:
            recorded = read_record(self.store, url)
            if recorded is not None:
                book.put(recorded, now)
                return recorded
        return self.check(path, seen.version if seen is not None else None)

    def known_version(self, path: str) -> Version | None:
        """The version this policy would read without asking the remote, or None (then only
        a metadata request can tell)."""
        url = self.url(path)
        seen = book_for(self.store).get(url)
        if seen is not None and not self.consistency.due(seen.checked_at, self.clock()):
            return seen.version
        if self.consistency.trusts_records:
            recorded = read_record(self.store, url)
            if recorded is not None:
                book_for(self.store).put(recorded, self.clock())
            return recorded
        return None

    def check(self, path: str, previous: Version | None = None) -> Version:
        """Fetch the version of ``path`` now, whatever the policy, and reconcile the cache."""
        path = self._strip_protocol(path)
        url = canonical_url(self.fs, path)
        book = book_for(self.store)
        try:
            version = version_of(self.fs, path, weak_ok=self.consistency.trusts_records)
        except FileNotFoundError:
            book.forget(url)
            if previous is not None or read_record(self.store, url) is not None:
                drop_stale(self.store, url, keep=None)
            raise FileNotFoundError(errno.ENOENT, "no such file", url) from None
        if previous is None:
            previous = read_record(self.store, url)
        if previous is None or previous.digest != version.digest:
            try:
                if previous is not None:
                    drop_stale(self.store, url, keep=version)
                write_record(self.store, version, lifetime=self.policy.lifetime,
                             meta=self.policy.meta)
            except Exception as exc:  # the cache's bookkeeping must not fail a read
                log.warning("could not record the version of %s in the cache: %s", url, exc)
        book.put(version, self.clock())
        return version

    def drop(self, path: str) -> int:
        """Remove every cached copy of ``path`` (the remote file is untouched)."""
        url = self.url(path)
        book_for(self.store).forget(url)
        return drop_stale(self.store, url, keep=None)

    def reader(self, path: str, version: Version | None = None) -> BlockReader:
        path = self._strip_protocol(path)
        version = version or self.current_version(path)
        return BlockReader(self.store, version,
                           lambda start, end: fetch_range(self.fs, path, version, start, end),
                           self.policy)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for blocks still being stored in the background (tests, benchmarks, exit)."""
        return workers_for(self.store).wait(timeout)

    # -- reading ------------------------------------------------------------------------------
    def _open(self, path: str, mode: str = "rb", block_size: Any = None,
              autocommit: bool = True, cache_options: Any = None, **kwargs: Any) -> Any:
        path = self._strip_protocol(path)
        if not autocommit:
            raise NotImplementedError("flowcache:: writes commit on close(); transactions "
                                      "(autocommit=False) are not supported")
        if mode == "rb":
            return CachedFile(self, path, self.reader(path))
        if mode in ("wb", "xb"):
            exclusive = mode == "xb"
            if exclusive and self.fs.exists(path):  # fail at open, as open(..., "x") does
                raise FileExistsError(errno.EEXIST, "file exists", self.url(path))
            return ConfirmedWriteFile(self.fs, path, Spool(self.spool_bytes, self.spool_dir),
                                      self._cache_written, exclusive=exclusive)
        raise ValueError(f"flowcache:: opens files to read ('rb') or to write whole ('wb', or "
                         f"'xb' to create only), not {mode!r}")

    def cat_file(self, path: str, start: int | None = None, end: int | None = None,
                 **kwargs: Any) -> bytes:
        """Bytes of the current version of ``path`` (per the consistency policy).

        When a check is due and a version is already known (seen in this process, or the
        store's record), the check runs while that version's cached blocks are read: a hit
        then costs the longer of the two, not their sum. Nothing is returned before the check
        confirmed the version read; if the remote file changed, the new version is read.
        """
        path = self._strip_protocol(path)
        version, pending = self._version_to_read(path)
        try:
            data: bytes | None = self._cat(path, version, start, end)
        except RemoteChanged:
            if pending is None:
                self.recheck(path)
                raise
            data = None  # the file changed while we read ahead: the check says to what
        if pending is not None:
            confirmed = pending.result()  # FileNotFoundError if it is gone
            if data is None or confirmed.digest != version.digest:
                try:
                    data = self._cat(path, confirmed, start, end)
                except RemoteChanged:
                    self.recheck(path)
                    raise
        assert data is not None
        return data

    def _cat(self, path: str, version: Version, start: int | None, end: int | None) -> bytes:
        size = version.size
        start = 0 if start is None else (size + start if start < 0 else start)
        end = size if end is None else (size + end if end < 0 else end)
        return self.reader(path, version).read(start, end)

    def _version_to_read(self, path: str) -> tuple[Version, Future[Version] | None]:
        """The version to read now and, when a check is due, the pending check confirming it
        (None when the version needs no check, or nothing was known to read ahead)."""
        known = self.known_version(path)
        if known is not None:
            return known, None
        url = self.url(path)
        seen = book_for(self.store).get(url)
        candidate = seen.version if seen is not None else read_record(self.store, url)
        if candidate is None:
            return self.check(path), None
        return candidate, workers_for(self.store).checks.submit(self.check, path, candidate)

    def recheck(self, path: str) -> None:
        """After a read met a changed remote file: note its new version (or its absence)."""
        try:
            self.check(path)
        except Exception as exc:
            log.debug("re-checking %s after a change: %s", path, exc)

    def localize(self, path: str, directory: str | Path | None = None) -> Path:
        """A local path holding the current version of ``path`` (see :mod:`.localize`)."""
        path = self._strip_protocol(path)
        return localize_version(self.reader(path), self.fs,
                                directory if directory is not None else self.local_dir)

    def put_file(self, lpath: str, rpath: str, callback: Any = DEFAULT_CALLBACK,
                 mode: str = "overwrite", **kwargs: Any) -> None:
        """fsspec's ``put_file`` less its ``mkdirs`` of the parent where writes need none (a
        local target's write makes it; an object store has none: s3fs checked the bucket)."""
        if writes_need_parents(self.fs) or os.path.isdir(lpath):
            return super().put_file(lpath, rpath, callback=callback, mode=mode, **kwargs)
        with open(lpath, "rb") as source:
            callback.set_size(os.fstat(source.fileno()).st_size)
            with self.open(rpath, "xb" if mode == "create" else "wb", **kwargs) as target:
                while chunk := source.read(self.blocksize):
                    target.write(chunk)
                    callback.relative_update(len(chunk))
        return None

    def _cache_written(self, version: Version, spool: Spool) -> None:
        cache_written(self.store, version, spool, policy=self.policy, now=self.clock(),
                      fill=self.fill_on_write)

    def ukey(self, path: str) -> str:
        return self.current_version(path).digest

    # -- the target's own operations ----------------------------------------------------------
    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """The target's ``info``, except for a file whose version the consistency policy lets
        us trust without a request (``"never"``, or an interval not yet over): then it is
        answered from that version, so readers that ask first (pyarrow: size and type) work
        with the bucket out of reach. ``refresh=True`` always asks the target."""
        path = self._strip_protocol(path)
        if not kwargs.get("refresh"):
            known = self.known_version(path)
            if known is not None:
                return {**dict(known.fields), "name": path, "size": known.size,
                        "type": "file"}
        return self.fs.info(path, **kwargs)

    def exists(self, path: str, **kwargs: Any) -> bool:
        """True for a file the policy knows without a request; else the target's own test
        (s3fs answers from a listing it holds, where ``info`` would send a HEAD)."""
        path = self._strip_protocol(path)
        return self.known_version(path) is not None or self.fs.exists(path, **kwargs)

    def isdir(self, path: str) -> bool:
        return self.fs.isdir(self._strip_protocol(path))

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> Any:
        return self.fs.ls(self._strip_protocol(path), detail=detail, **kwargs)

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        self.fs.mkdir(self._strip_protocol(path), create_parents=create_parents, **kwargs)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        self.fs.makedirs(self._strip_protocol(path), exist_ok=exist_ok)

    def rmdir(self, path: str) -> None:
        self.fs.rmdir(self._strip_protocol(path))

    def rm(self, path: str | list[str], recursive: bool = False,
           maxdepth: int | None = None) -> None:
        """The target's own ``rm`` (which knows its directories), then the cached copies of
        everything it removed are dropped."""
        paths = [self._strip_protocol(p) for p in (path if isinstance(path, list) else [path])]
        removed = self.fs.expand_path(paths, recursive=recursive, maxdepth=maxdepth)
        self.fs.rm(paths if isinstance(path, list) else paths[0], recursive=recursive,
                   maxdepth=maxdepth)
        for gone in removed:
            self.drop(gone)

    def rm_file(self, path: str) -> None:
        path = self._strip_protocol(path)
        self.fs.rm_file(path)
        self.drop(path)

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        path2 = self._strip_protocol(path2)
        self.fs.cp_file(self._strip_protocol(path1), path2, **kwargs)
        self.drop(path2)

    def modified(self, path: str) -> Any:
        return self.fs.modified(self._strip_protocol(path))

    def created(self, path: str) -> Any:
        return self.fs.created(self._strip_protocol(path))

    def __repr__(self) -> str:
        return (f"<FlowcacheFileSystem over {self.target_protocol} "
                f"consistency={self.consistency!r} store={self.store.describe()}>")


def localize(url: str, *, store: TieredStore | None = None,
             directory: str | os.PathLike[str] | None = None,
             storage_options: Mapping[str, Any] | None = None, **options: Any) -> Path:
    """A local path for ``url`` (``s3://...``, ``gs://...``, ``flowcache::...`` or a path):
    see :mod:`flowcache.files.localize`.

    ``options`` are those of :class:`FlowcacheFileSystem` (``consistency``, ``lifetime``,
    ``block_size``...); ``storage_options`` go to the target filesystem. Raises
    ``FileNotFoundError`` if the file does not exist.
    """
    target_url = url.split("::", 1)[1] if url.startswith("flowcache::") else url
    if "::" in target_url:
        raise ValueError(f"localize() takes one file URL, not a chain: {url}")
    target, path = fsspec.core.url_to_fs(target_url, **dict(storage_options or {}))
    fs = FlowcacheFileSystem(fs=target, store=store, **options)
    return fs.localize(path, directory)


_RUN_ID: ContextVar[str | None] = ContextVar("flowcache_files_run", default=None)


def current_run_id() -> str | None:
    """The flow run that ``lifetime="flow"`` files belong to in this context (set by
    :func:`run_scope`, which the Prefect ``files()`` option enters around a task body)."""
    return _RUN_ID.get()


@contextlib.contextmanager
def run_scope(run_id: str | None) -> Iterator[str | None]:
    """``with run_scope(run_id):`` makes ``flowcache::`` files opened inside the block with
    ``lifetime="flow"`` belong to that flow run (a context variable: it follows the code into
    threads and tasks started inside the block)."""
    token = _RUN_ID.set(run_id)
    try:
        yield run_id
    finally:
        _RUN_ID.reset(token)


def _configured_options(store: TieredStore, protocol: str) -> Mapping[str, Any]:
    """The store configuration's options for ``protocol`` (``FLOWCACHE_STORAGE_OPTIONS``)."""
    config = getattr(store, "config", None)
    options = getattr(config, "storage_options", None) or {}
    name = {"gcs": "gs", "s3a": "s3"}.get(protocol, protocol)
    return options.get(name) or options.get(protocol) or {}
