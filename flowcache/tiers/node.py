"""The node tier: a byte-budgeted LRU of frames on one machine's local disk or shared memory.

Every worker process on a node shares it (it is a directory, by default under ``/dev/shm``), so a
result cached by one process is read by the others without touching Redis or the bucket. It is a
local object tier with two differences: it forgets (least recently read frames go first when
``max_bytes`` is exceeded; reads refresh a frame's mtime) and it never fsyncs (it is a cache, not
the source of truth). Frames are verified on every read: other processes on the node write here.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from flowcache.errors import ConfigError
from flowcache.frames import Frame
from flowcache.tiers.objects import TMP_MARK, ObjectTier

#: the node's bookkeeping file: its flock serialises the budget, its first bytes hold the usage
_LOCK = ".lock"
_COUNTER_BYTES = 21  # 20 digits and a newline, rewritten in place


def default_node_dir() -> Path:
    """``/dev/shm/flowcache-<uid>`` when shared memory is available, else the temp dir."""
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
    return base / f"flowcache-node-{os.getuid()}"


class NodeTier(ObjectTier):
    name = "node"
    durable = False
    trusted = False
    process_local = False
    url_options: ClassVar = {"max_bytes": "size", "max_item_bytes": "size"}

    def __init__(self, directory: str | os.PathLike[str] | None = None, *,
                 max_bytes: int = 2 << 30, max_item_bytes: int | None = None) -> None:
        root = Path(directory) if directory is not None else default_node_dir()
        super().__init__(str(root), fsync=False)
        self.max_bytes = max_bytes
        self.max_item_bytes = max_item_bytes if max_item_bytes is not None else max_bytes
        self.evictions = 0

    @classmethod
    def check_url(cls, url: str) -> None:
        if url not in ("node", "node://") and not url.startswith("node:///"):
            raise ConfigError(f"{url!r}: write node (the default directory) or "
                              "node:///path/to/dir")

    @classmethod
    def from_url(cls, url: str, *, storage_options: Mapping[str, Mapping[str, Any]]
                 | None = None, **options: Any) -> NodeTier:
        """``node`` (the default directory) or ``node:///path/to/dir``."""
        directory = urlsplit(url).path if url.startswith("node:") else ""
        return cls(directory or None, **options)

    def get_into(self, name: str, into: memoryview | None) -> Frame | None:
        frame = super().get_into(name, into)  # get() comes here too
        if frame is not None:
            with contextlib.suppress(FileNotFoundError):
                _touch(self._path(name))  # recently used: evicted last
        return frame

    def put(self, name: str, frame: Frame, *, ttl: float | None = None,
            exclusive: bool = False) -> None:
        if not self.accepts(frame.nbytes):
            return
        try:
            previous = os.stat(self._path(name)).st_size
        except FileNotFoundError:
            previous = 0
        super().put(name, frame, ttl=ttl, exclusive=exclusive)
        with contextlib.suppress(FileNotFoundError):
            _touch(self._path(name))
        with self._locked() as book:
            usage = book.usage() + frame.nbytes - previous
            if usage > self.max_bytes:
                usage = self._evict(usage)
            book.set_usage(usage)

    def delete(self, name: str) -> bool:
        path = self._path(name)
        try:
            size = os.path.getsize(path)
        except FileNotFoundError:
            return False
        removed = super().delete(name)
        if removed:
            with self._locked() as book:
                book.set_usage(max(0, book.usage() - size))
        return removed

    def scan(self, prefix: str = "") -> Iterator[str]:
        for name in super().scan(prefix):
            if not name.rpartition("/")[2].startswith("."):
                yield name

    @property
    def current_bytes(self) -> int:
        with self._locked() as book:
            return book.usage()

    def describe(self) -> str:
        return f"node {self.root} ({self.current_bytes}/{self.max_bytes} bytes)"

    # -- budget -------------------------------------------------------------------------------
    def _evict(self, usage: int) -> int:
        """Delete least recently used frames until under budget; returns the new usage."""
        entries = []
        for directory, _, files in os.walk(self.root):
            for file in files:
                if file.startswith(".") or TMP_MARK in file:
                    continue
                full = os.path.join(directory, file)
                try:
                    st = os.stat(full)
                except FileNotFoundError:
                    continue
                entries.append((st.st_mtime_ns, st.st_size, full))
        usage = sum(size for _, size, _ in entries)  # recount: other processes write too
        entries.sort()
        for _, size, full in entries:
            if usage <= self.max_bytes:
                break
            try:
                os.unlink(full)
            except FileNotFoundError:
                continue
            usage -= size
            self.evictions += 1
            self.notify_removed(os.path.relpath(full, self.root), size, "evicted")
        return usage

    def _locked(self) -> _FileLock:
        return _FileLock(os.path.join(self.root, _LOCK))


def _touch(path: str) -> None:
    """Stamp ``path`` used now, to the nanosecond. The LRU order is the files' mtimes, and the
    kernel's own stamps are coarse (a clock tick) and, on recent kernels, finer only for files
    someone looked at: frames written in one tick would otherwise leave in any order."""
    now = time.time_ns()
    os.utime(path, ns=(now, now))


class _FileLock:
    """The node's bookkeeping across its processes: an flock on one small file that also holds
    the usage counter, read and rewritten in place under the lock (a temporary file and a
    rename per write cost more than the write itself)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> _FileLock:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0),
                          0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)

    def usage(self) -> int:
        """The bytes the node's frames take, as last counted (0 for a new node)."""
        try:
            return max(0, int(os.pread(self.fd, _COUNTER_BYTES, 0).strip() or 0))
        except ValueError:
            return 0  # unreadable: the next eviction recounts from the files themselves

    def set_usage(self, usage: int) -> None:
        os.pwrite(self.fd, b"%020d\n" % max(0, usage), 0)
