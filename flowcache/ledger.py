"""The ledger: an append-only log of what happened to each user's entries, for billing.

Four kinds of event, each stamped by the ledger's clock: ``write`` (a frame entered a tier:
bytes, owner, flow run, flow, task), ``remove`` (it left: ``deleted``, ``purged``, ``evicted``,
``expired``, ``cleared``, ``vanished``...), ``hit`` (with the compute seconds it saved) and
``miss``. :mod:`flowcache.billing` folds them into residencies and byte-seconds.

Events come from three places, because no single one sees everything:

* the store's listener seam (:class:`LedgerListener`): writes, deletes, purges, hits, misses;
* hot tiers' ``on_remove`` callbacks: their own evictions (memory, node), which the store
  never sees;
* Redis, which evicts and expires silently: :func:`watch_evictions` turns its keyspace
  notifications (``notify-keyspace-events Exe``, an operator's setting) into removals as they
  happen, and :meth:`Ledger.reconcile` (run by ``flowcache gc``) ends the residencies whose copy
  is gone, for whatever the watcher missed.

Backends: SQLite (the embedded default, a file under the user's cache dir, shared by the
user's processes) or a Redis stream per user (``flowcache:ledger:{alice}``, append-only for the
tenant). The clock is injectable so that tests control time; in production it must be the
wall clock (entries' expiry times are wall-clock times).
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from flowcache.billing import (
    Event,
    Residency,
    open_residencies,
)
from flowcache.entry import Header
from flowcache.events import StoreListener
from flowcache.ledger_backends import LedgerBackend, RedisBackend, SQLiteBackend
from flowcache.lifecycle import _pid_alive

log = logging.getLogger("flowcache.ledger")
__all__ = ["Ledger", "LedgerBackend", "LedgerListener", "RedisBackend", "SQLiteBackend",
           "ledger_of", "this_process", "watch_evictions"]

def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Ledger:
    """Records events, in order, into a backend; never raises into the caller.

    ``record`` only queues (a memory-tier hit must stay cheap); a writer thread delivers the
    queue in batches every ``flush_every`` seconds, and ``flush`` (also run by ``events`` and
    at exit) delivers it now. If the backend fails, the events stay queued and the backend is
    retried with backoff; beyond ``max_pending`` queued events the oldest are dropped and
    counted in ``dropped``. What a process had queued is lost only if it dies mid-outage.
    """

    def __init__(self, backend: LedgerBackend, *, clock: Callable[[], float] = time.time,
                 flush_every: float = 0.5, max_pending: int = 100_000,
                 backoff_cap: float = 30.0) -> None:
        self.backend = backend
        self.clock = clock
        self.flush_every = flush_every
        self.max_pending = max_pending
        self.backoff_cap = backoff_cap
        self.dropped = 0
        self._failures = 0
        self._retry_at = 0.0
        self._reset()
        me = weakref.ref(self)
        atexit.register(_if_alive, me, "flush")
        os.register_at_fork(after_in_child=lambda: _if_alive(me, "_reset"))

    def _reset(self) -> None:
        """Fresh state (also in a forked child: the parent's queue and writer are not ours)."""
        self._pending: list[Event] = []
        self._lock = threading.Lock()
        self._delivering = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None

    # -- recording ----------------------------------------------------------------------------
    def record(self, *events: Event) -> None:
        with self._lock:
            self._pending.extend(events)
            over = len(self._pending) - self.max_pending
            if over > 0:
                del self._pending[:over]
                self.dropped += over
            if len(self._pending) >= 1000:
                self._wake.set()  # a burst: deliver it without waiting out the interval
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(target=self._write_forever, daemon=True,
                                                name="flowcache-ledger-writer")
                self._writer.start()

    def flush(self) -> bool:
        """Deliver the queued events now; False if the backend refused them (still queued)."""
        with self._delivering:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return True
            try:
                self.backend.append(batch)
            except Exception as exc:
                with self._lock:
                    self._pending[:0] = batch
                self._failures += 1
                self._retry_at = time.monotonic() + min(self.backoff_cap,
                                                        0.5 * 2 ** (self._failures - 1))
                if self._failures == 1:
                    log.warning("the ledger (%s) cannot record events (%s); keeping them "
                                "queued and retrying", _describe(self.backend), exc)
                return False
            if self._failures:
                log.warning("the ledger (%s) records again", _describe(self.backend))
                self._failures = 0
            return True

    def _write_forever(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_every)
            self._wake.clear()
            if self._failures and time.monotonic() < self._retry_at:
                continue
            self.flush()

    def wrote(self, user: str, tier: str, name: str, nbytes: int, header: Header | None = None,
              *, proc: str = "") -> None:
        meta = header.meta if header is not None else {}
        expires = header.expires_at if header is not None and tier == "redis" else None
        self.record(Event(self.clock(), "write", user, tier, name, int(nbytes),
                          run=str(meta.get("run") or ""), flow=str(meta.get("flow") or ""),
                          task=str(meta.get("task") or ""), expires=expires, proc=proc))

    def removed(self, user: str, tier: str, name: str, reason: str, *, proc: str = "",
                before: float | None = None) -> None:
        self.record(Event(self.clock(), "remove", user, tier, name, reason=reason, proc=proc,
                          before=before))

    def hit(self, user: str, tier: str, key: str, header: Header) -> None:
        meta = header.meta
        self.record(Event(self.clock(), "hit", user, tier, key, int(header.size),
                          run=str(meta.get("run") or ""), flow=str(meta.get("flow") or ""),
                          task=str(meta.get("task") or ""),
                          seconds=float(meta.get("compute_seconds") or 0.0)))

    def missed(self, user: str, key: str) -> None:
        self.record(Event(self.clock(), "miss", user, name=key))

    # -- reading ------------------------------------------------------------------------------
    def events(self, user: str, since: float | None = None) -> list[Event]:
        """``user``'s events in the order they were recorded (this process's queue first
        delivered). ``since`` lets the backend skip older history (a flow run's own
        residencies all begin after the run started); some earlier events may still come."""
        self.flush()
        return list(self.backend.events(user, since))

    def users(self) -> list[str]:
        self.flush()
        return self.backend.users()

    # -- wiring -------------------------------------------------------------------------------
    def attach(self, store: Any) -> LedgerListener:
        """Record ``store``'s events (and its memory tiers' evictions) in this ledger."""
        listener = LedgerListener(self, store)
        store.add_listener(listener)
        _LEDGERS[store] = self
        return listener

    def reconcile(self, store: Any) -> list[Residency]:
        """End the residencies of ``store``'s user whose copy is gone; return them.

        Covers what no event reported: Redis evictions and expiries missed by the watcher,
        hot copies removed behind the store's back (``gc``'s orphan sweep), objects deleted
        outside flowcache, and memory copies of processes on this host that have died.
        A residency that began after the ledger was read is never ended here.
        """
        user = store.identity.user
        checked_at = self.clock()
        open_now = open_residencies(self.events(user), now=checked_at)
        present: dict[str, set[str]] = {}
        for tier in store.tiers:
            if tier.name != "memory":
                present[tier.name] = set(tier.scan(f"{store.namespace}/"))
        host = socket.gethostname()
        ended = []
        for residency in open_now:
            if residency.proc:
                proc_host, _, pid = residency.proc.rpartition(":")
                if proc_host != host or _pid_alive(int(pid or 0)):
                    continue
                self.removed(user, residency.tier, residency.name, "process-exit",
                             proc=residency.proc, before=checked_at)
            elif residency.tier in present and residency.name not in present[residency.tier]:
                self.removed(user, residency.tier, residency.name, "vanished",
                             before=checked_at)
            else:
                continue
            ended.append(residency)
        return ended

    def close(self) -> None:
        """Stop the writer, deliver what is queued, close the backend (a later event reopens
        both)."""
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            self._stop.set()
            self._wake.set()
            if writer is not threading.current_thread():
                writer.join()
            self._stop.clear()
        self.flush()
        self.backend.close()


def _if_alive(ref: weakref.ref, method: str) -> None:
    """Call ``method`` of a ledger at exit or fork, unless it was collected already."""
    ledger = ref()
    if ledger is not None:
        getattr(ledger, method)()


_LEDGERS: weakref.WeakKeyDictionary[Any, Ledger] = weakref.WeakKeyDictionary()


def ledger_of(store: Any) -> Ledger | None:
    """The ledger ``store`` records into, if one was attached."""
    return _LEDGERS.get(store)


def _describe(backend: Any) -> str:
    describe = getattr(backend, "describe", None)
    return describe() if describe else type(backend).__name__


class LedgerListener(StoreListener):
    """One store's events, as its user's, into a ledger; plus what its tiers drop themselves.

    A memory tier reports every removal of its own (LRU evictions included) through
    ``on_remove``, so the store's removal events for it are skipped here (they would end the
    same copy twice); its copies belong to this process, and those left end at exit. Other hot
    tiers with ``on_remove`` (the node tier, shared by a host's processes) report only their
    evictions that way, named by the entry's owner.
    """

    def __init__(self, ledger: Ledger, store: Any) -> None:
        self.ledger = ledger
        self.user = store.identity.user
        self.proc = this_process()
        self._local: set[str] = set()
        self._held: set[tuple[str, str]] = set()
        self._held_lock = threading.Lock()
        for tier in store.hot:
            if hasattr(tier, "on_remove"):
                self._hook(tier, local=tier.name == "memory")
        if self._local:
            finalizer = weakref.WeakMethod(self.process_exit)
            atexit.register(lambda: (finalizer() or (lambda: None))())

    def _hook(self, tier: Any, *, local: bool) -> None:
        previous = tier.on_remove
        name = tier.name

        def removed(entry: str, nbytes: int, reason: str) -> None:
            if previous is not None:
                previous(entry, nbytes, reason)
            if not local:
                self.ledger.removed(entry.partition("/")[0], name, entry, reason)
                return
            with self._held_lock:
                self._held.discard((name, entry))
            self.ledger.removed(self.user, name, entry, reason, proc=self.proc)

        tier.on_remove = removed
        if local:
            self._local.add(name)

    def on_write(self, name: str, tier: str, header: Header, nbytes: int) -> None:
        proc = ""
        if tier in self._local:
            proc = self.proc
            with self._held_lock:
                self._held.add((tier, name))
        self.ledger.wrote(self.user, tier, name, nbytes, header, proc=proc)

    def on_remove(self, name: str, tier: str, nbytes: int | None, reason: str) -> None:
        if tier not in self._local:
            self.ledger.removed(self.user, tier, name, reason)

    def on_hit(self, key: str, tier: str, header: Header) -> None:
        self.ledger.hit(self.user, tier, key, header)

    def on_miss(self, key: str) -> None:
        self.ledger.missed(self.user, key)

    def process_exit(self) -> None:
        """End the residencies of this process's memory copies (they die with it)."""
        with self._held_lock:
            held, self._held = self._held, set()
        for tier, name in sorted(held):
            self.ledger.removed(self.user, tier, name, "process-exit", proc=self.proc)


def watch_evictions(client: Any, ledger: Ledger, *, prefix: str = "flowcache:") -> Any:
    """A :class:`~flowcache.tiers.redis.KeyspaceWatcher` ending Redis residencies in ``ledger``
    as Redis evicts or expires them (call ``start()`` then ``run()``, or ``run_in_thread()``)."""
    from flowcache.tiers.redis import KeyspaceWatcher

    def dropped(name: str, reason: str) -> None:
        ledger.removed(name.partition("/")[0], "redis", name, reason)

    return KeyspaceWatcher(client, dropped, prefix=prefix)
