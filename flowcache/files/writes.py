"""Write-through: a file written to its remote location, confirmed there before ``close()``.

What is written is spooled (in memory up to ``spool_bytes``, then in a temporary file) and sent
to the target when the file is closed. ``close()`` returns only once the target confirmed the
bytes, the same way the durable tier confirms a frame (:mod:`flowcache.tiers.objects`): the
object's size, and its checksum where the backend reports one we can recompute (S3's single-part
ETag is an MD5, so objects up to 5 GiB go up in one request; GCS reports CRC32C), else a
read-back of its first and last bytes. Local targets are written to a temporary file, fsynced
and renamed into place, so a reader never sees half a file.

A write the target refuses, or cannot confirm, raises :class:`~flowcache.errors.DurableWriteError`
from ``close()`` and caches nothing. A confirmed write then fills the cache (the record and every
block, durable tier first), so a downstream reader of the file hits; a failed fill only logs,
since the file itself is safe. Leaving a ``with`` block by an exception, or dropping the file
without closing it, discards it.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import fsspec

from flowcache.checksums import checksum_claim, compute_checksum
from flowcache.errors import DurableWriteError
from flowcache.files.blocks import BlockPolicy, BlockReader
from flowcache.files.consistency import book_for
from flowcache.files.records import drop_stale, write_record
from flowcache.files.versions import (
    Version,
    canonical_url,
    is_local,
    local_path,
    local_version,
    protocol_of,
    version_from_info,
)
from flowcache.store import TieredStore

log = logging.getLogger("flowcache.files")

S3_SINGLE_PUT_MAX = 5 << 30
#: object stores: a key needs no parent "directory" made first
_NO_DIRECTORIES = frozenset({"s3", "gs"})
_CHUNK = 8 << 20
_PROBE = 4096


class Spool:
    """Bytes being written: a buffer in memory, moved to a temporary file past ``limit``."""

    def __init__(self, limit: int, directory: str | None = None) -> None:
        self.limit = limit
        self.directory = directory
        self.size = 0
        self._buffer: bytearray | None = bytearray()
        self._file: Any = None

    @property
    def path(self) -> str | None:
        return self._file.name if self._file is not None else None

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if self._buffer is not None and self.size + view.nbytes > self.limit:
            self._file = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed by close())
                prefix="flowcache-spool-", dir=self.directory)
            self._file.write(self._buffer)
            self._buffer = None
        if self._buffer is not None:
            self._buffer += view
        else:
            self._file.write(view)
        self.size += view.nbytes
        return view.nbytes

    def getvalue(self) -> bytes:
        if self._buffer is not None:
            return bytes(self._buffer)
        return self.read(0, self.size)

    def read(self, start: int, end: int) -> bytes:
        end = min(end, self.size)
        if self._buffer is not None:
            return bytes(memoryview(self._buffer)[start:end])
        self._file.flush()
        return os.pread(self._file.fileno(), end - start, start)

    def chunks(self) -> Iterator[bytes]:
        for start in range(0, self.size, _CHUNK):
            yield self.read(start, start + _CHUNK)

    def close(self) -> None:
        self._buffer = None
        if self._file is not None:
            self._file.close()
            self._file = None


class ConfirmedWriteFile(io.RawIOBase):
    """A file opened with ``"wb"`` on a ``flowcache::`` URL: spooled, then sent to ``path`` on
    ``target`` and confirmed there when closed; ``on_confirmed(version, spool)`` then caches
    it (see :func:`cache_written`)."""

    def __init__(self, target: fsspec.AbstractFileSystem, path: str, spool: Spool,
                 on_confirmed: Callable[[Version, Spool], None], *,
                 exclusive: bool = False) -> None:
        super().__init__()
        self.exclusive = exclusive  # "xb": FileExistsError if the file appeared meanwhile
        self.target = target
        self.path = path
        self.url = canonical_url(target, path)
        self.spool = spool
        self.on_confirmed = on_confirmed
        self.version: Version | None = None  # set once the write is confirmed

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.closed:
            raise ValueError(f"write to closed file {self.url}")
        return self.spool.write(data)

    def tell(self) -> int:
        return self.spool.size

    def close(self) -> None:
        """Send the file, confirm it (raises ``DurableWriteError``), then cache it."""
        if self.closed:
            return
        try:
            self.version = upload(self.target, self.path, self.spool, exclusive=self.exclusive)
            self.on_confirmed(self.version, self.spool)
        finally:
            self.spool.close()
            super().close()

    def discard(self) -> None:
        """Close without writing anything."""
        if not self.closed:
            self.spool.close()
            super().close()

    def __del__(self) -> None:
        # A file dropped without close() is not published (io's default would close, and so
        # upload, whatever half was written): only an explicit close() sends a file.
        self.discard()

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is not None:
            self.discard()
        else:
            self.close()

    def __repr__(self) -> str:
        return f"<ConfirmedWriteFile {self.url} ({self.spool.size} bytes)>"


def writes_need_parents(fs: fsspec.AbstractFileSystem) -> bool:
    """Whether a write to ``fs`` needs its parent directory made first: not on a local target
    (:func:`upload` makes it) nor on an object store (it has no directories)."""
    return not is_local(fs) and protocol_of(fs) not in _NO_DIRECTORIES


def upload(fs: fsspec.AbstractFileSystem, path: str, spool: Spool, *,
           exclusive: bool = False) -> Version:
    """Send ``spool`` to ``path`` and confirm it; returns the version the target now holds.

    ``exclusive``: create only, ``FileExistsError`` if ``path`` exists (S3's If-None-Match,
    a hard link locally; other backends can only check first, so there a race stays open).
    """
    url = canonical_url(fs, path)
    try:
        if is_local(fs):
            return _write_local(url, spool, exclusive=exclusive)
        kwargs: dict[str, Any] = {}
        if protocol_of(fs) == "s3" and spool.size <= S3_SINGLE_PUT_MAX:
            kwargs["chunksize"] = max(spool.size + 1, 50 << 20)  # one PUT: its ETag is an MD5
        if exclusive:
            if protocol_of(fs) == "s3":
                kwargs["mode"] = "create"
            elif fs.exists(path):
                raise FileExistsError(errno.EEXIST, "file exists", url)
        if spool.path is None:
            fs.pipe_file(path, spool.getvalue(), **kwargs)
        else:
            fs.put_file(spool.path, path, **kwargs)
        fs.invalidate_cache(path)
        try:
            info = fs.info(path, refresh=True)
        except FileNotFoundError:
            raise DurableWriteError(url, "the object is missing right after it was written"
                                    ) from None
        confirm(fs, path, url, info, spool)
        return version_from_info(url, info, weak_ok=True)
    except (DurableWriteError, FileExistsError):
        raise
    except Exception as exc:
        raise DurableWriteError(url, f"{type(exc).__name__}: {exc}") from exc


def confirm(fs: fsspec.AbstractFileSystem, path: str, url: str, info: dict[str, Any],
            spool: Spool) -> None:
    """Check the target holds what was sent: size, then checksum (or a read-back)."""
    size = int(info.get("size") or 0)
    if size != spool.size:
        raise DurableWriteError(url, f"wrote {spool.size} bytes, the target has {size}")
    claim = checksum_claim(info)
    if claim is not None:
        algorithm, expected = claim
        actual = compute_checksum(algorithm, spool.chunks())
        if actual != expected:
            raise DurableWriteError(url, f"the target's {algorithm} {expected} does not match "
                                         f"the bytes sent ({actual})")
        return
    probes = [(0, min(size, _PROBE)), (max(0, size - _PROBE), size)]
    for start, end in probes:
        if start < end and fs.cat_file(path, start=start, end=end) != spool.read(start, end):
            raise DurableWriteError(url, f"read-back of bytes {start}-{end} differs")


def _write_local(url: str, spool: Spool, *, exclusive: bool = False) -> Version:
    path = local_path(url)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.flowcache-tmp-{uuid.uuid4().hex}"
    try:
        with open(tmp, "wb") as handle:
            for chunk in spool.chunks():
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            try:
                os.link(tmp, path)  # fails if path exists, atomically
            except FileExistsError:
                raise FileExistsError(errno.EEXIST, "file exists", url) from None
        else:
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    st = os.stat(path)
    if st.st_size != spool.size:
        raise DurableWriteError(url, f"wrote {spool.size} bytes, the file has {st.st_size}")
    return local_version(url, st)


def cache_written(store: TieredStore, version: Version, spool: Spool, *, policy: BlockPolicy,
                  now: float, fill: bool = True) -> None:
    """After a confirmed write: drop other versions, record this one and (``fill``) store its
    blocks, durable tier first. A failure here only logs: the file itself is safe."""
    book_for(store).put(version, now)
    try:
        drop_stale(store, version.url, keep=version)
        write_record(store, version, lifetime=policy.lifetime, meta=policy.meta)
        if fill:
            reader = BlockReader(store, version, spool.read, policy)
            reader.fill(spool.read)
    except Exception as exc:
        log.warning("%s was written and confirmed, but caching it failed (readers will fetch "
                    "it): %s", version.url, exc)
