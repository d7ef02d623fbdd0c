"""What each user holds in a tier, from its listing: bounded walks for metrics and exporters.

A walk reads one listing (names and sizes together where the backend gives both) and sums the
entries of each namespace; it stops after ``limit`` entries, because a bucket may hold millions
and a scrape must stay cheap, and says so (``truncated``: the figures are then lower bounds).
Users become labels through :class:`BoundedLabels`, so their number stays bounded too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from flowcache.errors import ConfigError
from flowcache.identity import is_entry_name
from flowcache.tiers.base import Tier

log = logging.getLogger("flowcache.metrics")

OTHER = "_other"  # no valid user name starts with "_" (flowcache.identity.validate_user)


class BoundedLabels:
    """The first ``limit`` values keep their name; later ones become ``_other``."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ConfigError(f"user_limit={limit}: keep at least one user label, e.g. 64")
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        with self._lock:
            if len(self._seen) < self.limit:
                self._seen.add(value)
                return value
        return OTHER


@dataclass
class Usage:
    """What one walk of a tier's listing found: bytes and entries per user label."""

    bytes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    entries: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    truncated: bool = False  # the walk stopped at its limit: the figures are lower bounds
    finished: float = 0.0  # time.time() when it ended
    seconds: float = 0.0


def walk_usage(tier: Tier, labels: BoundedLabels, *, prefix: str = "",
               limit: int = 100_000) -> Usage:
    """Bytes and entries per user under ``prefix``, from one listing, stopping after
    ``limit`` entries (a bucket may hold millions: the figures are then lower bounds)."""
    started = time.perf_counter()
    usage = Usage()
    seen = 0
    for name, size in tier.scan_sizes(prefix):
        if not is_entry_name(name):
            continue  # run records, locks, bookkeeping files
        if seen >= limit:
            usage.truncated = True
            break
        seen += 1
        nbytes = size if size is not None else tier.size(name)
        user = labels(name.partition("/")[0])
        usage.entries[user] += 1
        usage.bytes[user] += nbytes or 0
    usage.finished = time.time()
    usage.seconds = time.perf_counter() - started
    return usage


class UsageWalker:
    """A tier's :class:`Usage`, walked again at most every ``interval`` seconds, in a thread
    of its own so that a scrape never waits on a long listing."""

    def __init__(self, tier: Tier, labels: BoundedLabels, *, prefix: str = "",
                 limit: int = 100_000, interval: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.tier, self.labels, self.prefix, self.limit = tier, labels, prefix, limit
        self.interval = interval
        self.clock = clock
        self.usage: Usage | None = None
        self.errors = 0
        self._due = 0.0
        self._running = threading.Lock()

    def current(self) -> Usage | None:
        """The last walk's figures (None before the first ends); starts a walk when due."""
        if self.clock() >= self._due and not self._running.locked():
            threading.Thread(target=self.refresh, name="flowcache-usage-walk",
                             daemon=True).start()
        return self.usage

    def refresh(self) -> Usage | None:
        """Walk now, in this thread (unless a walk is already running)."""
        if not self._running.acquire(blocking=False):
            return self.usage
        try:
            self._due = self.clock() + self.interval
            self.usage = walk_usage(self.tier, self.labels, prefix=self.prefix,
                                    limit=self.limit)
        except Exception as exc:
            self.errors += 1
            if self.errors == 1:
                log.warning("cannot list %s for its usage (%s: %s); its bytes per user are "
                            "not reported", self.tier.describe(), type(exc).__name__, exc)
        finally:
            self._running.release()
        return self.usage
