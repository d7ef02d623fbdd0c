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

import functools
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from flowcache.breaker import TierBreaker
from flowcache.errors import (
    ConfigError,
    CorruptEntry,
    DurableWriteError,
    ForeignEntry,
)
from flowcache.frames import Entry, Frame, Header, decode, encode_entry
from flowcache.identity import Identity, check_namespace, entry_name, is_entry_name, key_of
from flowcache.keys.fingerprints import Fingerprinter
from flowcache.lifetimes import KEEP, Lifetime
from flowcache.listeners import Listeners, StoreCounters, StoreListener
from flowcache.listing import entry_headers
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
    """Tiers fastest first, durable last, composed for one user.

    ``storage_options`` (per fsspec protocol) are those the durable tier was built with; the
    store's :attr:`fingerprinter` uses them, so an ``s3://`` input is fingerprinted against
    the same endpoint and credentials as the store's own bucket.
    """

    def __init__(self, tiers: Sequence[Tier], *, identity: Identity,
                 locks: Locks | None = None, backoff_base: float = 0.5,
                 backoff_cap: float = 30.0, clock: Callable[[], float] = time.monotonic,
                 storage_options: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        if not tiers or not tiers[-1].durable:
            raise ConfigError("the last tier must be durable (an object tier: a directory, "
                              "s3://bucket/prefix or gs://bucket/prefix)")
        if any(tier.durable for tier in tiers[:-1]):
            raise ConfigError("only the last tier may be durable: put the object tier last")
        self.tiers: list[Tier] = []
        self.identity = identity
        self.locks = locks if isinstance(locks, LayeredLocks) else LayeredLocks(locks)
        self.counters = StoreCounters()
        self.config: Any = None  # the StoreConfig this store was built from, if any
        self.storage_options = {k: dict(v) for k, v in (storage_options or {}).items()}
        self.listeners = Listeners()
        self._breaker = functools.partial(TierBreaker, base=backoff_base, cap=backoff_cap,
                                          clock=clock, counters=self.counters)
        self._guards: dict[int, TierBreaker] = {}
        self._durable_ready = False
        for tier in tiers:
            self._attach(tier)
        self.tiers = list(tiers)

    @property
    def durable(self) -> Tier:
        return self.tiers[-1]

    @property
    def hot(self) -> list[Tier]:
        return self.tiers[:-1]

    def add_tier(self, tier: Tier, *, at: int | None = None) -> None:
        """Add a tier to this store, in place: its listeners (the ledger), locks and
        configuration stay, and the new tier's own evictions reach them too.

        ``at``: its position among the hot tiers (default: the last before the durable one).
        """
        if tier.durable:
            raise ConfigError(f"{tier.describe()} is durable; a store has one durable tier")
        position = len(self.hot) if at is None else at
        if not 0 <= position <= len(self.hot):
            raise ConfigError(f"add_tier(at={at}): a hot tier goes at 0..{len(self.hot)}, "
                              "before the durable tier")
        self._attach(tier)
        self.tiers.insert(position, tier)

    def _attach(self, tier: Tier) -> None:
        if not tier.durable:
            self._guards[id(tier)] = self._breaker(tier)
        tier.add_removal_listener(functools.partial(self._tier_dropped, tier))

    @functools.cached_property
    def fingerprinter(self) -> Fingerprinter:
        """File fingerprints with this store's storage options (see the class docstring)."""
        return Fingerprinter(self.storage_options)

    # -- naming -------------------------------------------------------------------------------
    @property
    def namespace(self) -> str:
        return self.identity.namespace

    def name_for(self, key: str) -> str:
        """Where ``key`` lives in every tier (see :func:`flowcache.identity.entry_name`)."""
        return entry_name(self.namespace, key)

    key_of = staticmethod(key_of)

    def add_listener(self, listener: StoreListener) -> None:
        self.listeners.add(listener)

    def breaker(self, tier: Tier) -> TierBreaker | None:
        """The breaker guarding hot ``tier`` (None for the durable tier): metrics read it."""
        return self._guards.get(id(tier))

    def _tier_dropped(self, tier: Tier, name: str, nbytes: int, reason: str) -> None:
        """A tier dropped a frame by itself (an eviction): its listeners account for it."""
        self.counters.add(tier.name, deletes=1)
        self.listeners.emit("on_remove", name, tier.name, nbytes, reason)

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

    def _read(self, key: str, into: memoryview | None = None, *,
              report_miss: bool = True) -> tuple[Entry | None, str | None]:
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
        if report_miss:
            self.listeners.emit("on_miss", key)
        return None, None

    def _tier_get(self, tier: Tier, name: str, into: memoryview | None = None) -> Frame | None:
        def read(name: str) -> Frame | None:
            return tier.get(name) if into is None else tier.get_into(name, into)

        if tier.durable:
            return read(name)
        return self._guards[id(tier)].call("read", lambda: read(name))[1]

    def _drop_hot(self, tier: Tier, name: str, nbytes: int, exc: CorruptEntry) -> None:
        kind = "foreign" if isinstance(exc, ForeignEntry) else "corrupt"
        log.warning("dropping a %s frame from %s: %s", kind, tier.describe(), exc)
        self._remove_from(tier, name, nbytes, kind)

    def _promote(self, entry: Entry, name: str, found_at: int, *,
                 keep_view: bool = False) -> Entry:
        # a raw payload becomes its own bytes, so later raw reads are zero-copy; a payload read
        # into the caller's buffer (keep_view) is copied for the hot tiers, which keep theirs
        hot = entry.compact() if keep_view or entry.header.serializer == "raw" else entry
        ttl = hot.header.ttl_left()
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
        entry = encode_entry(value, key=key, identity=self.identity, lifetime=lifetime,
                             meta=meta, serializer=serializer)
        return self._put_entry(key, entry, overwrite)

    def put_frame(self, key: str, frame: Frame, *, overwrite: bool = False) -> Entry:
        entry = decode(frame, identity=self.identity, key=key, verify=False)
        return self._put_entry(key, entry, overwrite)

    def _put_entry(self, key: str, entry: Entry, overwrite: bool) -> Entry:
        name = self.name_for(key)
        ttl = entry.header.ttl_left()
        entry = self._durable_put(key, name, entry, ttl, overwrite)
        for tier in self.hot:
            self._hot_put(tier, name, entry.frame, entry.header, ttl)
        return entry

    def _durable_put(self, key: str, name: str, entry: Entry, ttl: float | None,
                     overwrite: bool) -> Entry:
        started = time.perf_counter()
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
        self.listeners.emit("on_confirm", name, self.durable.name, entry.frame.nbytes,
                            time.perf_counter() - started)
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
        stored, _ = self._guards[id(tier)].call(
            "write", lambda: tier.put(name, frame, ttl=ttl))
        if not stored:  # full (OOM), no permission, unreachable...: the hot copy is optional
            return
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
            self.ensure_durable()  # a missing bucket fails the call before the work, not after
            self.listeners.emit("on_miss", key)  # one call, one miss (it looked twice)
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

    def ensure_durable(self) -> None:
        """Check, once per store, that the durable tier can take writes (its bucket exists,
        its directory is writable): ``DurableWriteError`` if not."""
        if self._durable_ready:
            return
        try:
            warnings = self.durable.health()
        except DurableWriteError:
            raise
        except Exception as exc:
            raise DurableWriteError(self.durable.describe(),
                                    f"{type(exc).__name__}: {exc}") from exc
        for warning in warnings:
            log.warning("%s: %s", self.durable.describe(), warning)
        self._durable_ready = True

    def _read_for_compute(self, key: str) -> Outcome[Any] | None:
        try:
            entry, tier = self._read(key, report_miss=False)
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
        size = self.durable.size(name) if self.listeners else None
        removed = self.durable.delete(name)
        if removed:
            self.counters.add(self.durable.name, deletes=1)
            self.listeners.emit("on_remove", name, self.durable.name, size, reason)
        self._forget_hot(name, reason)
        return removed

    def _forget_hot(self, name: str, reason: str = "deleted") -> None:
        for tier in self.hot:
            self._remove_from(tier, name, None, reason)

    def _remove_from(self, tier: Tier, name: str, nbytes: int | None, reason: str) -> None:
        if tier.durable:
            removed = tier.delete(name)
        else:
            removed = self._guards[id(tier)].call("delete", lambda: tier.delete(name))[1]
        if removed:
            self.counters.add(tier.name, deletes=1)
            self.listeners.emit("on_remove", name, tier.name, nbytes, reason)

    def scan(self, prefix: str = "") -> Iterator[str]:
        """Names of this user's entries in the durable tier (not the lifecycle records)."""
        for name in self.durable.scan(f"{self.namespace}/{prefix}"):
            if is_entry_name(name):
                yield name

    def headers(self, prefix: str = "") -> Iterator[tuple[str, Header | None]]:
        """(name, unverified header) of each durable entry, None for an unreadable one (see
        :func:`flowcache.listing.entry_headers`): for listings and sweeps only."""
        return entry_headers(self.durable, self.namespace, prefix)

    def close(self) -> None:
        for tier in self.tiers:
            try:
                tier.close()
            except Exception as exc:
                log.debug("closing %s: %s", tier.describe(), exc)

    def describe(self) -> str:
        return " -> ".join(tier.describe() for tier in self.tiers)

    def __repr__(self) -> str:
        return f"<TieredStore user={self.identity.user!r} {self.describe()}>"

    def __reduce__(self) -> tuple:
        """Stores built from a config travel (to Dask workers) as that config."""
        config = self.config
        if config is None:
            raise TypeError("only a store built with StoreConfig.build() can be sent to another "
                            "process; build it from a StoreConfig")
        return (type(config).build, (config,))
