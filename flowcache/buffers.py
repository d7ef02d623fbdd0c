"""Large ``bytes`` built in place (optionally on transparent huge pages), filled in parallel.

Why this exists: a cache hit of hundreds of MB from shared memory or a local disk is bound by
page faults, not by copying. A fresh 200 MB ``bytes`` is faulted in 4 KiB at a time; on the
2-core VMs we measure on, reading 200 MB from ``/dev/shm`` into one takes 125 ms, and into
memory advised for huge pages 46 ms (a plain copy: 91 ms against 21 ms). The reader must still
get a ``bytes`` (the type that was stored), and Python code can neither ask for huge pages for
a ``bytes`` nor fill one before it is published.

:class:`BytesWriter` does what CPython's own readers do in C: allocate the object, fill it, then
hand it out. It allocates with ``bytes(size)`` (``calloc``: zeroed pages nobody has touched yet,
so a partial fill never exposes old memory), optionally advises the kernel to back it with huge
pages (``madvise(MADV_HUGEPAGE)``, Linux), and fills it through a writable view made with
:mod:`ctypes`. The view never leaves the writer and is released before :meth:`getvalue`
returns the object, so nothing can observe a ``bytes`` changing. It is used only for sizes of
at least :data:`MIN_SIZE` (CPython shares its 0- and 1-byte objects) and only on CPython, after a
self-test of the object layout at import; anywhere else it falls back to a ``bytearray`` copied
once into ``bytes``.

Huge-page advice is off unless asked for (``FLOWCACHE_HUGE_PAGES=true`` in the environment the
store is configured from, or :func:`use_huge_pages`). It doubles the speed of a large read in a
quiet process here, but it is bimodal on VMs that report freed memory to their host (as ours
do): a huge page handed back and faulted in again costs far more than 512 small ones, and in a
busy process (a Prefect flow) a 100 MB hit took 0.32 s with the advice against 0.10 s without.
On hosts whose THP ``defrag`` setting compacts memory synchronously it can stall as well.

What does help everywhere: a region handed to a filler is faulted in first with one
``madvise(MADV_POPULATE_WRITE)`` (Linux 5.14+; a no-op elsewhere), instead of one trap per 4 KiB
page while the kernel copies into it. Same pages, same zeroing, fewer exits to the kernel: a
200 MB re-read from ``/dev/shm`` in 4 MiB blocks took 0.11-0.14 s instead of 0.12-0.18 s here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import os
import stat
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

#: below this a plain read or join is as fast, and the object could be a shared singleton
MIN_SIZE = 1 << 20
_PAGE = mmap.PAGESIZE
_MADV_HUGEPAGE = getattr(mmap, "MADV_HUGEPAGE", None)
_MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)  # Linux 5.14+
#: regions smaller than this fault in page by page (the call would cost more than it saves)
PREFAULT_FROM = 256 << 10
_huge_pages = False
_prefault = True  # cleared when the kernel does not know MADV_POPULATE_WRITE


def use_huge_pages(enabled: bool) -> None:
    """Whether writers advise the kernel to back their buffers with huge pages (this process)."""
    global _huge_pages
    _huge_pages = bool(enabled)


def _data_offset() -> int | None:
    """Where a ``bytes`` object's data starts, checked on a scratch object; None if unsure."""
    if sys.implementation.name != "cpython":
        return None
    offset = bytes.__basicsize__ - 1  # ob_sval: the trailing NUL is counted in the basic size
    probe = bytes(64)  # a scratch object; reading it back shows the offset is its data
    ctypes.memmove(id(probe) + offset, b"flowcache", 9)
    return offset if probe[:9] == b"flowcache" and probe[9:] == bytes(55) else None


def _madvise() -> Callable[[int, int, int], int] | None:
    if _MADV_HUGEPAGE is None or not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    except OSError:
        return None
    fn = libc.madvise
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_OFFSET = _data_offset()
_MADVISE_FN = _madvise() if _OFFSET is not None else None


class BytesWriter:
    """One ``bytes`` of a size known up front, written in order like a ``BytesIO``, or by
    regions (several threads may fill disjoint regions at once).

    ``write`` and ``fill_from`` append; :meth:`getvalue` returns the object itself when it was
    written to the end (no copy), or a copy of what was written so far. Views handed out by
    :meth:`region` must not outlive the filling: whoever takes one writes and drops it.
    """

    __slots__ = ("_result", "_view", "pos", "size")

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError("size must be non-negative")
        self.size = size
        self.pos = 0
        if size >= MIN_SIZE and _OFFSET is not None:
            self._result: bytes | bytearray = bytes(size)
            address = id(self._result) + _OFFSET
            if _huge_pages and _MADVISE_FN is not None:
                start = -(-address // _PAGE) * _PAGE
                end = (address + size) // _PAGE * _PAGE
                if end > start:
                    _MADVISE_FN(start, end - start, _MADV_HUGEPAGE)  # advice: failure is fine
            self._view = memoryview((ctypes.c_char * size).from_address(address)).cast("B")
        else:
            self._result = bytearray(size)
            self._view = memoryview(self._result)

    @property
    def in_place(self) -> bool:
        """Whether the result is built in its final ``bytes`` (no copy at the end)."""
        return type(self._result) is bytes

    def tell(self) -> int:
        return self.pos

    def region(self, start: int, end: int) -> memoryview:
        """A writable view of bytes ``[start, end)``, for a filler that writes them itself.

        A large region of a fresh result is faulted in first, in one call (see the module's
        docstring): the filler is about to write all of it."""
        if not 0 <= start <= end <= self.size:
            raise ValueError(f"region [{start}, {end}) is outside [0, {self.size})")
        if end - start >= PREFAULT_FROM and type(self._result) is bytes:
            _populate(id(self._result) + _OFFSET + start, end - start)
        return self._view[start:end]

    def seek(self, pos: int) -> None:
        """Mark the bytes before ``pos`` as written (after regions were filled)."""
        if not 0 <= pos <= self.size:
            raise ValueError(f"position {pos} is outside [0, {self.size}]")
        self.pos = pos

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append ``data``; raises ``ValueError`` past the size given up front."""
        source = memoryview(data).cast("B")
        end = self.pos + source.nbytes
        if end > self.size:
            raise ValueError(f"writing {source.nbytes} bytes at {self.pos} overflows "
                             f"{self.size}")
        self._view[self.pos:end] = source
        self.pos = end
        return source.nbytes

    def fill_from(self, handle: BinaryIO) -> int:
        """Read from ``handle`` until full or end of file; returns the bytes read."""
        got = readinto_fully(handle, self._view[self.pos:])
        self.pos += got
        return got

    def getvalue(self) -> bytes:
        """The bytes written; the writer is finished afterwards."""
        view, result = self._view, self._result
        whole = self.pos == self.size and type(result) is bytes
        value = result if whole else bytes(view[:self.pos])
        view.release()  # nothing can write into the object once it is handed out
        self._result = b""
        return value


def _populate(address: int, size: int) -> None:
    """Fault in the whole pages of ``[address, address + size)`` writable, in one call (the
    partial pages at either end fault as usual). Contents are unchanged: it is advice that only
    does early what the first write would do."""
    global _prefault
    if not _prefault or _MADVISE_FN is None:
        return
    start = -(-address // _PAGE) * _PAGE
    end = (address + size) // _PAGE * _PAGE
    failed = end > start and _MADVISE_FN(start, end - start, _MADV_POPULATE_WRITE) != 0
    if failed and ctypes.get_errno() == errno.EINVAL:  # an older kernel: stop asking
        _prefault = False


def readinto_fully(handle: BinaryIO, view: memoryview) -> int:
    """Fill ``view`` from ``handle``'s position; returns the bytes read (fewer at end of file)
    and leaves ``handle`` just after them.

    A large read from a regular file is split over a few threads (``os.preadv`` releases the
    GIL): it is bound by page faults on the destination more than by the copy, and faults in
    different threads proceed in parallel (200 MB from ``/dev/shm``: 142 ms in one thread, 72 ms
    in two, here).
    """
    total = view.nbytes
    fd = _regular_fd(handle) if total >= PARALLEL_FROM else None
    pool = _read_pool() if fd is not None else None
    if pool is None:
        got = 0
        while got < total:
            n = handle.readinto(view[got:])
            if not n:
                break
            got += n
        return got
    offset = handle.tell()
    spans = [(lo, min(lo + _CHUNK, total)) for lo in range(0, total, _CHUNK)]

    def pread(span: tuple[int, int]) -> int:
        lo, hi = span
        done = lo
        while done < hi:
            n = os.preadv(fd, [view[done:hi]], offset + done)
            if n <= 0:
                break
            done += n
        return done - lo

    got = 0
    for (lo, hi), n in zip(spans, pool.map(pread, spans), strict=True):
        got += n
        if n < hi - lo:  # end of file inside this span: what follows was not read
            break
    handle.seek(offset + got)
    return got


#: reads at least this large are split over threads
PARALLEL_FROM = 16 << 20
_CHUNK = 8 << 20
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _regular_fd(handle: BinaryIO) -> int | None:
    if not hasattr(os, "preadv"):
        return None
    try:
        fd = handle.fileno()
        return fd if handle.seekable() and stat.S_ISREG(os.fstat(fd).st_mode) else None
    except (AttributeError, OSError, ValueError):
        return None


def _read_pool() -> ThreadPoolExecutor | None:
    """Threads for large reads (none on a single core); they only ever run ``preadv``."""
    global _pool
    workers = min(4, os.cpu_count() or 1)
    if workers < 2:
        return None
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(workers, thread_name_prefix="flowcache-read")
        return _pool
