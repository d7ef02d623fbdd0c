"""Holding work until its planned time: one timer thread per scheduler, never a worker.

A carbon-aware runner that defers a task must not park it in a worker thread or process that
sleeps for hours: the worker would be lost to other work, and a cancelled flow would have to
interrupt a sleep. Instead a deferred submission is an entry in a heap; one thread waits (on
the scheduler's :class:`~flowcache.carbon.clocks.Clock`) for the earliest entry's time and then
calls its release function, which submits the real work. Cancelling a pending entry removes it;
it never ran.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from flowcache.carbon.clocks import Clock, WallClock

log = logging.getLogger("flowcache.carbon.deferral")


@dataclass(order=True)
class Pending:
    """A release waiting for its time. ``cancel()`` it to drop it."""

    at: float
    seq: int
    release: Callable[[], None] = field(compare=False)
    on_cancel: Callable[[], None] | None = field(default=None, compare=False)
    label: str = field(default="", compare=False)
    state: str = field(default="pending", compare=False)  # pending | released | cancelled


class ReleaseScheduler:
    """Calls each release function at (or just after) its time, from a single thread."""

    def __init__(self, clock: Clock | None = None, *, name: str = "flowcache-release") -> None:
        self.clock = clock or WallClock()
        self._heap: list[Pending] = []
        self._condition = threading.Condition()
        self._seq = itertools.count()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def at(self, when: float, release: Callable[[], None], *,
           on_cancel: Callable[[], None] | None = None, label: str = "") -> Pending:
        """Schedule ``release()`` at ``when`` (clock time); returns a handle to cancel it."""
        entry = Pending(when, next(self._seq), release, on_cancel, label)
        with self._condition:
            if self._stopping:
                raise RuntimeError("the release scheduler is stopped")
            heapq.heappush(self._heap, entry)
            self._condition.notify_all()
        return entry

    def cancel(self, entry: Pending) -> bool:
        """Drop a pending release; False if it was already released or cancelled."""
        with self._condition:
            if entry.state != "pending":
                return False
            entry.state = "cancelled"
            self._condition.notify_all()
        self._cancelled(entry)
        return True

    def cancel_all(self) -> int:
        with self._condition:
            pending = [e for e in self._heap if e.state == "pending"]
            for entry in pending:
                entry.state = "cancelled"
            self._heap.clear()
            self._condition.notify_all()
        for entry in pending:
            self._cancelled(entry)
        return len(pending)

    @property
    def pending(self) -> int:
        with self._condition:
            return sum(1 for e in self._heap if e.state == "pending")

    def stop(self) -> int:
        """Cancel what is still pending and end the thread; returns how many were cancelled."""
        cancelled = self.cancel_all()
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        self._thread.join(timeout=5)
        return cancelled

    def _run(self) -> None:
        while True:
            with self._condition:
                while True:
                    if self._stopping:
                        return
                    while self._heap and self._heap[0].state != "pending":
                        heapq.heappop(self._heap)
                    if self._heap and self._heap[0].at <= self.clock.now():
                        entry = heapq.heappop(self._heap)
                        entry.state = "released"
                        break
                    self.clock.wait(self._condition, self._heap[0].at if self._heap else None)
            try:
                entry.release()
            except Exception:
                log.exception("releasing %s failed", entry.label or "deferred work")

    @staticmethod
    def _cancelled(entry: Pending) -> None:
        if entry.on_cancel is not None:
            try:
                entry.on_cancel()
            except Exception:
                log.exception("cancelling %s failed", entry.label or "deferred work")
