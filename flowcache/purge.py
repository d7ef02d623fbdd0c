"""Enforcing lifetimes: a flow run's intermediates tracked and purged, leftovers swept by gc.

Entries with lifetime ``flow`` must disappear when the run that wrote them ends, whichever
process wrote them (a Dask worker, a relocated task) and however the run ends. So each such
entry gets a small marker object in the durable tier, ``<ns>/_runs/<run>/<key>``, written
before the entry itself is (so no entry ever exists without its marker); ending the run lists
that prefix and deletes every entry and marker in every tier.

Hooks are best effort: a killed process runs none. Each process taking part in a run therefore
keeps a heartbeat record, ``<ns>/_runs/<run>/_proc-<host>-<pid>``, and :func:`sweep` (the
``flowcache gc`` command) purges runs whose every process is gone (dead pid on this host, or no
heartbeat for ``stale_after``), deletes entries past their expiry, and removes hot copies whose
durable object no longer exists.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from flowcache.errors import CorruptEntry, DurableWriteError
from flowcache.frames import HEADER_PROBE_BYTES, Frame, peek_header
from flowcache.identity import (
    PROCESS_PREFIX,
    RUNS,
    key_of,
    process_record_name,
    run_marker_name,
    run_prefix,
    runs_prefix,
)
from flowcache.processes import hostname, same_process_alive, started_at
from flowcache.store import TieredStore
from flowcache.tiers.base import Tier

log = logging.getLogger("flowcache.purge")


@dataclass
class PurgeReport:
    """What a purge, sweep or clear removed (or, in a dry run, would remove)."""

    runs: int = 0
    entries: int = 0
    bytes: int = 0
    hot_copies: int = 0
    debris: int = 0  # leftovers of interrupted writes: temporary files, orphaned parts
    names: list[str] = field(default_factory=list)
    dry_run: bool = False

    def add(self, other: PurgeReport) -> None:
        self.runs += other.runs
        self.entries += other.entries
        self.bytes += other.bytes
        self.hot_copies += other.hot_copies
        self.debris += other.debris
        self.names.extend(other.names)

    def as_dict(self) -> dict[str, object]:
        return {"runs": self.runs, "entries": self.entries, "bytes": self.bytes,
                "hot_copies": self.hot_copies, "debris": self.debris,
                "dry_run": self.dry_run, "keys": list(self.names)}


class RunTracker:
    """Marks flow-scoped entries durably and purges a run's entries from every tier."""

    def __init__(self, store: TieredStore, *, heartbeat_every: float = 60.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.heartbeat_every = heartbeat_every
        self.clock = clock
        self._host = hostname()
        self._active: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def _proc_name(self, run_id: str) -> str:
        return process_record_name(self.store.namespace, run_id, f"{self._host}-{os.getpid()}")

    # -- recording ----------------------------------------------------------------------------
    def record(self, run_id: str, key: str) -> None:
        """Mark ``key`` as an intermediate of ``run_id`` (before the entry is written); a
        marker the durable tier refuses is a ``DurableWriteError``, like the entry's own."""
        marker = run_marker_name(self.store.namespace, run_id, key)
        try:
            self.join(run_id)
            self.store.durable.put(marker, Frame((b"",)))
        except DurableWriteError:
            raise
        except Exception as exc:
            raise DurableWriteError(marker, f"the run marker was not written "
                                            f"({type(exc).__name__}: {exc})") from exc

    def join(self, run_id: str) -> None:
        """Register this process in the run (once) and keep its heartbeat fresh."""
        with self._lock:
            if run_id in self._active:
                return
            stop = threading.Event()
            self._active[run_id] = stop
        self._beat(run_id)
        thread = threading.Thread(target=self._heartbeat, args=(run_id, stop), daemon=True,
                                  name=f"flowcache-heartbeat-{run_id[:8]}")
        thread.start()

    def _beat(self, run_id: str) -> None:
        record = {"host": self._host, "pid": os.getpid(), "heartbeat": self.clock(),
                  "started": started_at(os.getpid())}
        self.store.durable.put(self._proc_name(run_id), Frame((json.dumps(record).encode(),)))

    def _heartbeat(self, run_id: str, stop: threading.Event) -> None:
        while not stop.wait(self.heartbeat_every):
            try:
                self._beat(run_id)
            except Exception as exc:  # a missed beat only makes gc more eager later
                log.warning("heartbeat for run %s failed: %s", run_id, exc)

    def leave(self, run_id: str) -> None:
        with self._lock:
            stop = self._active.pop(run_id, None)
        if stop is not None:
            stop.set()

    # -- purging ------------------------------------------------------------------------------
    def entries_of(self, run_id: str) -> PurgeReport:
        """What :meth:`purge` would remove for ``run_id`` (nothing is removed)."""
        report = PurgeReport(runs=1, dry_run=True)
        prefix = run_prefix(self.store.namespace, run_id)
        for name in list(self.store.durable.scan(prefix)):
            leaf = name[len(prefix):]
            if not leaf.startswith(PROCESS_PREFIX) and self.store.exists(leaf):
                report.entries += 1
                report.bytes += self._size(leaf)
                report.names.append(leaf)
        return report

    def purge(self, run_id: str, *, reason: str = "purged") -> PurgeReport:
        """Delete every entry of ``run_id`` from every tier, then its markers and records."""
        self.leave(run_id)
        report = PurgeReport(runs=1)
        prefix = run_prefix(self.store.namespace, run_id)
        for name in list(self.store.durable.scan(prefix)):
            leaf = name[len(prefix):]
            if not leaf.startswith(PROCESS_PREFIX):
                size = self._size(leaf)
                if self.store.delete(leaf, reason=reason):
                    report.entries += 1
                    report.bytes += size
                    report.names.append(leaf)
            self.store.durable.delete(name)
        return report

    def _size(self, key: str) -> int:
        head = self.store.durable.head(self.store.name_for(key), HEADER_PROBE_BYTES)
        if not head:
            return 0
        try:
            return peek_header(head).size
        except CorruptEntry:
            return 0

    def runs(self) -> dict[str, list[dict]]:
        """Every run with markers in the durable tier, and its processes' records."""
        prefix = runs_prefix(self.store.namespace)
        found: dict[str, list[dict]] = defaultdict(list)
        for name in self.store.durable.scan(prefix):
            run_id, _, leaf = name[len(prefix):].partition("/")
            if leaf.startswith(PROCESS_PREFIX):
                frame = self.store.durable.get(name)
                try:
                    found[run_id].append(json.loads(frame.join()) if frame else {})
                except ValueError:
                    found[run_id].append({})
            else:
                found.setdefault(run_id, [])
        return dict(found)

    def is_abandoned(self, processes: list[dict], *, stale_after: float) -> bool:
        """True when no process of the run is alive. A process of this host is asked
        directly (its pid and start time), whatever its heartbeat says; one of another host
        is alive while it beats (within ``stale_after``)."""
        if not processes:
            return True
        now = self.clock()
        for record in processes:
            if not record:
                continue
            if record.get("host") == self._host:
                started = record.get("started")
                if same_process_alive(int(record.get("pid", 0)),
                                      int(started) if started is not None else None):
                    return False
                continue
            if now - float(record.get("heartbeat", 0)) < stale_after:
                return False
        return True


_TRACKERS: weakref.WeakKeyDictionary[TieredStore, RunTracker] = weakref.WeakKeyDictionary()
_TRACKERS_LOCK = threading.Lock()


def tracker_for(store: TieredStore) -> RunTracker:
    """The run tracker of ``store`` in this process (one per store, so heartbeats are shared)."""
    with _TRACKERS_LOCK:
        tracker = _TRACKERS.get(store)
        if tracker is None:
            tracker = _TRACKERS[store] = RunTracker(store)
        return tracker


def stores_with_runs() -> list[TieredStore]:
    """Stores that recorded flow-scoped entries (or purged runs) in this process."""
    with _TRACKERS_LOCK:
        return list(_TRACKERS.keys())


#: called with how many more entries were looked at (a progress bar's advance)
Progress = Callable[[int], None]


def sweep(store: TieredStore, *, stale_after: float = 900.0, debris_after: float = 3600.0,
          now: float | None = None, tracker: RunTracker | None = None, dry_run: bool = False,
          progress: Progress | None = None) -> PurgeReport:
    """Remove what outlived its lifetime (the ``flowcache gc`` command).

    * runs whose every process is gone: all their flow-scoped entries;
    * entries past their expiry (TTL, or a flow entry's ``max_age``), and unreadable frames;
    * hot copies whose durable object is gone;
    * leftovers of interrupted writes untouched for ``debris_after`` seconds.

    ``dry_run`` reports what would go and removes nothing.
    """
    tracker = tracker or tracker_for(store)
    now = time.time() if now is None else now
    report = PurgeReport(dry_run=dry_run)
    for run_id, processes in tracker.runs().items():
        if tracker.is_abandoned(processes, stale_after=stale_after):
            log.info("purging abandoned run %s", run_id)
            report.add(tracker.entries_of(run_id) if dry_run
                       else tracker.purge(run_id, reason="abandoned"))
    durable_names = set()
    for name, header in list(store.headers()):
        _advance(progress)
        if header is None or header.expired(now):
            if dry_run or store.delete_name(name,
                                            reason="expired" if header else "unreadable"):
                report.entries += 1
                report.bytes += header.size if header else 0
                report.names.append(key_of(name))
            continue
        durable_names.add(name)
    for tier in store.hot:
        for name in _hot_names(store, tier):
            if name not in durable_names:
                report.hot_copies += _remove(tier, name, dry_run)
    report.debris += _sweep_debris(store, debris_after, dry_run)
    return report


def clear(store: TieredStore, *, flow: str | None = None, older_than: float | None = None,
          now: float | None = None, dry_run: bool = False,
          progress: Progress | None = None) -> PurgeReport:
    """Remove entries (all, or those of one flow, or older than ``older_than`` seconds);
    clearing all also removes run records and every temporary file. ``dry_run`` reports
    what would go and removes nothing."""
    now = time.time() if now is None else now
    report = PurgeReport(dry_run=dry_run)
    everything = flow is None and older_than is None
    kept = set()
    for name, header in list(store.headers()):
        _advance(progress)
        if header is not None and not everything:
            if flow is not None and header.meta.get("flow") != flow:
                kept.add(name)
                continue
            if older_than is not None and header.created > now - older_than:
                kept.add(name)
                continue
        if dry_run or store.delete_name(name, reason="cleared"):
            report.entries += 1
            report.bytes += header.size if header else 0
            report.names.append(key_of(name))
    if everything:
        for name in list(store.durable.scan(runs_prefix(store.namespace))):
            if not dry_run:
                store.durable.delete(name)
        for tier in store.hot:
            for name in _hot_names(store, tier):
                if name not in kept:
                    report.hot_copies += _remove(tier, name, dry_run)
        report.debris += _sweep_debris(store, 0.0, dry_run)
    return report


def _advance(progress: Progress | None) -> None:
    if progress is not None:
        progress(1)


def _remove(tier: Tier, name: str, dry_run: bool) -> int:
    if dry_run:
        return 1
    try:
        return int(bool(tier.delete(name)))
    except Exception as exc:
        log.warning("could not remove %s from %s: %s", name, tier.describe(), exc)
        return 0


def _sweep_debris(store: TieredStore, older_than: float, dry_run: bool) -> int:
    if dry_run:
        return 0  # what a writer may still be finishing is not listed in advance
    removed = 0
    for tier in store.tiers:
        try:
            removed += tier.sweep_debris(store.namespace, older_than)
        except Exception as exc:
            log.warning("could not sweep the leftovers in %s: %s", tier.describe(), exc)
    return removed


def _hot_names(store: TieredStore, tier: Tier) -> Iterator[str]:
    try:
        for name in tier.scan(f"{store.namespace}/"):
            if f"/{RUNS}/" not in name:
                yield name
    except Exception as exc:
        log.warning("cannot list %s: %s", tier.describe(), exc)
