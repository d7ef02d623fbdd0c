"""TieredStore: read-through with promotion, durable-first writes, single-flight production.

* **Reads** try tiers fastest first; a verified hit is promoted into the faster tiers. A corrupt
  or foreign frame in a hot tier is dropped there and the next tier is tried; in the durable tier
  it raises :class:`CorruptEntry` (``get_or_compute`` then recomputes and overwrites it).
* **Writes** go to the durable tier first and return only once it confirmed them; hot tiers are
  filled afterwards, best effort. A failed durable write raises :class:`DurableWriteError` and
  leaves no copy in any hot tier.
* **Single flight**: ``get_or_compute`` holds a per-key lock (threads, then processes/hosts)
  while producing, so concurrent misses of one key run the producer once.
* **Degrade, don't fail**: a hot tier that cannot be reached is skipped, with one warning per
  outage, and retried with exponential backoff; the durable tier alone keeps the store correct.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from flowcache.access import Identity, check_namespace
from flowcache.breaker import TierBreaker
from flowcache.entry import HEADER_PROBE_BYTES, Entry, Frame, Header, decode, encode, peek_header
from flowcache.errors import CorruptEntry, DurableWriteError, ForeignEntry, TierUnavailable
from flowcache.events import Listeners, StoreCounters, StoreListener
from flowcache.lifetimes import KEEP, Lifetime
from flowcache.locks import LayeredLocks, Locks
from flowcache.tiers.base import Tier

log = logging.getLogger("flowcache.store")
T = TypeVar("T")
_MISSING = object()


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What ``get_or_compute`` did: the value, and whether it came from the cache."""

    value: T
    hit: bool
    header: Header
    tier: str | None  # the tier that served a hit


class TieredStore:
    def __init__(self, tiers: Sequence[Tier], *, identity: Identity,
                 locks: Locks | None = None, backoff_base: float = 0.5,
                 backoff_cap: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        if not tiers or not tiers[-1].durable:
            raise ValueError("the last tier must be durable (an object tier)")
        if any(tier.durable for tier in tiers[:-1]):
            raise ValueError("only the last tier may be durable")
        self.tiers = list(tiers)
        self.durable = self.tiers[-1]
        self.hot = self.tiers[:-1]
        self.identity = identity
        self.locks = locks if isinstance(locks, LayeredLocks) else LayeredLocks(locks)
        self.counters = StoreCounters()
        self.config: Any = None  # the StoreConfig this store was built from, if any
        self.listeners = Listeners()
        self._guards = {id(t): TierBreaker(t, backoff_base, backoff_cap, clock) for t in self.hot}
        self._warned: set[tuple[str, type]] = set()

    # -- naming -------------------------------------------------------------------------------
    @property
    def namespace(self) -> str:
        return self.identity.namespace

    def name_for(self, key: str) -> str:
        """Where ``key`` lives in every tier: ``<namespace>/<2 hex>/<key>``."""
        return f"{self.namespace}/{key[:2]}/{key}"

    @staticmethod
    def key_of(name: str) -> str:
        return name.rpartition("/")[2]

    def add_listener(self, listener: StoreListener) -> None:
        self.listeners.add(listener)

    # -- reading ------------------------------------------------------------------------------
    def get_entry(self, key: str, *, into: memoryview | None = None) -> Entry | None:
        """The verified entry for ``key`` (promoted into faster tiers), or None.

        ``into``: a writable buffer of the payload's expected size. Tiers on a local disk or
        in shared memory read the payload straight into it (the entry's payload is then a
        read-only view of ``into``); the others return theirs as usual, for the caller to
        copy. Either way nothing is unpickled: a large raw read fills its final buffer once.
        """
        entry, _ = self._read(key, into)
        return entry

    def get(self, key: str, default: Any = _MISSING) -> Any:
        """The cached value of ``key``; ``KeyError`` (or ``default``) on a miss."""
        entry = self.get_entry(key)
        if entry is None:
            if default is _MISSING:
                raise KeyError(key)
            return default
        return entry.load()

    def exists(self, key: str) -> bool:
        """Whether the durable tier holds ``key`` (a metadata request, no payload read)."""
        return self.durable.exists(self.name_for(key))

    def _read(self, key: str,
              into: memoryview | None = None) -> tuple[Entry | None, str | None]:
        name = self.name_for(key)
        for index, tier in enumerate(self.tiers):
            frame = self._tier_get(tier, name, into)
            if frame is None:
                self.counters.add(tier.name, misses=1)
                continue
            try:
                entry = decode(frame, identity=self.identity, key=key, verify=not tier.trusted)
            except CorruptEntry as exc:
                self.counters.add(tier.name, corrupt=1)
                if tier.durable:
                    raise
                self._drop_hot(tier, name, frame.nbytes, exc)
                continue
            if entry.header.expired():
                self.counters.add(tier.name, misses=1)
                self._remove_from(tier, name, frame.nbytes, "expired")
                continue
            self.counters.add(tier.name, hits=1, bytes_read=frame.nbytes)
            if index > 0:
                entry = self._promote(entry, name, index, keep_view=into is not None)
            self.listeners.emit("on_hit", key, tier.name, entry.header)
            return entry, tier.name
        self.listeners.emit("on_miss", key)
        return None, None

    def _tier_get(self, tier: Tier, name: str, into: memoryview | None = None) -> Frame | None:
        read = tier.get if into is None or not hasattr(tier, "get_into") else (
            lambda name: tier.get_into(name, into))
        if tier.durable:
            return read(name)
        guard = self._guards[id(tier)]
        if not guard.available():
            self.counters.add(tier.name, skipped=1)
            return None
        try:
            frame = read(name)
        except TierUnavailable as exc:
            self.counters.add(tier.name, errors=1)
            guard.failed(exc)
            return None
        except Exception as exc:
            self.counters.add(tier.name, errors=1)
            self._warn_once(tier, exc, "read")
            return None
        guard.succeeded()
        return frame

    def _drop_hot(self, tier: Tier, name: str, nbytes: int, exc: CorruptEntry) -> None:
        kind = "foreign" if isinstance(exc, ForeignEntry) else "corrupt"
        log.warning("dropping a %s frame from %s: %s", kind, tier.describe(), exc)
        self._remove_from(tier, name, nbytes, kind)

    def _promote(self, entry: Entry, name: str, found_at: int, *,
                 keep_view: bool = False) -> Entry:
        # a raw payload becomes its own bytes, so later raw reads are zero-copy; a payload read
        # into the caller's buffer (keep_view) is copied for the hot tiers, which keep theirs
        hot = entry.compact() if keep_view or entry.header.serializer == "raw" else entry
        ttl = _remaining(hot.header)
        for tier in self.tiers[:found_at]:
            self._hot_put(tier, name, hot.frame, hot.header, ttl)
        return entry if keep_view else hot

    # -- writing ------------------------------------------------------------------------------
    def put(self, key: str, value: Any, *, lifetime: Lifetime = KEEP,
            meta: dict[str, Any] | None = None, serializer: str | None = None,
            overwrite: bool = False) -> Entry:
        """Store ``value`` durably (confirmed), then in the hot tiers.

        Raises ``UnserializableResult`` before anything is written, and ``DurableWriteError``
        if the durable tier does not confirm the write (no hot tier then holds the key).
        """
        frame = encode(value, key=key, identity=self.identity, lifetime=lifetime, meta=meta,
                       serializer=serializer)
        return self.put_frame(key, frame, overwrite=overwrite)

    def put_frame(self, key: str, frame: Frame, *, overwrite: bool = False) -> Entry:
        entry = decode(frame, identity=self.identity, key=key, verify=False)
        name = self.name_for(key)
        ttl = _remaining(entry.header)
        entry = self._durable_put(key, name, entry, ttl, overwrite)
        for tier in self.hot:
            self._hot_put(tier, name, entry.frame, entry.header, ttl)
        return entry

    def _durable_put(self, key: str, name: str, entry: Entry, ttl: float | None,
                     overwrite: bool) -> Entry:
        try:
            self.durable.put(name, entry.frame, ttl=ttl, exclusive=not overwrite)
        except FileExistsError:
            existing = self._existing_durable(key, name)
            if existing is not None:
                return existing  # a concurrent producer stored it first: theirs stands
            return self._durable_put(key, name, entry, ttl, overwrite=True)
        except Exception as exc:
            self.counters.add(self.durable.name, errors=1)
            self._forget_hot(name)
            if isinstance(exc, DurableWriteError):
                raise
            raise DurableWriteError(key, f"{type(exc).__name__}: {exc}") from exc
        self.counters.add(self.durable.name, writes=1, bytes_written=entry.frame.nbytes)
        self.listeners.emit("on_write", name, self.durable.name, entry.header, entry.frame.nbytes)
        return entry

    def _existing_durable(self, key: str, name: str) -> Entry | None:
        frame = self.durable.get(name)
        if frame is None:
            return None
        try:
            existing = decode(frame, identity=self.identity, key=key)
        except CorruptEntry as exc:
            log.warning("replacing an invalid durable frame for %s: %s", key, exc)
            return None
        return None if existing.header.expired() else existing.compact()

    def _hot_put(self, tier: Tier, name: str, frame: Frame, header: Header,
                 ttl: float | None) -> None:
        if not tier.accepts(frame.nbytes):
            return
        guard = self._guards[id(tier)]
        if not guard.available():
            self.counters.add(tier.name, skipped=1)
            return
        try:
            tier.put(name, frame, ttl=ttl)
        except TierUnavailable as exc:
            self.counters.add(tier.name, errors=1)
            guard.failed(exc)
            return
        except Exception as exc:  # full (OOM), no permission...: the hot copy is optional
            self.counters.add(tier.name, errors=1)
            self._warn_once(tier, exc, "write")
            return
        guard.succeeded()
        self.counters.add(tier.name, writes=1, bytes_written=frame.nbytes)
        self.listeners.emit("on_write", name, tier.name, header, frame.nbytes)

    # -- producing ----------------------------------------------------------------------------
    def get_or_compute(self, key: str, compute: Callable[[], T], *,
                       lifetime: Lifetime = KEEP, meta: dict[str, Any] | None = None,
                       serializer: str | None = None, refresh: bool = False,
                       lock_timeout: float | None = None,
                       before_write: Callable[[], None] | None = None) -> Outcome[T]:
        """Return the cached value of ``key`` or compute, store (confirmed) and return it.

        Concurrent callers with the same key, in any thread or process sharing the lock
        backend, run ``compute`` once; the others wait and read its result.
        ``before_write`` runs after computing and before storing (lifecycle markers).
        """
        if not refresh:
            hit = self._read_for_compute(key)
            if hit is not None:
                return hit
        with self.locks.hold(self.name_for(key), lock_timeout):
            if not refresh:
                hit = self._read_for_compute(key)
                if hit is not None:
                    self.counters.bump("waited")
                    return hit
            started = time.perf_counter()
            value = compute()
            elapsed = time.perf_counter() - started
            full_meta = {"compute_seconds": round(elapsed, 6), **(meta or {})}
            if before_write is not None:
                before_write()
            entry = self.put(key, value, lifetime=lifetime, meta=full_meta,
                             serializer=serializer, overwrite=refresh)
            self.counters.bump("computed")
            return Outcome(value, False, entry.header, None)

    def _read_for_compute(self, key: str) -> Outcome[Any] | None:
        try:
            entry, tier = self._read(key)
        except CorruptEntry as exc:
            log.error("durable copy of %s is invalid (%s); recomputing and replacing it",
                      key, exc)
            return None
        if entry is None:
            return None
        return Outcome(entry.load(), True, entry.header, tier)

    # -- removing and listing -----------------------------------------------------------------
    def delete(self, key: str, *, reason: str = "deleted") -> bool:
        """Remove ``key`` from every tier, the durable one first."""
        return self.delete_name(self.name_for(key), reason=reason)

    def delete_name(self, name: str, *, reason: str = "deleted") -> bool:
        """Remove ``name`` (in this user's namespace: another's is ``ForeignNamespace``)."""
        check_namespace(name, self.identity)
        size = self._durable_size(name) if self.listeners else None
        removed = self.durable.delete(name)
        if removed:
            self.counters.add(self.durable.name, deletes=1)
            self.listeners.emit("on_remove", name, self.durable.name, size, reason)
        self._forget_hot(name, reason)
        return removed

    def _durable_size(self, name: str) -> int | None:
        info = getattr(self.durable, "info", None)
        if info is None:
            return None
        details = info(name)
        return int(details["size"]) if details and details.get("size") is not None else None

    def _forget_hot(self, name: str, reason: str = "deleted") -> None:
        for tier in self.hot:
            self._remove_from(tier, name, None, reason)

    def _remove_from(self, tier: Tier, name: str, nbytes: int | None, reason: str) -> None:
        try:
            removed = tier.delete(name)
        except Exception as exc:
            if tier.durable:
                raise
            self.counters.add(tier.name, errors=1)
            if isinstance(exc, TierUnavailable):
                self._guards[id(tier)].failed(exc)
            else:
                self._warn_once(tier, exc, "delete")
            return
        if removed:
            self.counters.add(tier.name, deletes=1)
            self.listeners.emit("on_remove", name, tier.name, nbytes, reason)

    def scan(self, prefix: str = "") -> Iterator[str]:
        """Names of this user's entries in the durable tier (not the lifecycle records)."""
        for name in self.durable.scan(f"{self.namespace}/{prefix}"):
            parts = name.split("/")
            if len(parts) == 3 and parts[2][:2] == parts[1]:
                yield name

    def headers(self, prefix: str = "") -> Iterator[tuple[str, Header | None]]:
        """(name, unverified header) of each durable entry; None for unreadable ones.

        For listings and sweeps only: nothing is deserialized from these headers.
        """
        for name in self.scan(prefix):
            head = self.durable.head(name, HEADER_PROBE_BYTES)
            if head is None:
                continue  # deleted since the listing
            try:
                yield name, peek_header(head)
            except CorruptEntry:
                yield name, None

    def close(self) -> None:
        for tier in self.tiers:
            try:
                tier.close()
            except Exception as exc:
                log.debug("closing %s: %s", tier.describe(), exc)

    def describe(self) -> str:
        return " -> ".join(tier.describe() for tier in self.tiers)

    def _warn_once(self, tier: Tier, exc: BaseException, action: str) -> None:
        marker = (tier.name, type(exc))
        if marker not in self._warned:
            self._warned.add(marker)
            log.warning("%s failed on %s (%s: %s); the durable tier still serves",
                        tier.describe(), action, type(exc).__name__, exc)

    def __repr__(self) -> str:
        return f"<TieredStore user={self.identity.user!r} {self.describe()}>"

    def __reduce__(self) -> tuple:
        """Stores built from a config travel (to Dask workers) as that config."""
        config = getattr(self, "config", None)
        if config is None:
            raise TypeError("only a store built with StoreConfig.build() can be sent to another "
                            "process; build it from a StoreConfig")
        return (type(config).build, (config,))


def _remaining(header: Header) -> float | None:
    expiry = header.expires_at
    if expiry is None:
        return None
    return max(0.001, expiry - time.time())
