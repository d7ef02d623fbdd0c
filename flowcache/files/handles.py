"""Read handles of ``flowcache::`` files: ranges served from the block cache, a block kept.

A reader such as pyarrow asks for many small ranges (a footer, then column chunks); asking the
tiers once per ``read`` would verify the same block over and over, so a handle keeps the block
it is in until it moves to another.
"""

from __future__ import annotations

from typing import Protocol

from fsspec.spec import AbstractBufferedFile

from flowcache.errors import RemoteChanged
from flowcache.files.blocks import BlockReader
from flowcache.files.versions import Version


class Rechecking(Protocol):
    """What a handle needs of its filesystem beyond fsspec's: a fresh version check (the
    ``flowcache::`` filesystem; a protocol so this module need not import it back)."""

    def recheck(self, path: str) -> None: ...


class CachedFile(AbstractBufferedFile):
    """A read-only file whose ranges come from the block cache.

    Reads inside one block keep that block (the tiers are asked once per block, not once per
    ``read``); larger reads go to the block reader whole.
    """

    def __init__(self, fs: Rechecking, path: str, reader: BlockReader) -> None:
        self.reader = reader
        self._held: tuple[int, bytes | memoryview] | None = None
        super().__init__(fs, path, mode="rb", block_size=reader.policy.block_size,
                         cache_type="none", size=reader.version.size)

    @property
    def version(self) -> Version:
        return self.reader.version

    def _fetch_range(self, start: int, end: int) -> bytes:
        bs = self.reader.policy.block_size
        end = min(end, self.size)
        if start >= end:
            return b""
        first, last = start // bs, (end - 1) // bs
        try:
            if last - first > 1:
                return self.reader.read(start, end)
            if first == last:
                view = memoryview(self._block(first))
                return bytes(view[start - first * bs:end - first * bs])
            head = memoryview(self._block(first))[start - first * bs:]
            head = bytes(head)  # the next block replaces the held one
            return head + memoryview(self._block(last))[:end - last * bs]
        except RemoteChanged:
            self.fs.recheck(self.path)
            raise

    def _block(self, index: int) -> bytes | memoryview:
        """Block ``index``, kept until the reader moves to another block."""
        if self._held is None or self._held[0] != index:
            self._held = None  # let the next block reuse this one's memory
            self._held = (index, self.reader.block(index))
        return self._held[1]

    def close(self) -> None:
        self._held = None
        super().close()
