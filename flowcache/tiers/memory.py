"""The memory tier: a byte-budgeted LRU of frames inside this process.

Frames are kept as the parts they were made of, so a hit on a ``raw`` payload returns the very
``bytes`` object that was stored (no copy, no MAC re-check: nothing outside this process can
have touched it). As in cachetools, the container is an LRU over a size budget with a size
function (here the frame's byte count); eviction is the one policy, so there are no flags.
Evictions and expiries are reported to the tier's removal listeners (the ledger).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import ClassVar

from flowcache.frames import Frame
from flowcache.tiers.base import BaseTier


class MemoryTier(BaseTier):
    name = "memory"
    durable = False
    trusted = True
    process_local = True
    url_options: ClassVar = {"max_bytes": "size", "max_item_bytes": "size"}

    def __init__(self, max_bytes: int = 512 << 20, *, max_item_bytes: int | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.max_bytes = max_bytes
        self.max_item_bytes = max_item_bytes if max_item_bytes is not None else max_bytes
        self._clock = clock
        self._items: OrderedDict[str, tuple[Frame, float | None]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.evictions = 0

    @property
    def current_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def get(self, name: str) -> Frame | None:
        with self._lock:
            item = self._items.get(name)
            if item is None:
                return None
            frame, expires = item
            if expires is not None and self._clock() >= expires:
                self._remove(name, "expired", notify=True)
                return None
            self._items.move_to_end(name)
            return frame

    def put(self, name: str, frame: Frame, *, ttl: float | None = None,
            exclusive: bool = False) -> None:
        if not self.accepts(frame.nbytes):
            return
        expires = self._clock() + ttl if ttl is not None else None
        with self._lock:
            if name in self._items:
                if exclusive:
                    raise FileExistsError(name)
                self._remove(name, "replaced", notify=False)
            self._items[name] = (frame, expires)
            self._bytes += frame.nbytes
            while self._bytes > self.max_bytes and self._items:
                oldest = next(iter(self._items))
                self._remove(oldest, "evicted", notify=True)
                self.evictions += 1

    def exists(self, name: str) -> bool:
        return self.get(name) is not None

    def delete(self, name: str) -> bool:
        with self._lock:
            if name not in self._items:
                return False
            self._remove(name, "deleted", notify=False)
            return True

    def scan(self, prefix: str = "") -> Iterator[str]:
        with self._lock:
            names = [name for name in self._items if name.startswith(prefix)]
        yield from names

    def clear(self) -> None:
        """Drop every frame (reported to the removal listeners: no caller deleted them)."""
        with self._lock:
            for name in list(self._items):
                self._remove(name, "cleared", notify=True)

    def _remove(self, name: str, reason: str, *, notify: bool) -> None:
        frame, _ = self._items.pop(name)
        self._bytes -= frame.nbytes
        if notify:
            self.notify_removed(name, frame.nbytes, reason)

    def describe(self) -> str:
        return f"memory {self._bytes}/{self.max_bytes} bytes, {len(self._items)} frames"
