"""The object tier: the durable source of truth, on any fsspec URL (local dir, s3://, gs://...).

A write returns only once the backend confirmed it: the object's size, and its checksum where the
backend reports one we can recompute (S3's single-part ETag is an MD5, GCS reports CRC32C), or
else a read-back of its header. Exclusive create (``If-None-Match: *`` on S3,
``ifGenerationMatch=0`` on GCS, a hard link locally) keeps entries write-once where the backend
enforces it; the store does not rely on it for correctness.

Local directories get their own code path because fsspec's local ``pipe`` writes in place: a
reader could see half a file. Here a local frame is written to a temporary file, flushed, and
linked (or renamed) into place, so readers see all of it or nothing.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

from flowcache.checksums import checksum_claim, compute_checksum
from flowcache.errors import ConfigError, DurableWriteError, InvalidName
from flowcache.frames import Frame, read_frame
from flowcache.tiers.base import BaseTier

TMP_MARK = ".tmp-"
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
_VERIFY_HEAD_BYTES = 4096
_IOV_MAX = 1024
_CREATE_TMP = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


class ObjectTier(BaseTier):
    name = "object"
    durable = True
    trusted = False
    process_local = False
    max_item_bytes = None
    url_options: ClassVar = {"fsync": "bool", "timeout": "duration"}

    def __init__(self, url: str, *, storage_options: Mapping[str, Any] | None = None,
                 fs: fsspec.AbstractFileSystem | None = None, fsync: bool = True,
                 timeout: float | None = 120.0) -> None:
        if fs is None:
            fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
        else:
            root = fs._strip_protocol(url)
        self.url = url
        #: seconds one call to a remote backend may take (transfers get a second per MiB more)
        self.timeout = timeout
        self.fs = fs
        self.root = root.rstrip("/") or "/"
        self.fsync = fsync
        self.local = isinstance(fs, LocalFileSystem)
        if self.local:
            Path(self.root).mkdir(parents=True, exist_ok=True)

    @classmethod
    def check_url(cls, url: str) -> None:
        """A directory, or an object store URL that names its bucket (``s3://`` alone would
        otherwise be read as a local folder named ``s3:``)."""
        example = "s3://BUCKET/prefix, gs://BUCKET/prefix or /path/to/dir"
        if "://" not in url:
            if not url.strip():
                raise ConfigError(f"an empty path is not a durable tier: write {example}")
            return
        protocol, _, rest = url.partition("://")
        if protocol.lower() in ("file", "local"):
            if not rest.strip("/"):
                raise ConfigError(f"{url!r} names no directory: write file:///path/to/dir")
            return
        bucket = rest.split("/", 1)[0]
        if not _BUCKET.match(bucket):
            raise ConfigError(f"{url!r} names no valid bucket: write {example}")

    @classmethod
    def from_url(cls, url: str, *, storage_options: Mapping[str, Mapping[str, Any]]
                 | None = None, **options: Any) -> ObjectTier:
        """A path or fsspec URL; ``storage_options`` maps a protocol to its fsspec options
        (``{"s3": {"endpoint_url": ...}}``) and this URL's protocol takes its own."""
        protocol = url.split("://", 1)[0].lower() if "://" in url else "file"
        if "://" not in url:
            url = str(Path(url).expanduser().absolute())
        by_protocol = storage_options or {}
        own = by_protocol.get({"gcs": "gs", "s3a": "s3"}.get(protocol, protocol)) \
            or by_protocol.get(protocol) or {}
        return cls(url, storage_options=own, **options)

    # -- primitives ---------------------------------------------------------------------------
    def get(self, name: str) -> Frame | None:
        return self.get_into(name, None)

    def get_into(self, name: str, into: memoryview | None) -> Frame | None:
        """A local frame's payload is read into ``into`` (see ``read_frame``); a remote one is
        fetched whole, for the caller to copy."""
        path = self._path(name)
        try:
            if self.local:
                with open(path, "rb") as handle:
                    return read_frame(handle, into)
            return Frame((self._remote("cat_file", path),))
        except FileNotFoundError:
            return None

    def put(self, name: str, frame: Frame, *, ttl: float | None = None,
            exclusive: bool = False) -> None:
        path = self._path(name)
        if self.local:
            self._put_local(path, frame, exclusive)
        else:
            self._put_remote(path, frame, exclusive)
        self._confirm(name, path, frame)

    def exists(self, name: str) -> bool:
        path = self._path(name)
        if self.local:
            return os.path.exists(path)
        try:
            self._remote("info", path, refresh=True)
        except FileNotFoundError:
            return False
        return True

    def delete(self, name: str) -> bool:
        path = self._path(name)
        try:
            if self.local:
                os.unlink(path)
            else:
                # object stores delete idempotently: ask first, to report what was removed
                self._remote("info", path, refresh=True)
                self._remote("rm_file", path)
                self.fs.invalidate_cache(path)
        except FileNotFoundError:
            return False
        return True

    def scan(self, prefix: str = "") -> Iterator[str]:
        for name, _ in self.scan_sizes(prefix):
            yield name

    def scan_sizes(self, prefix: str = "") -> Iterator[tuple[str, int | None]]:
        """Names and sizes from one listing (the backend's listing carries both)."""
        for name, info in self._listing(prefix):
            if TMP_MARK not in name.rpartition("/")[2]:
                size = info.get("size")
                yield name, int(size) if size is not None else None

    def _listing(self, prefix: str) -> Iterator[tuple[str, dict[str, Any]]]:
        directory = prefix.rpartition("/")[0]
        base = f"{self.root}/{directory}".rstrip("/") if directory else self.root
        start = len(self.root) + 1
        try:
            self.fs.invalidate_cache(base)
            found = self._remote("find", base, detail=True, scale=10)
        except FileNotFoundError:
            return
        for path in sorted(found):
            name = self.fs._strip_protocol(path)[start:]
            if name.startswith(prefix):
                yield name, found[path]

    def sweep_debris(self, namespace: str, older_than: float) -> int:
        """Temporary files of local writers killed mid-write (remote writes are atomic)."""
        if not self.local:
            return 0
        removed = 0
        cutoff = time.time() - older_than
        for directory, _, files in os.walk(os.path.join(self.root, namespace)):
            for file in files:
                if TMP_MARK not in file:
                    continue
                path = os.path.join(directory, file)
                try:
                    if os.stat(path).st_mtime <= cutoff:
                        os.unlink(path)
                        removed += 1
                except FileNotFoundError:
                    continue  # its writer finished (or another sweep got it)
        return removed

    def head(self, name: str, nbytes: int) -> bytes | None:
        path = self._path(name)
        try:
            if self.local:
                with open(path, "rb") as handle:
                    return handle.read(nbytes)
            return self._remote("cat_file", path, start=0, end=nbytes)
        except FileNotFoundError:
            return None

    def size(self, name: str) -> int | None:
        """The stored frame's size from the backend's metadata (no read)."""
        try:
            if self.local:
                return os.stat(self._path(name)).st_size
            info = self._remote("info", self._path(name), refresh=True)
        except FileNotFoundError:
            return None
        return int(info["size"]) if info.get("size") is not None else None

    def health(self) -> list[str]:
        """A local root must be a writable directory; a remote bucket must exist. Credentials
        confined to a prefix may not look at the bucket: that is said, not refused."""
        if self.local:
            if not os.path.isdir(self.root) or not os.access(self.root, os.W_OK | os.X_OK):
                raise DurableWriteError(self.url, f"{self.root} is not a writable directory")
            return []
        bucket = self.root.split("/", 1)[0]
        try:
            self._remote("info", bucket, refresh=True)
        except FileNotFoundError:
            raise DurableWriteError(self.url, f"the bucket {bucket!r} does not exist: create "
                                              "it, or fix FLOWCACHE_STORE") from None
        except PermissionError as exc:
            return [f"cannot look at the bucket {bucket!r} with these credentials ({exc}); "
                    "writes under the prefix may still work"]
        return []

    def describe(self) -> str:
        return f"object {self.url}"

    # -- writing ------------------------------------------------------------------------------
    def _path(self, name: str) -> str:
        """Where ``name`` lives, always inside the root: a name with path syntax (``..``,
        ``.``, an empty or absolute segment) is refused, never resolved."""
        if not name or name.startswith("/") or "\\" in name or "\0" in name or any(
                part in ("", ".", "..") for part in name.split("/")):
            raise InvalidName(f"{name!r} is not an entry name: path syntax is refused")
        return f"{self.root}/{name}"

    def _remote(self, method: str, *args: Any, nbytes: int = 0, scale: float = 1.0,
                **kwargs: Any) -> Any:
        """A call to the backend that cannot wait forever: an async filesystem (s3fs, gcsfs)
        is given a deadline of ``timeout`` seconds (times ``scale``), plus a second per MiB
        it transfers; a frozen endpoint then raises ``FSTimeoutError``."""
        call = getattr(self.fs, method)
        if getattr(self.fs, "async_impl", False) and self.timeout:
            kwargs["timeout"] = self.timeout * scale + nbytes / (1 << 20)
        return call(*args, **kwargs)

    def _put_local(self, path: str, frame: Frame, exclusive: bool) -> None:
        # Raw descriptors, not a Python file object: a write is one writev, and the common case
        # (the directory exists) costs no makedirs. On a Dask worker storing every result of a
        # graph this is a good share of the per-task overhead (a busy disk is slow per call).
        tmp = f"{path}{TMP_MARK}{uuid.uuid4().hex}"
        try:
            fd = os.open(tmp, _CREATE_TMP, 0o666)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(tmp, _CREATE_TMP, 0o666)
        placed = False
        try:
            try:
                _write_all(fd, frame.parts)
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            if exclusive:
                os.link(tmp, path)  # atomic, and fails if the name exists
            else:
                os.replace(tmp, path)
                placed = True
        finally:
            if not placed:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)

    def _put_remote(self, path: str, frame: Frame, exclusive: bool) -> None:
        data = frame.join()
        kwargs: dict[str, Any] = {"mode": "create" if exclusive else "overwrite"}
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        if protocol in ("s3", "s3a") and exclusive:
            # s3fs sends If-None-Match only on single-request uploads (up to 5 GB); its
            # multipart path would drop the exclusive-create guard. (gcsfs keeps
            # ifGenerationMatch=0 on resumable uploads, so GCS needs nothing here.)
            kwargs["chunksize"] = max(50 << 20, len(data) + 1)
        self._remote("pipe_file", path, data, nbytes=len(data), **kwargs)
        self.fs.invalidate_cache(path)

    def _confirm(self, name: str, path: str, frame: Frame) -> None:
        if self.local:
            size = os.stat(path).st_size
            if size != frame.nbytes:
                raise DurableWriteError(name, f"wrote {frame.nbytes} bytes, file has {size}")
            return
        try:
            info = self._remote("info", path, refresh=True)
        except FileNotFoundError:
            raise DurableWriteError(name, "the object is missing right after it was written"
                                    ) from None
        size = int(info.get("size") or 0)
        if size != frame.nbytes:
            raise DurableWriteError(name, f"wrote {frame.nbytes} bytes, backend has {size}")
        claim = checksum_claim(info)
        if claim is not None:
            algorithm, expected = claim
            actual = compute_checksum(algorithm, frame.parts)
            if actual != expected:
                raise DurableWriteError(name, f"backend {algorithm} {expected} does not match "
                                              f"the bytes sent ({actual})")
            return
        head = self._remote("cat_file", path, start=0, end=_VERIFY_HEAD_BYTES)
        if head != bytes(frame.read(0, min(frame.nbytes, _VERIFY_HEAD_BYTES))):
            raise DurableWriteError(name, "read-back of the stored header differs")


def _write_all(fd: int, parts: tuple[Any, ...]) -> None:
    """Write every part, in order, with as few system calls as the kernel allows (``writev``
    may stop short: the rest is written from where it stopped)."""
    views = [memoryview(part).cast("B") for part in parts if memoryview(part).nbytes]
    while views:
        written = os.writev(fd, views[:_IOV_MAX])
        while views and written >= views[0].nbytes:
            written -= views[0].nbytes
            views.pop(0)
        if written:
            views[0] = views[0][written:]
