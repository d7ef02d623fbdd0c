"""A per-tier circuit breaker: a hot tier that fails is skipped for a growing while.

The durable tier alone keeps the store correct, so a hot tier that cannot be reached (a dead
Redis, a full node disk) must cost one warning per outage, not a timeout per read. The store
keeps one breaker per hot tier: after a failure the tier is skipped until ``retry_at``
(exponential backoff from ``base`` to ``cap`` seconds), then tried again; a success closes it
and logs that the tier is back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from flowcache.tiers.base import Tier

log = logging.getLogger("flowcache.store")


class TierBreaker:
    """Per-tier circuit breaker: skip a failing hot tier for a growing while, warn once."""

    def __init__(self, tier: Tier, base: float, cap: float,
                 clock: Callable[[], float]) -> None:
        self.tier = tier
        self.base = base
        self.cap = cap
        self.clock = clock
        self.failures = 0
        self.retry_at = 0.0
        self._lock = threading.Lock()

    def available(self) -> bool:
        return self.failures == 0 or self.clock() >= self.retry_at

    def failed(self, exc: BaseException) -> None:
        with self._lock:
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
                outage = self.failures
                self.failures = 0
            log.warning("%s is back after %d failed attempts", self.tier.describe(), outage)
