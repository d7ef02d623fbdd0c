"""What the store reports: per-tier counters, and listener hooks for whoever keeps accounts.

The ledger (billing) subscribes to a few events instead of the store knowing about it, and so
may anything else that accounts (metrics, engine glue). Like distributed's plugins,
:class:`StoreListener` hooks do nothing by default; a listener overrides those it needs. A
listener that raises is logged and ignored: accounting must never fail a task. Removals cover
both what the store deleted and what a tier dropped by itself (an eviction, an expiry).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any

from flowcache.frames import Header

log = logging.getLogger("flowcache.listeners")


class StoreListener:
    def on_write(self, name: str, tier: str, header: Header, nbytes: int) -> None:
        """A frame was stored (durably confirmed, for the durable tier)."""

    def on_remove(self, name: str, tier: str, nbytes: int | None, reason: str) -> None:
        """A frame left a tier: ``deleted``, ``expired``, ``corrupt``, ``purged``..."""

    def on_hit(self, key: str, tier: str, header: Header) -> None:
        """A read was served from ``tier``."""

    def on_miss(self, key: str) -> None:
        """No tier had ``key``."""

    def on_confirm(self, name: str, tier: str, nbytes: int, seconds: float) -> None:
        """The durable tier confirmed a write after ``seconds`` (its latency, for metrics)."""


@dataclass
class TierCounters:
    hits: int = 0
    misses: int = 0
    writes: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    deletes: int = 0
    corrupt: int = 0
    errors: int = 0
    skipped: int = 0  # operations not attempted because the tier was backing off

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class StoreCounters:
    tiers: dict[str, TierCounters] = field(default_factory=dict)
    computed: int = 0
    waited: int = 0  # callers that found the result made by a concurrent producer
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def tier(self, name: str) -> TierCounters:
        counters = self.tiers.get(name)
        if counters is None:
            with self._lock:
                counters = self.tiers.setdefault(name, TierCounters())
        return counters

    def add(self, tier: str, **increments: int) -> None:
        counters = self.tier(tier)
        with self._lock:
            for name, amount in increments.items():
                setattr(counters, name, getattr(counters, name) + amount)

    def bump(self, counter: str) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + 1)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"tiers": {name: c.as_dict() for name, c in self.tiers.items()},
                    "computed": self.computed, "waited": self.waited}


class Listeners:
    """Fans events out to listeners, isolating the store from their failures."""

    def __init__(self) -> None:
        self._listeners: list[StoreListener] = []

    def add(self, listener: StoreListener) -> None:
        if listener not in self._listeners:
            self._listeners.append(listener)

    def remove(self, listener: StoreListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def __bool__(self) -> bool:
        return bool(self._listeners)

    def __iter__(self) -> Iterator[StoreListener]:
        return iter(list(self._listeners))

    def emit(self, event: str, *args: Any) -> None:
        for listener in self._listeners:
            try:
                getattr(listener, event)(*args)
            except Exception:
                log.exception("store listener %r failed on %s", listener, event)
