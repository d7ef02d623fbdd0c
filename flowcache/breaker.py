"""A per-tier circuit breaker: a hot tier that fails is skipped for a growing while.

The durable tier alone keeps the store correct, so a hot tier that cannot be reached (a dead
Redis, a full node disk) must cost one warning per outage, not a timeout per read. The store
keeps one breaker per hot tier and sends every call to that tier through :meth:`call`:

* while the tier backs off the call is skipped (counted ``skipped``);
* a :class:`~flowcache.errors.TierUnavailable` opens the breaker: the tier is skipped until
  ``retry_at`` (exponential backoff from ``base`` to ``cap`` seconds); then one call, and one
  only, is let through as a trial (half-open: the other threads keep skipping meanwhile),
  and a success closes the breaker and logs that the tier is back; a failed trial backs off
  longer;
* any other error (:class:`~flowcache.errors.TierRefused` or another: the tier refused this
  one operation, being full, busy or out of connections) fails only that call, with one
  warning per kind of error: the tier answered, so it is not an outage.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from flowcache.errors import TierUnavailable
from flowcache.listeners import StoreCounters
from flowcache.tiers.base import Tier

log = logging.getLogger("flowcache.store")
T = TypeVar("T")


class TierBreaker:
    """Per-tier circuit breaker: skip a failing hot tier for a growing while, warn once."""

    def __init__(self, tier: Tier, *, base: float, cap: float, clock: Callable[[], float],
                 counters: StoreCounters | None = None) -> None:
        self.tier = tier
        self.base = base
        self.cap = cap
        self.clock = clock
        self.counters = counters or StoreCounters()
        self.failures = 0
        self.retry_at = 0.0
        self._trial = False  # a call is testing the tier after a backoff
        self._lock = threading.Lock()
        self._warned: set[type] = set()

    def available(self) -> bool:
        """Whether a call may go to the tier now (after a backoff: the one trial call)."""
        if self.failures == 0:
            return True
        with self._lock:
            if self._trial or self.clock() < self.retry_at:
                return False
            self._trial = True
            return True

    def call(self, action: str, operation: Callable[[], T]) -> tuple[bool, T | None]:
        """``(True, result)`` of ``operation()``, or ``(False, None)`` when the tier was
        skipped or failed; never raises what the tier raised."""
        if not self.available():
            self.counters.add(self.tier.name, skipped=1)
            return False, None
        try:
            result = operation()
        except TierUnavailable as exc:
            self.counters.add(self.tier.name, errors=1)
            self.failed(exc)
            return False, None
        except Exception as exc:
            self.counters.add(self.tier.name, errors=1)
            self._warn_once(exc, action)
            self.succeeded()  # it answered: up, though this operation was refused
            return False, None
        self.succeeded()
        return True, result

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            self._trial = False
            self.failures += 1
            delay = min(self.cap, self.base * 2 ** (self.failures - 1))
            self.retry_at = self.clock() + delay
            first = self.failures == 1
        if first:
            log.warning("%s is unavailable (%s); carrying on with the durable tier and "
                        "retrying with backoff", self.tier.describe(), exc)

    def succeeded(self) -> None:
        if self.failures:
            with self._lock:
                outage, self.failures, self._trial = self.failures, 0, False
            if outage:
                log.warning("%s is back after %d failed attempts", self.tier.describe(),
                            outage)

    def _warn_once(self, exc: BaseException, action: str) -> None:
        if type(exc) not in self._warned:
            self._warned.add(type(exc))
            log.warning("%s failed on %s (%s: %s); the durable tier still serves",
                        self.tier.describe(), action, type(exc).__name__, exc)

