"""Response caching: time-bucketed keys with a TTL, so many tasks share one API call.

A rate-limited API must not be called by every task of a big flow. :class:`CachedProvider` widens
each request to whole buckets (default 15 minutes: a task asking at 10:07 and one asking at 10:11
both ask for the 10:00 bucket), stores the answer under a key made of the provider's identity,
the method, the region and the bucket range, and trims what it returns to the interval asked for.

Where the bytes live is a :class:`ResponseCache`: an in-process dict by default, or the flowcache
store through :class:`StoreResponseCache` so that every worker of a cluster shares the answers.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import blake3
import numpy as np

from flowcache.carbon.providers.base import IntensityProvider
from flowcache.carbon.series import IntensitySeries, Signal
from flowcache.carbon.timestamps import TimeLike, to_epoch
from flowcache.errors import MalformedResponse
from flowcache.lifetimes import TTL

log = logging.getLogger("flowcache.carbon.cache")


@runtime_checkable
class ResponseCache(Protocol):
    """Bytes by key with a time to live; misses and expired entries read as None."""

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, data: bytes, ttl: float) -> None: ...


class MemoryResponseCache:
    """The in-process default: a dict with expiry times, bounded to ``max_items``."""

    def __init__(self, max_items: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_items = max_items
        self.clock = clock
        self._items: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if self.clock() >= item[1]:
                del self._items[key]
                return None
            return item[0]

    def put(self, key: str, data: bytes, ttl: float) -> None:
        with self._lock:
            if len(self._items) >= self.max_items:
                now = self.clock()
                for stale in [k for k, (_, exp) in self._items.items() if exp <= now]:
                    del self._items[stale]
                while len(self._items) >= self.max_items:
                    del self._items[next(iter(self._items))]  # oldest insertion first
            self._items[key] = (bytes(data), self.clock() + ttl)

    def __len__(self) -> int:
        return len(self._items)


class StoreResponseCache:
    """A :class:`ResponseCache` over a flowcache ``TieredStore`` (shared by all workers).

    Keys become 64-hex blake3 digests (the store's key format); entries get a ``TTL`` lifetime, so
    the store's own expiry and GC remove them. A store error on read is a miss and on write is
    logged: the cache must never make a provider call fail.
    """

    def __init__(self, store: Any, *, namespace: str = "flowcache.carbon/v1") -> None:
        self.store = store
        self.namespace = namespace

    def key(self, key: str) -> str:
        return blake3.blake3(f"{self.namespace}\0{key}".encode()).hexdigest()

    def get(self, key: str) -> bytes | None:
        try:
            value = self.store.get(self.key(key), default=None)
        except Exception as exc:  # the cache is an optimisation
            log.warning("carbon response cache read failed (%s); asking the provider", exc)
            return None
        return bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else None

    def put(self, key: str, data: bytes, ttl: float) -> None:
        try:
            self.store.put(self.key(key), bytes(data), lifetime=TTL(max(1.0, ttl)),
                           overwrite=True)
        except TypeError:  # a store without ``overwrite``
            self.store.put(self.key(key), bytes(data), lifetime=TTL(max(1.0, ttl)))
        except Exception as exc:
            log.warning("carbon response cache write failed (%s); carrying on", exc)


class CachedProvider:
    """Wraps a provider; answers repeated (bucketed) requests from a :class:`ResponseCache`."""

    def __init__(self, inner: IntensityProvider, cache: ResponseCache | None = None, *,
                 bucket: float = 900.0, forecast_ttl: float = 900.0,
                 recent_history_ttl: float = 900.0, old_history_ttl: float = 7 * 86400.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.inner = inner
        self.cache = cache if cache is not None else MemoryResponseCache()
        self.bucket = bucket
        self.forecast_ttl = forecast_ttl
        self.recent_history_ttl = recent_history_ttl
        self.old_history_ttl = old_history_ttl
        self.clock = clock
        self.hits = 0
        self.misses = 0

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def signal(self) -> Signal:
        return self.inner.signal

    def identity(self) -> str:
        ident = getattr(self.inner, "cache_identity", None)
        return ident() if callable(ident) else f"{type(self.inner).__name__}:{self.inner.name}"

    def history(self, region: str, start: TimeLike, end: TimeLike) -> IntensitySeries:
        a, b = to_epoch(start), to_epoch(end)
        # history that ended long ago never changes: keep it; recent history is still revised
        ttl = self.old_history_ttl if b < self.clock() - 86400 else self.recent_history_ttl
        return self._cached("history", region, a, b, ttl)

    def forecast(self, region: str, start: TimeLike, end: TimeLike) -> IntensitySeries:
        return self._cached("forecast", region, to_epoch(start), to_epoch(end),
                            self.forecast_ttl)

    def _cached(self, method: str, region: str, start: float, end: float, ttl: float
                ) -> IntensitySeries:
        lo = float(np.floor(start / self.bucket) * self.bucket)
        hi = float(np.ceil(end / self.bucket) * self.bucket)
        key = json.dumps([self.identity(), method, region, lo, hi])
        data = self.cache.get(key)
        if data is not None:
            try:
                series = IntensitySeries.from_bytes(data)
                self.hits += 1
                return series.slice(start, end) if len(series) else series
            except MalformedResponse:
                log.warning("ignoring an unreadable cached %s for %s", method, region)
        self.misses += 1
        series = getattr(self.inner, method)(region, lo, hi)
        self.cache.put(key, series.to_bytes(), ttl)
        return series.slice(start, end) if len(series) else series
