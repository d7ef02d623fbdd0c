"""CacheSchedulerPlugin: bills the cluster memory that cached results occupy, and purges a
session's intermediates when its client goes away.

::

    client.register_plugin(CacheSchedulerPlugin(StoreConfig.from_env()))

Residency: every task submitted through flowcache (annotated ``flowcache``) is timed from the
moment its result lands in worker memory until it leaves (released, forgotten, lost); its
``nbytes`` x those seconds are summed per owner and written to the flowcache ledger of the
configured store (a ``write`` and a ``remove`` on tier ``dask-memory``, so ``flowcache billing``
covers cluster memory too); ``sink=`` replaces the ledger with a callable
``sink(key, nbytes, seconds, owner)``. Session purge: entries written with
``lifetime="flow"`` inside ``dask_cache.session(client)`` belong to run ``dask-<client id>``; when
that client disconnects the plugin deletes them from every tier (in a thread: the scheduler's
event loop never waits for storage).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from distributed import SchedulerPlugin

from flowcache.config import StoreConfig

log = logging.getLogger("dask_cache")
ResidencySink = Callable[[str, int, float, str], None]
TIER = "dask-memory"


def session_run_id(client_id: str) -> str:
    return f"dask-{client_id}"


class CacheSchedulerPlugin(SchedulerPlugin):
    name = "flowcache-scheduler"
    idempotent = True

    def __init__(self, config: StoreConfig | None = None, *, sink: ResidencySink | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.sink = sink
        self.clock = clock
        self._since: dict[Any, tuple[float, int, str]] = {}
        self.byte_seconds: dict[str, float] = {}
        self.intervals = 0
        self._lock = threading.Lock()
        self._store: Any = None
        self._ledger: Any = None

    def __getstate__(self) -> dict[str, Any]:
        """Shipped to the scheduler: configuration only, no locks or open stores."""
        return {"config": self.config, "sink": self.sink, "clock": self.clock}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"], sink=state["sink"], clock=state["clock"])

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        if self.sink is None and self.config is not None:
            from flowcache.accounts.ledger import ledger_of

            self._store = self.config.build()
            self._ledger = ledger_of(self._store)

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if finish == "memory":
            ts = self.scheduler.tasks.get(key)
            if ts is None or not (ts.annotations or {}).get("flowcache"):
                return
            owner = str(ts.annotations.get("flowcache_owner", "default"))
            self._since[key] = (self.clock(), int(ts.nbytes or 0), owner)
            if self._ledger is not None:
                self._ledger.wrote(owner, TIER, str(key), int(ts.nbytes or 0))
        elif start == "memory" and key in self._since:
            began, nbytes, owner = self._since.pop(key)
            self._account(key, nbytes, self.clock() - began, owner)

    def _account(self, key: Any, nbytes: int, seconds: float, owner: str) -> None:
        with self._lock:
            self.byte_seconds[owner] = self.byte_seconds.get(owner, 0.0) + nbytes * seconds
            self.intervals += 1
        if self._ledger is not None:
            self._ledger.removed(owner, TIER, str(key), "released")
        if self.sink is not None:
            try:
                self.sink(str(key), nbytes, seconds, owner)
            except Exception:
                log.exception("the residency sink failed for %s", key)

    def residency(self, *, now: float | None = None) -> dict[str, float]:
        """Byte-seconds per owner so far, counting results still in memory up to ``now``."""
        now = self.clock() if now is None else now
        with self._lock:
            totals = dict(self.byte_seconds)
        for began, nbytes, owner in list(self._since.values()):
            totals[owner] = totals.get(owner, 0.0) + nbytes * (now - began)
        return totals

    def remove_client(self, scheduler: Any, client: str) -> None:
        if self.config is None:
            return
        run_id = session_run_id(client)
        threading.Thread(target=self._purge, args=(run_id,), daemon=True,
                         name="flowcache-session-purge").start()

    def _purge(self, run_id: str) -> None:
        from flowcache.purge import tracker_for

        try:
            if self._store is None:
                self._store = self.config.build()
            report = tracker_for(self._store).purge(run_id)
        except Exception as exc:
            log.error("could not purge the intermediates of %s: %s", run_id, exc)
            return
        if report.entries:
            log.info("flowcache: purged %d intermediates (%d bytes) of %s", report.entries,
                     report.bytes, run_id)


def scheduler_residency(dask_scheduler: Any) -> dict[str, float]:
    """For ``client.run_on_scheduler(scheduler_residency)``."""
    plugin = dask_scheduler.plugins.get(CacheSchedulerPlugin.name)
    return plugin.residency() if plugin is not None else {}
