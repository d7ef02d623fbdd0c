"""LocalityReporter: tells the scheduler which entries this host's node tier gained and lost.

The scheduler cannot see a worker's disk, so each worker reports what its node tier holds, and
:class:`~dask_cache.locality_scheduler.LocalitySchedulerPlugin` places tasks by it. Why this
shape:

* **A listener, not a rebuilt store.** The reporter attaches to the store
  :class:`~dask_cache.plugin.CacheWorkerPlugin` gave the worker (``worker.flowcache_store``) as
  a :class:`~flowcache.listeners.StoreListener`: writes and promotions into the node tier are
  gains, deletions and evictions are losses. It re-attaches if that plugin is registered again
  (a new store), and waits for it if it is installed later.
* **Batched.** Listener calls run on task threads and only append to two lists; a periodic
  callback on the worker's event loop sends them as one call per tick (at most ``MAX_BATCH``
  keys each): never one message per entry, and never a network call on a task's thread.
* **A call, not a stream message.** Reports go to the scheduler as an RPC (``OP``), not over
  the worker's batched stream: a stream message the scheduler has no handler for closes the
  worker's stream, while an RPC without a handler only answers nothing. So a worker whose
  scheduler lacks the locality plugin loses nothing but the reports.
* **A node, not a worker.** Workers of one machine share its node tier, so an entry belongs to
  the node (the worker's host address and the tier's directory), and every worker of that node
  is a good place for a task reading it.
* **Resynchronised by listing.** A worker first sends a full listing of the node directory
  (read in a thread), so entries written before it (re)started are known; after a failed call
  (the scheduler restarted, or has no plugin yet) it drops its deltas and sends a new listing
  later, backing off: the listing is the truth, the deltas only keep it current.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Any

from distributed import WorkerPlugin
from distributed.comm.addressing import get_address_host
from tornado.ioloop import PeriodicCallback

from flowcache.frames import Header
from flowcache.identity import is_entry_name, key_of
from flowcache.listeners import StoreListener
from flowcache.tiers.node import NodeTier

log = logging.getLogger("dask_cache.locality")
#: the scheduler handler the reports call
OP = "flowcache_locality"
#: the most keys one message carries (64 hex characters each: about 4.5 MB at most)
MAX_BATCH = 50_000


def node_label(worker_address: str, node: NodeTier) -> str:
    """Which node tier a worker uses: its host and the tier's directory (two workers with the
    same label read each other's entries from local storage)."""
    return f"{get_address_host(worker_address)}:{os.path.realpath(node.root)}"


class LocalityReporter(StoreListener):
    """Collects the node tier's gains and losses between two flushes (thread-safe)."""

    def __init__(self, tier: str = NodeTier.name) -> None:
        self.tier = tier
        self._lock = threading.Lock()
        self._gained: list[str] = []
        self._lost: list[str] = []

    def on_write(self, name: str, tier: str, header: Header, nbytes: int) -> None:
        if tier == self.tier and is_entry_name(name):
            with self._lock:
                self._gained.append(key_of(name))

    def on_remove(self, name: str, tier: str, nbytes: int | None, reason: str) -> None:
        if tier == self.tier and is_entry_name(name):
            with self._lock:
                self._lost.append(key_of(name))

    def clear(self) -> None:
        with self._lock:
            self._gained.clear()
            self._lost.clear()

    def take(self) -> tuple[list[str], list[str]]:
        """What changed since the last call, at most ``MAX_BATCH`` keys (the rest stays)."""
        with self._lock:
            gained, self._gained = self._gained[:MAX_BATCH], self._gained[MAX_BATCH:]
            room = MAX_BATCH - len(gained)
            lost, self._lost = self._lost[:room], self._lost[room:]
        return gained, lost

    def pending(self) -> int:
        with self._lock:
            return len(self._gained) + len(self._lost)


class LocalityWorkerPlugin(WorkerPlugin):
    """Installs a :class:`LocalityReporter` on the worker's flowcache store and flushes it."""

    name = "flowcache-locality"
    idempotent = True

    def __init__(self, interval: float = 0.25, retry: float = 5.0) -> None:
        self.interval = interval
        self.retry = retry

    def setup(self, worker: Any) -> None:
        self.worker = worker
        self.reporter = LocalityReporter()
        self._store: Any = None
        self._node: NodeTier | None = None
        self._synced = False
        self._next_sync = 0.0
        self._failures = 0
        self._callback = PeriodicCallback(self.flush, self.interval * 1000)
        worker.periodic_callbacks[self.name] = self._callback
        self._callback.start()

    def teardown(self, worker: Any) -> None:
        self._callback.stop()
        worker.periodic_callbacks.pop(self.name, None)
        if self._store is not None:
            self._store.listeners.remove(self.reporter)

    def _attach(self) -> None:
        """Follow the store CacheWorkerPlugin installed (it may come later, or be replaced)."""
        store = getattr(self.worker, "flowcache_store", None)
        if store is self._store:
            return
        if self._store is not None:
            self._store.listeners.remove(self.reporter)
        self._store, self._node, self._synced = store, None, False
        if store is None:
            return
        node = next((tier for tier in store.tiers if isinstance(tier, NodeTier)), None)
        if node is None:
            log.warning("flowcache locality: this worker's store has no node tier; nothing to "
                        "report (register CacheWorkerPlugin, which adds one)")
            return
        store.add_listener(self.reporter)
        self._node = node

    async def flush(self) -> None:
        """Send what the node tier gained and lost since the last flush (one call), or the
        whole listing when the scheduler does not have it yet."""
        self._attach()
        node = self._node
        if node is None:
            return
        if not self._synced:
            if time.monotonic() < self._next_sync:
                return
            self.reporter.clear()  # what changes from here on is in the next deltas
            keys = await asyncio.to_thread(_listing, node)
            for start in range(0, max(1, len(keys)), MAX_BATCH):
                if not await self._send(node, keys[start:start + MAX_BATCH], [], True):
                    return
            self._synced = True
            return
        if self.reporter.pending():
            gained, lost = self.reporter.take()
            await self._send(node, gained, lost, False)

    async def _send(self, node: NodeTier, gained: list[str], lost: list[str],
                    listing: bool) -> bool:
        try:
            answer = await getattr(self.worker.scheduler, OP)(
                worker=self.worker.address, node=node_label(self.worker.address, node),
                gained=gained, lost=lost, listing=listing)
        except Exception as exc:
            answer = exc
        if isinstance(answer, dict) and "entries" in answer:
            self._failures = 0
            return True
        self._failures += 1
        self._synced = False
        self._next_sync = time.monotonic() + min(60.0, self.retry * self._failures)
        if self._failures == 1:
            log.info("flowcache locality: the scheduler took no report (%s); is "
                     "dask_cache.locality enabled there? Retrying with a listing later",
                     answer if isinstance(answer, Exception) else "no locality plugin")
        return False


def _listing(node: NodeTier) -> list[str]:
    try:
        return [key_of(name) for name in node.scan() if is_entry_name(name)]
    except OSError as exc:
        log.warning("flowcache locality: could not list the node tier: %s", exc)
        return []
