"""Large ``bytes`` built in place, on transparent huge pages where the platform has them.

Why this exists: a cache hit of hundreds of MB from shared memory or a local disk is bound by
page faults, not by copying. A fresh 200 MB ``bytes`` is faulted in 4 KiB at a time; on the
2-core VMs we measure on, reading 200 MB from ``/dev/shm`` into one takes 125 ms, and into
memory advised for huge pages 46 ms (a plain copy: 91 ms against 21 ms). The reader must still
get a ``bytes`` (the type that was stored), and Python code can neither ask for huge pages for
a ``bytes`` nor fill one before it is published.

:class:`BytesWriter` does what CPython's own readers do in C: allocate the object, fill it, then
hand it out. It allocates with ``bytes(size)`` (``calloc``: zeroed pages nobody has touched yet,
so a partial fill never exposes old memory), advises the kernel to back it with huge pages
(``madvise(MADV_HUGEPAGE)``, Linux), and fills it through a writable view made with
:mod:`ctypes`. The view never leaves the writer and is released before :meth:`getvalue`
returns the object, so nothing can observe a ``bytes`` changing. It is used only for sizes of
at least :data:`MIN_SIZE` (CPython shares its 0- and 1-byte objects) and only on CPython, after a
self-test of the object layout at import; anywhere else it falls back to a ``bytearray`` copied
once into ``bytes``.

Huge-page advice can be turned off per process (``FLOWCACHE_HUGE_PAGES=0`` in the environment
the store is configured from, or :func:`use_huge_pages`): on a host whose THP ``defrag`` setting
makes faults compact memory synchronously, a fragmented machine may prefer small pages.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import sys
from collections.abc import Callable
from typing import BinaryIO

#: below this a plain read or join is as fast, and the object could be a shared singleton
MIN_SIZE = 1 << 20
_PAGE = mmap.PAGESIZE
_MADV_HUGEPAGE = getattr(mmap, "MADV_HUGEPAGE", None)
_huge_pages = True


def use_huge_pages(enabled: bool) -> None:
    """Whether writers advise the kernel to back their buffers with huge pages (this process)."""
    global _huge_pages
    _huge_pages = bool(enabled)


def _data_offset() -> int | None:
    """Where a ``bytes`` object's data starts, checked on a scratch object; None if unsure."""
    if sys.implementation.name != "cpython":
        return None
    offset = bytes.__basicsize__ - 1  # ob_sval: the trailing NUL is counted in the basic size
    probe = bytes(64)  # the write lands inside its 64 data bytes whatever the answer
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
        """A writable view of bytes ``[start, end)``, for a filler that writes them itself."""
        if not 0 <= start <= end <= self.size:
            raise ValueError(f"region [{start}, {end}) is outside [0, {self.size})")
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
        start = self.pos
        while self.pos < self.size:
            got = handle.readinto(self._view[self.pos:])
            if not got:
                break
            self.pos += got
        return self.pos - start

    def getvalue(self) -> bytes:
        """The bytes written; the writer is finished afterwards."""
        view, result = self._view, self._result
        if self.pos == self.size and type(result) is bytes:
            view.release()
            self._result = b""
            return result
        value = bytes(view[:self.pos])
        view.release()
        self._result = b""
        return value
