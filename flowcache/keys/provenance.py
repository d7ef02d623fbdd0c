"""Provenance: which content key produced a value, so downstream keys chain instead of
re-hashing large upstream results (the ``cache()`` option records each result it returns).

Where the producing key is known without the value (a Dask graph's dependency), the input is
an :class:`Upstream` and is hashed exactly as a remembered value would be: by that key.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Upstream:
    """The result of another keyed call, known by its content key (chain hashing)."""

    key: str


class Provenance:
    """Remembers which content key produced a value, so downstream keys chain instead of re-hashing.

    Only large values of immutable types are remembered: a mutable value could be changed after
    it was produced and its key would then lie. Entries hold a strong reference (so an ``id()``
    is never reused while remembered) and the registry is bounded by ``max_entries``.
    """

    IMMUTABLE = (bytes, str, tuple, frozenset)

    def __init__(self, *, min_bytes: int = 1 << 16, max_entries: int = 1024) -> None:
        self.min_bytes = min_bytes
        self.max_entries = max_entries
        self._entries: OrderedDict[int, tuple[Any, str]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, value: Any, key: str) -> None:
        if not self._eligible(value):
            return
        with self._lock:
            self._entries[id(value)] = (value, key)
            self._entries.move_to_end(id(value))
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def lookup(self, value: Any) -> str | None:
        entry = self._entries.get(id(value))
        if entry is not None and entry[0] is value:
            return entry[1]
        return None

    def forget_all(self) -> None:
        with self._lock:
            self._entries.clear()

    def _eligible(self, value: Any) -> bool:
        if type(value) not in self.IMMUTABLE:
            return False
        if isinstance(value, (bytes, str)):
            return len(value) >= self.min_bytes
        return sys.getsizeof(value) >= self.min_bytes


PROVENANCE = Provenance()
