"""``flowcache metrics``: the shared tiers' state, served for Prometheus to scrape.

Workers report what their own store does (``flowcache.metrics.expose`` on each worker). What no
worker sees is the shared tiers as a whole: how full each Redis node is against its
``maxmemory`` (every primary of a cluster), how many keys Redis evicted, how many bytes each
user keeps in the durable tier, and whether each tier answers at all. This exporter reports
those, with the configured store's own metrics (its breakers show a tier's degraded state), on
``http://HOST:PORT/metrics``; docs/metrics.md lists every series and the autoscaling rule.

It listens on loopback by default: the series name users and their byte counts, which is
nobody else's business; pass ``--host 0.0.0.0`` (behind a firewall) for a remote Prometheus.
Listing a bucket is slow, so the durable tier is walked in the background every
``--walk-interval`` and at most ``--walk-limit`` entries a walk; a scrape never waits for it.
"""

from __future__ import annotations

import errno
import logging
import signal
import threading
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from flowcache.cli import output
from flowcache.config import StoreConfig
from flowcache.metrics import StoreMetrics, hub_of
from flowcache.store import TieredStore
from flowcache.tiers.redis import RedisTier
from flowcache.tiers.redis_cluster import is_cluster
from flowcache.units import parse_duration
from flowcache.usage import BoundedLabels, UsageWalker

log = logging.getLogger("flowcache.metrics")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9471
WALKS = ("all", "own", "off")


def redis_nodes(client: Any) -> list[tuple[str, Any]]:
    """``(host:port, client)`` of each node to read: the server, or every primary of a
    cluster (replicas hold copies: counting them would count bytes twice)."""
    if is_cluster(client):  # a RedisCluster, or one made on first use (LazyCluster)
        return [(node.name, client.get_redis_connection(node))
                for node in client.get_primaries()]
    options = client.connection_pool.connection_kwargs
    label = options.get("path") or f"{options.get('host')}:{options.get('port')}"
    return [(str(label), client)]


class SharedTiers:
    """Samples of the shared tiers: Redis INFO per node, durable bytes per user, and the
    store's tiers probed (so their degraded state is fresh) at every scrape."""

    def __init__(self, store: TieredStore, store_metrics: StoreMetrics, *, walk: str,
                 walk_interval: float, walk_limit: int, user_limit: int) -> None:
        self.store = store
        self.store_metrics = store_metrics
        self.redis = [tier for tier in store.hot if isinstance(tier, RedisTier)]
        prefix = f"{store.namespace}/" if walk == "own" else ""
        self.walker = (UsageWalker(store.durable, BoundedLabels(user_limit), prefix=prefix,
                                   limit=walk_limit, interval=walk_interval)
                       if walk != "off" else None)
        self._warned: set[str] = set()

    def collect(self) -> Iterator[Metric]:
        self.store_metrics.probe()
        yield from self._redis()
        if self.walker is not None:
            yield from self._durable(self.walker)

    def _redis(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("flowcache_redis_up", "1 if the node answered INFO",
                               labels=["node"])
        gauges = {
            "used_memory": GaugeMetricFamily("flowcache_redis_memory_used_bytes", "memory the "
                                             "node uses (INFO used_memory)", labels=["node"]),
            "maxmemory": GaugeMetricFamily("flowcache_redis_maxmemory_bytes", "the node's "
                                           "maxmemory (0: no limit)", labels=["node"]),
        }
        counters = {
            "evicted_keys": CounterMetricFamily("flowcache_redis_evicted_keys", "keys the node "
                                                "evicted under maxmemory", labels=["node"]),
            "keyspace_hits": CounterMetricFamily("flowcache_redis_keyspace_hits", "lookups "
                                                 "of keys that existed", labels=["node"]),
            "keyspace_misses": CounterMetricFamily("flowcache_redis_keyspace_misses", "lookups"
                                                   " of keys that did not", labels=["node"]),
        }
        for tier in self.redis:
            try:
                nodes = redis_nodes(tier.client)
            except Exception as exc:
                self._warn_once(tier.describe(), exc)
                continue
            for node, client in nodes:
                try:
                    info = client.info()
                except Exception as exc:
                    self._warn_once(node, exc)
                    up.add_metric([node], 0)
                    continue
                up.add_metric([node], 1)
                for field, family in {**gauges, **counters}.items():
                    family.add_metric([node], float(info.get(field, 0)))
        yield up
        yield from gauges.values()
        yield from counters.values()

    def _durable(self, walker: UsageWalker) -> Iterator[Metric]:
        usage = walker.current()
        held = GaugeMetricFamily("flowcache_object_bytes", "bytes of entries per user in the "
                                 "durable tier (at the last walk)", labels=["user"])
        entries = GaugeMetricFamily("flowcache_object_entries", "entries per user in the "
                                    "durable tier (at the last walk)", labels=["user"])
        for user, nbytes in sorted((usage.bytes if usage else {}).items()):
            held.add_metric([user], nbytes)
            entries.add_metric([user], usage.entries[user])
        yield held
        yield entries
        if usage is not None:
            yield GaugeMetricFamily("flowcache_object_walk_truncated", "1 if the last walk "
                                    "stopped at --walk-limit (figures are lower bounds)",
                                    value=int(usage.truncated))
            yield GaugeMetricFamily("flowcache_object_walk_timestamp_seconds", "when the last "
                                    "walk ended (Unix time)", value=usage.finished)
            yield GaugeMetricFamily("flowcache_object_walk_duration_seconds", "how long the "
                                    "last walk took", value=usage.seconds)
        yield CounterMetricFamily("flowcache_object_walk_errors", "walks that failed",
                                  value=walker.errors)

    def _warn_once(self, what: str, exc: BaseException) -> None:
        if what not in self._warned:
            self._warned.add(what)
            log.warning("cannot read %s (%s: %s); reporting it as down", what,
                        type(exc).__name__, exc)


def metrics_command(
    host: Annotated[str, typer.Option(help="address to listen on (0.0.0.0: every "
                                      "interface)")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(min=1, max=65535, help="port to serve /metrics on")]
    = DEFAULT_PORT,
    walk: Annotated[str, typer.Option(help="which users' durable bytes to count: all (needs "
                                      "an operator's listing rights), own, or off")] = "all",
    walk_interval: Annotated[str, typer.Option(help="how often to walk the durable tier")]
    = "5m",
    walk_limit: Annotated[int, typer.Option(min=1, help="stop a walk after this many "
                                            "entries")] = 100_000,
    user_limit: Annotated[int, typer.Option(min=1, help="users labelled by name; the rest "
                                            "are summed as _other")] = 64,
) -> None:
    """Serve Prometheus metrics of the shared tiers (Redis memory per node, durable bytes
    per user, each tier's degraded state) and of the configured store."""
    if walk not in WALKS:
        output.fail(f"--walk {walk!r}: use all, own or off (e.g. --walk own)", output.USAGE)
    interval = parse_duration(walk_interval, "--walk-interval")
    store = StoreConfig.from_env().build()
    registry = CollectorRegistry()
    store_metrics = StoreMetrics(store, name="exporter", user_limit=user_limit)
    store.add_listener(store_metrics)
    shared = SharedTiers(store, store_metrics, walk=walk, walk_interval=interval,
                         walk_limit=walk_limit, user_limit=user_limit)
    hub = hub_of(registry)
    hub.add(shared)  # first: it probes the tiers that the store's samples then report
    hub.add(store_metrics)
    if shared.walker is not None:
        shared.walker.current()  # the first walk starts now, not at the first scrape
    try:
        server, _ = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        store.close()
        if exc.errno == errno.EADDRINUSE:
            output.fail(f"port {port} on {host} is already in use (another exporter?): stop "
                        f"what listens there or pass --port N", output.FAILURE)
        output.fail(f"cannot listen on {host}:{port} ({exc.strerror or exc}): pass a local "
                    "address with --host, e.g. --host 127.0.0.1", output.USAGE)
    output.note(f"serving flowcache metrics at http://{host}:{port}/metrics "
                f"({store.describe()}); Ctrl-C stops")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        store.close()
