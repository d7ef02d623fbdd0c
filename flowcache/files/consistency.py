"""Consistency policies: when a cached file's version is checked against the remote object.

Every check is one metadata request (S3 ``HEAD``, GCS object GET, local ``stat``). The policy
trades that request against how long a changed remote file may go unnoticed:

* :data:`ALWAYS` (``"always"``, the default): check on every open. A reader never sees bytes
  of a version older than the one the remote held when the file was opened; costs one request
  per open (milliseconds to S3, microseconds locally).
* :class:`Every` (``30``, ``"5m"``): check at most once per interval in each process. Changes
  are noticed within the interval; opens in between cost no request.
* :data:`NEVER` (``"never"`` or ``"immutable"``): check only when nothing is known about the
  file yet, in this process or in the store (another process's record). For inputs that never
  change (dated partitions, released reference data); a replaced file is served stale until
  ``sweep_files`` or an explicit ``drop``.

Like cachetools' caches, each policy is a small class that overrides one method; the state they
consult (which version was seen when) is a :class:`VersionBook`, one per store in a process.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from flowcache.errors import ConfigError
from flowcache.units import parse_duration

if TYPE_CHECKING:
    from flowcache.files.versions import Version
    from flowcache.store import TieredStore


class Consistency:
    """Base policy: decides whether a version seen at ``checked_at`` must be checked again."""

    name = "consistency"
    #: whether a version recorded by another process may be trusted without any check
    trusts_records = False

    def due(self, checked_at: float, now: float) -> bool:
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name


class Always(Consistency):
    name = "always"

    def due(self, checked_at: float, now: float) -> bool:
        return True


@dataclass(frozen=True, repr=False)
class Every(Consistency):
    """At most one check per ``seconds`` per file in each process."""

    seconds: float

    def __post_init__(self) -> None:
        if self.seconds <= 0:
            raise ConfigError(f"a consistency interval must be positive, got {self.seconds}; "
                              "use 'always' to check on every open")

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"every {self.seconds:g}s"

    def due(self, checked_at: float, now: float) -> bool:
        return now - checked_at >= self.seconds


class Never(Consistency):
    name = "never"
    trusts_records = True

    def due(self, checked_at: float, now: float) -> bool:
        return False


ALWAYS = Always()
NEVER = Never()


def parse_consistency(value: Consistency | str | float | timedelta | None) -> Consistency:
    """The one place user spellings become policies: ``"always"``, ``"never"``/``"immutable"``,
    or an interval (``30``, ``"5m"``, a ``timedelta``)."""
    if isinstance(value, Consistency):
        return value
    if value is None:
        return ALWAYS
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "always":
            return ALWAYS
        if text in ("never", "immutable"):
            return NEVER
        try:
            return Every(parse_duration(value, "consistency"))
        except ConfigError:
            raise ConfigError(f"consistency={value!r} is neither 'always', 'never' nor an "
                              "interval: use e.g. consistency='30s', '5min' or 300") from None
    if isinstance(value, bool):
        raise ConfigError("consistency takes 'always', 'never' or an interval, not a bool")
    return Every(parse_duration(value, "consistency"))


@dataclass(frozen=True)
class Seen:
    version: Version
    checked_at: float


class VersionBook:
    """Which version of each URL this process saw, and when it last checked (thread-safe)."""

    def __init__(self) -> None:
        self._seen: dict[str, Seen] = {}
        self._lock = threading.Lock()

    def get(self, url: str) -> Seen | None:
        with self._lock:
            return self._seen.get(url)

    def put(self, version: Version, checked_at: float) -> None:
        with self._lock:
            self._seen[version.url] = Seen(version, checked_at)

    def forget(self, url: str) -> None:
        with self._lock:
            self._seen.pop(url, None)


_BOOKS: weakref.WeakKeyDictionary[TieredStore, VersionBook] = weakref.WeakKeyDictionary()
_BOOKS_LOCK = threading.Lock()


def book_for(store: TieredStore) -> VersionBook:
    """The version book of ``store`` in this process (shared by all its filesystems)."""
    with _BOOKS_LOCK:
        book = _BOOKS.get(store)
        if book is None:
            book = _BOOKS[store] = VersionBook()
        return book
