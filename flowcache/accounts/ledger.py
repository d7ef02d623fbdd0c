"""The ledger: an append-only log of what happened to each user's entries, for billing.

Four kinds of event, each stamped by the ledger's clock: ``write`` (a frame entered a tier:
bytes, owner, flow run, flow, task), ``remove`` (it left: ``deleted``, ``purged``, ``evicted``,
``expired``, ``cleared``, ``vanished``...), ``hit`` (with the compute seconds it saved) and
``miss``. :mod:`flowcache.accounts.billing` folds them into residencies and byte-seconds.

Events come from two places, because no single one sees everything:

* the store's listener seam (:class:`LedgerListener`): writes, deletes, purges, hits, misses,
  and what a tier drops by itself (memory and node evictions, which tiers report to the store
  through their removal listeners);
* Redis, which evicts and expires silently: :func:`flowcache.accounts.evictions.watch_evictions`
  turns its keyspace notifications (``notify-keyspace-events Exe``, an operator's setting) into
  removals as they happen, and :meth:`Ledger.reconcile` (run by ``flowcache gc``) ends the
  residencies whose copy is gone, for whatever the watcher missed.

Backends: SQLite (the embedded default, a file under the user's cache dir, shared by the
user's processes) or a Redis stream per user (``flowcache:ledger:{alice}``, append-only for the
tenant). The clock is injectable so that tests control time; in production it must be the
wall clock (entries' expiry times are wall-clock times).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable

from flowcache.accounts.backends import LedgerBackend, RedisBackend, SQLiteBackend
from flowcache.accounts.billing import Event, Residency, open_residencies
from flowcache.errors import LedgerRetry
from flowcache.frames import Header
from flowcache.identity import namespace_of
from flowcache.listeners import StoreListener
from flowcache.processes import process_gone, this_process
from flowcache.store import TieredStore

log = logging.getLogger("flowcache.ledger")
__all__ = ["Ledger", "LedgerBackend", "LedgerListener", "RedisBackend", "SQLiteBackend",
           "ledger_of", "this_process"]


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
                # retry what was not taken: all of it, or the events a partly refused
                # batch names (those taken must not be recorded twice)
                again = exc.events if isinstance(exc, LedgerRetry) else batch
                with self._lock:
                    self._pending[:0] = again
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
    def attach(self, store: TieredStore) -> LedgerListener:
        """Record ``store``'s events (its tiers' evictions included) in this ledger."""
        listener = LedgerListener(self, store)
        store.add_listener(listener)
        return listener

    def reconcile(self, store: TieredStore) -> list[Residency]:
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
        ended = []
        for residency in open_now:
            if residency.proc:
                if not process_gone(residency.proc):
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


def ledger_of(store: TieredStore) -> Ledger | None:
    """The ledger ``store`` records into, if one was attached."""
    for listener in store.listeners:
        if isinstance(listener, LedgerListener):
            return listener.ledger
    return None


def _describe(backend: LedgerBackend) -> str:
    describe = getattr(backend, "describe", None)
    return describe() if describe else type(backend).__name__


class LedgerListener(StoreListener):
    """One store's events, as its user's, into a ledger.

    Removals are the owner's of the name (a node tier, shared by a host's processes, may evict
    another user's entry). Copies in a process-local tier (memory) are tagged with this process
    and end at its exit (or, if it dies, at the next reconciliation on its host).
    """

    def __init__(self, ledger: Ledger, store: TieredStore) -> None:
        self.ledger = ledger
        self.store = store
        self.user = store.identity.user
        self.proc = this_process()
        self._held: set[tuple[str, str]] = set()
        self._held_lock = threading.Lock()
        finalizer = weakref.WeakMethod(self.process_exit)
        atexit.register(lambda: (finalizer() or (lambda: None))())

    def _local(self, tier: str) -> bool:
        return any(t.name == tier and t.process_local for t in self.store.hot)

    def on_write(self, name: str, tier: str, header: Header, nbytes: int) -> None:
        proc = ""
        if self._local(tier):
            proc = self.proc
            with self._held_lock:
                self._held.add((tier, name))
        self.ledger.wrote(self.user, tier, name, nbytes, header, proc=proc)

    def on_remove(self, name: str, tier: str, nbytes: int | None, reason: str) -> None:
        proc = ""
        if self._local(tier):
            proc = self.proc
            with self._held_lock:
                self._held.discard((tier, name))
        self.ledger.removed(namespace_of(name), tier, name, reason, proc=proc)

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
