"""Prometheus metrics of a store: the signals an autoscaler reads (see docs/metrics.md).

Counters the store already keeps (:class:`~flowcache.listeners.StoreCounters`: hits, misses,
bytes per tier) are read at scrape time rather than counted twice; what only events can tell
(removals by reason, write confirmations and their latency, bytes written per user) is counted
by :class:`StoreMetrics`, a :class:`~flowcache.listeners.StoreListener`. Bytes held and capacity
come from the tiers themselves (a local tier's budget, a bounded walk of its listing), and a
tier's degraded state from the breaker that guards it.

Labels stay bounded, because every label value is a time series Prometheus keeps: ``tier`` is a
tier's class name, ``reason`` one of a fixed set, and ``user`` the first ``user_limit`` users
seen (validated names, never paths or keys); the rest are summed under ``_other``, which no
valid user name can be. Entry names and keys never become labels.

Several stores may share a registry (a worker process with threads as workers): each adds its
samples, labelled ``store``, to the registry's one :class:`MetricsHub`, so a metric's family is
written once whatever the number of stores.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from flowcache.errors import ConfigError
from flowcache.frames import Header
from flowcache.listeners import StoreListener
from flowcache.tiers.base import Tier
from flowcache.tiers.memory import MemoryTier
from flowcache.tiers.node import NodeTier
from flowcache.usage import BoundedLabels, UsageWalker

if TYPE_CHECKING:
    from flowcache.store import TieredStore

log = logging.getLogger("flowcache.metrics")

REASONS = frozenset({"evicted", "expired", "deleted", "corrupt", "foreign", "purged",
                     "cleared", "replaced", "stale", "invalid", "abandoned"})
#: seconds; a durable write to a bucket takes tens of ms, a large one seconds
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: counters of :class:`~flowcache.listeners.TierCounters`, as Prometheus names them
TIER_COUNTERS = {
    "hits": ("tier_hits", "reads served by this tier"),
    "misses": ("tier_misses", "reads this tier could not serve (not there, skipped, expired)"),
    "writes": ("tier_writes", "frames stored in this tier"),
    "bytes_read": ("tier_read_bytes", "bytes of the frames this tier served"),
    "bytes_written": ("tier_written_bytes", "bytes of the frames stored in this tier"),
    "deletes": ("tier_deletes", "frames removed from this tier (asked for, or dropped by it)"),
    "corrupt": ("tier_corrupt", "frames rejected by verification (bad MAC, size or owner)"),
    "errors": ("tier_errors", "calls to this tier that failed"),
    "skipped": ("tier_skipped", "calls not made because the tier was backing off"),
}


class _Histogram:
    """Cumulative buckets of observed seconds, read at scrape time."""

    def __init__(self, bounds: Iterable[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        index = next((i for i, bound in enumerate(self.bounds) if value <= bound),
                     len(self.bounds))
        self.counts[index] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        running, out = 0, []
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


class StoreMetrics(StoreListener):
    """One store's metrics: a listener for its events and the source of its samples.

    ``walk_interval``: how often a node tier is walked for its bytes per user.
    """

    def __init__(self, store: TieredStore, *, name: str = "default", user_limit: int = 64,
                 walk_interval: float = 60.0, walk_limit: int = 100_000) -> None:
        self.store = store
        self.name = name
        self.users = BoundedLabels(user_limit)
        self.walk_interval = walk_interval
        self.walk_limit = walk_limit
        self._lock = threading.Lock()
        self._misses = 0
        self._removals: dict[tuple[str, str], int] = defaultdict(int)
        self._removed_bytes: dict[tuple[str, str], int] = defaultdict(int)
        self._written: dict[tuple[str, str], int] = defaultdict(int)
        self._confirmed = _Histogram(LATENCY_BUCKETS)
        self._confirmed_bytes = 0
        self._walkers: dict[int, UsageWalker] = {}
        self._durable_down = False

    # -- events -------------------------------------------------------------------------------
    def on_miss(self, key: str) -> None:
        with self._lock:
            self._misses += 1

    def on_remove(self, name: str, tier: str, nbytes: int | None, reason: str) -> None:
        reason = reason if reason in REASONS else "other"
        with self._lock:
            self._removals[tier, reason] += 1
            self._removed_bytes[tier, reason] += nbytes or 0

    def on_write(self, name: str, tier: str, header: Header, nbytes: int) -> None:
        user = self.users(header.owner)
        with self._lock:
            self._written[tier, user] += nbytes

    def on_confirm(self, name: str, tier: str, nbytes: int, seconds: float) -> None:
        with self._lock:
            self._confirmed.observe(seconds)
            self._confirmed_bytes += nbytes

    # -- probing and walking ------------------------------------------------------------------
    def probe(self) -> None:
        """Ask every tier whether it serves (an exporter does this; a worker's own traffic
        moves its breakers): a hot tier through its breaker, the durable tier directly."""
        for tier in list(self.store.tiers):
            breaker = self.store.breaker(tier)
            if breaker is not None:
                breaker.call("health", tier.health)
                continue
            try:
                tier.health()
            except Exception as exc:
                if not self._durable_down:
                    log.warning("%s does not answer: %s", tier.describe(), exc)
                self._durable_down = True
            else:
                self._durable_down = False

    def refresh(self) -> None:
        """Walk the node tiers now (tests, and a first scrape that should not be empty)."""
        for tier in self._local_tiers():
            if isinstance(tier, NodeTier):
                self._walker(tier).refresh()

    def _user_bytes(self, tier: Tier) -> dict[str, int]:
        """A memory tier is this store's alone (one user; walking it would reorder its LRU);
        a node tier is shared by every process and user on the host: walked."""
        if isinstance(tier, MemoryTier):
            return {self.users(self.store.identity.user): tier.current_bytes}
        usage = self._walker(tier).current()
        return dict(usage.bytes) if usage is not None else {}

    def _local_tiers(self) -> list[Tier]:
        return [tier for tier in self.store.tiers if isinstance(tier, (MemoryTier, NodeTier))]

    def _walker(self, tier: Tier) -> UsageWalker:
        walker = self._walkers.get(id(tier))
        if walker is None:
            walker = self._walkers[id(tier)] = UsageWalker(
                tier, self.users, limit=self.walk_limit, interval=self.walk_interval)
        return walker

    # -- samples ------------------------------------------------------------------------------
    def collect(self) -> Iterator[Metric]:
        """This store's families; a :class:`MetricsHub` merges them with other stores'."""
        snapshot = self.store.counters.snapshot()
        store = self.name
        tiers = {tier.name: {} for tier in self.store.tiers} | snapshot["tiers"]
        for counter, (metric, text) in TIER_COUNTERS.items():
            family = CounterMetricFamily(f"flowcache_{metric}", text, labels=["store", "tier"])
            for tier in tiers:
                family.add_metric([store, tier], tiers[tier].get(counter, 0))
            yield family
        for metric, text, value in (
                ("misses", "lookups no tier could serve", self._misses),
                ("computed", "results computed and stored by get_or_compute",
                 snapshot["computed"]),
                ("waited", "callers served by a concurrent producer's result",
                 snapshot["waited"])):
            yield _one(CounterMetricFamily(f"flowcache_{metric}", text, labels=["store"]),
                       [store], value)
        yield from self._event_families()
        yield from self._tier_state()

    def _event_families(self) -> Iterator[Metric]:
        store = self.name
        with self._lock:
            removals = dict(self._removals)
            removed = dict(self._removed_bytes)
            written = dict(self._written)
            buckets, total = self._confirmed.buckets(), self._confirmed.total
            confirmed_bytes = self._confirmed_bytes
        family = CounterMetricFamily("flowcache_removals", "frames that left a tier, by "
                                     "reason (evicted: the tier's budget or maxmemory)",
                                     labels=["store", "tier", "reason"])
        bytes_family = CounterMetricFamily("flowcache_removed_bytes", "bytes of those frames, "
                                           "where known", labels=["store", "tier", "reason"])
        for (tier, reason), count in sorted(removals.items()):
            family.add_metric([store, tier, reason], count)
            bytes_family.add_metric([store, tier, reason], removed[tier, reason])
        yield family
        yield bytes_family
        family = CounterMetricFamily("flowcache_user_written_bytes", "bytes stored per tier "
                                     "and user", labels=["store", "tier", "user"])
        for (tier, user), nbytes in sorted(written.items()):
            family.add_metric([store, tier, user], nbytes)
        yield family
        histogram = HistogramMetricFamily(
            "flowcache_write_confirm_seconds", "durable writes confirmed, and how long each "
            "took to be confirmed", labels=["store"])
        histogram.add_metric([store], buckets, total)
        yield histogram
        yield _one(CounterMetricFamily("flowcache_write_confirmed_bytes", "bytes of the "
                                       "confirmed durable writes", labels=["store"]),
                   [store], confirmed_bytes)

    def _tier_state(self) -> Iterator[Metric]:
        store = self.name
        degraded = GaugeMetricFamily("flowcache_tier_degraded", "1 while the store skips "
                                     "this tier (its breaker is open) or, for the durable "
                                     "tier, while its last health probe failed",
                                     labels=["store", "tier"])
        failures = GaugeMetricFamily("flowcache_tier_failures", "consecutive failed attempts "
                                     "to reach this tier", labels=["store", "tier"])
        held = GaugeMetricFamily("flowcache_tier_bytes", "bytes held in a local tier",
                                 labels=["store", "tier"])
        capacity = GaugeMetricFamily("flowcache_tier_capacity_bytes", "a local tier's byte "
                                     "budget", labels=["store", "tier"])
        per_user = GaugeMetricFamily("flowcache_tier_user_bytes", "bytes held per user in a "
                                     "local tier (walked every walk_interval)",
                                     labels=["store", "tier", "user"])
        for tier in list(self.store.tiers):
            breaker = self.store.breaker(tier)
            down = breaker.failures > 0 if breaker is not None else self._durable_down
            degraded.add_metric([store, tier.name], int(down))
            failures.add_metric([store, tier.name], breaker.failures if breaker else 0)
        for tier in self._local_tiers():
            held.add_metric([store, tier.name], tier.current_bytes)
            capacity.add_metric([store, tier.name], tier.max_bytes)
            for user, nbytes in sorted(self._user_bytes(tier).items()):
                per_user.add_metric([store, tier.name, user], nbytes)
        yield from (degraded, failures, held, capacity, per_user)


def _one(family: Any, labels: list[str], value: float) -> Any:
    family.add_metric(labels, value)
    return family


class MetricsHub:
    """The one collector a registry holds for flowcache: merges its sources' families by name.

    A source is anything with ``collect()`` yielding families (a :class:`StoreMetrics`, the
    exporter's shared-tier collectors)."""

    def __init__(self) -> None:
        self._sources: list[Any] = []
        self._lock = threading.Lock()

    def add(self, source: Any) -> None:
        with self._lock:
            if source not in self._sources:
                self._sources.append(source)

    def remove(self, source: Any) -> None:
        with self._lock:
            if source in self._sources:
                self._sources.remove(source)

    def sources(self) -> list[Any]:
        with self._lock:
            return list(self._sources)

    def describe(self) -> list[Metric]:
        return []  # names vary with the sources; the hub is the registry's only flowcache one

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for source in self.sources():
            try:
                families = list(source.collect())
            except Exception:  # a scrape must not fail because one source did
                log.exception("metrics source %r failed", source)
                continue
            for family in families:
                if family.name in merged:
                    merged[family.name].samples.extend(family.samples)
                else:
                    merged[family.name] = family
        yield from merged.values()


_HUBS: weakref.WeakKeyDictionary[CollectorRegistry, MetricsHub] = weakref.WeakKeyDictionary()
_HUBS_LOCK = threading.Lock()


def hub_of(registry: CollectorRegistry) -> MetricsHub:
    """The registry's flowcache hub, registered with it on first use."""
    with _HUBS_LOCK:
        hub = _HUBS.get(registry)
        if hub is None:
            hub = _HUBS[registry] = MetricsHub()
            registry.register(hub)
        return hub


def expose(store: TieredStore, *, name: str = "default", registry: CollectorRegistry | None = None,
           **options: Any) -> StoreMetrics:
    """Count ``store``'s events and publish its metrics in ``registry`` (default: the
    process's, which a Dask worker serves at ``/metrics``). ``name`` labels its samples
    (a worker's address) and must be unique in the registry; exposing the same store under
    the same name again returns the first :class:`StoreMetrics` (two plugins, one store).
    ``options`` go to :class:`StoreMetrics`."""
    hub = hub_of(registry if registry is not None else REGISTRY)
    for source in hub.sources():
        if isinstance(source, StoreMetrics) and source.name == name:
            if source.store is store:
                return source
            raise ConfigError(f"expose(name={name!r}): {name!r} already names another store "
                              "in this registry; give each store its own name (a worker's "
                              "address)")
    metrics = StoreMetrics(store, name=name, **options)
    store.add_listener(metrics)
    hub.add(metrics)
    return metrics


def withdraw(metrics: StoreMetrics, *, registry: CollectorRegistry | None = None) -> None:
    """Undo :func:`expose`: the store's events and samples stop (a worker's teardown)."""
    metrics.store.listeners.remove(metrics)
    hub_of(registry if registry is not None else REGISTRY).remove(metrics)
