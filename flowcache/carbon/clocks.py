"""Clocks for deferred work: wall time, a hand-driven clock for tests, a compressed one for demos.

Whatever holds work until a planned time asks its clock two things: what time it is (UTC epoch
seconds, the time the carbon data speaks of) and to wait on a condition until a given time, or
until something else wakes it. Tests drive a :class:`ManualClock` (no sleeping to test a
three-hour deferral); demos run a :class:`CompressedClock` (an hour of grid time in a second).
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """The current time, UTC epoch seconds."""

    def wait(self, condition: threading.Condition, until: float | None) -> None:
        """Wait on ``condition`` (held by the caller) until ``until`` or a notify."""


def start_clock(clock: Clock) -> None:
    """Tell ``clock`` a run begins (a :class:`CompressedClock` starts from its origin then);
    clocks without a ``start`` need nothing."""
    start = getattr(clock, "start", None)
    if start is not None:
        start()


class WallClock:
    """The real time."""

    def now(self) -> float:
        return time.time()

    def wait(self, condition: threading.Condition, until: float | None) -> None:
        condition.wait(None if until is None else max(0.0, until - self.now()))


class CompressedClock:
    """Time that starts at ``origin`` and runs ``speed`` times faster than the wall clock.

    ``CompressedClock(origin=to_epoch("2022-06-01"), speed=3600)``: one second of waiting is
    one hour of grid time, so a demo shows real deferral in seconds against shipped 2022 data.

    It stands still at ``origin`` until :meth:`start`, which the carbon-aware runner and placer
    call when a run begins: time spent before (Prefect starting its API can take half a minute)
    would otherwise be hours of grid time gone before the first plan.
    """

    def __init__(self, origin: float, speed: float = 3600.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.origin = origin
        self.speed = speed
        self._started: float | None = None

    @property
    def started(self) -> bool:
        return self._started is not None

    def start(self) -> None:
        """Start running from ``origin`` (once: later calls keep the time running)."""
        if self._started is None:
            self._started = time.monotonic()

    def now(self) -> float:
        if self._started is None:
            return self.origin
        return self.origin + (time.monotonic() - self._started) * self.speed

    def wait(self, condition: threading.Condition, until: float | None) -> None:
        if until is None:
            condition.wait()
        else:
            condition.wait(max(0.0, until - self.now()) / self.speed)


class ManualClock:
    """Time that moves only when told to; waiters wake when it passes their deadline."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self._conditions: set[threading.Condition] = set()

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self.set(self._now + seconds)

    def set(self, when: float) -> None:
        with self._lock:
            self._now = when
            conditions = list(self._conditions)
        for condition in conditions:
            with condition:
                condition.notify_all()

    def wait(self, condition: threading.Condition, until: float | None) -> None:
        with self._lock:
            self._conditions.add(condition)
        if until is None or until > self._now:
            condition.wait(1.0)  # woken by advance(); the timeout only guards against misuse
