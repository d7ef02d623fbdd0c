"""CacheWorkerPlugin: gives every Dask worker the flowcache store, with a node tier added.

::

    client.register_plugin(CacheWorkerPlugin(StoreConfig.from_env()))

On each worker the plugin builds the configured store and adds a :class:`NodeTier` to it right
after the memory tier: a byte-budgeted cache on the node's local disk or shared memory that all
worker processes of the node share, so a result one worker cached is read by its neighbours
without touching Redis or the bucket. The tier joins the store in place, so the store's ledger
bills what the worker writes, hits and evicts. The store becomes the worker process's default, so
``dask_cache.cache()`` functions and graph-cache loads use it. Per-worker hit, miss and byte
counters are exposed to ``client.run(worker_metrics)`` and as custom worker metrics (the
scheduler and dashboard show them with the other worker metrics), and the store's Prometheus
metrics (:mod:`flowcache.metrics`: hit rates, bytes held, evictions, write confirmations,
degraded tiers) are served on the worker's own ``/metrics`` beside Dask's, labelled with the
worker's address, so one scrape config covers both.
"""

from __future__ import annotations

from typing import Any

from distributed import WorkerPlugin

from dask_cache.settings import DaskCacheSettings
from flowcache.config import StoreConfig, set_default_store
from flowcache.metrics import expose, withdraw
from flowcache.store import TieredStore
from flowcache.tiers.node import NodeTier

METRICS = ("hits", "misses", "bytes_read", "bytes_written")


class CacheWorkerPlugin(WorkerPlugin):
    name = "flowcache"
    idempotent = True

    def __init__(self, config: StoreConfig | None = None, *, node_dir: str | None = None,
                 node_bytes: int | None = None) -> None:
        self.config = config
        self.node_dir = node_dir
        self.node_bytes = node_bytes

    def setup(self, worker: Any) -> None:
        settings = DaskCacheSettings.current()
        config = self.config or StoreConfig.from_env()
        store = config.build()
        node = NodeTier(self.node_dir or settings.node_dir,
                        max_bytes=self.node_bytes or settings.node_bytes)
        add_node_tier(store, node)
        worker.flowcache_store = store
        worker.flowcache_metrics = expose(store, name=worker.address)
        set_default_store(store)
        for tier in store.tiers:
            for metric in METRICS:
                worker.metrics[f"flowcache-{tier.name}-{metric}"] = _metric(tier.name, metric)

    def teardown(self, worker: Any) -> None:
        metrics = getattr(worker, "flowcache_metrics", None)
        if metrics is not None:
            withdraw(metrics)
            worker.flowcache_metrics = None
        store = getattr(worker, "flowcache_store", None)
        if store is not None:
            store.close()
        set_default_store(None)


def add_node_tier(store: TieredStore, node: NodeTier) -> None:
    """Put ``node`` in ``store`` after its process-local tiers (memory), in place: the store
    keeps its ledger and other listeners, so what workers do is billed."""
    at = sum(1 for tier in store.hot if tier.process_local)
    store.add_tier(node, at=at)


def _metric(tier: str, counter: str) -> Any:
    def read(worker: Any) -> int:
        store = getattr(worker, "flowcache_store", None)
        if store is None:
            return 0
        return int(store.counters.tier(tier).as_dict().get(counter, 0))
    return read


def worker_metrics(dask_worker: Any) -> dict[str, Any]:
    """For ``client.run(worker_metrics)``: this worker's store counters, by tier."""
    store = getattr(dask_worker, "flowcache_store", None)
    return store.counters.snapshot() if store is not None else {}
