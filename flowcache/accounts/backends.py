"""Where the ledger's events are kept: a SQLite file (the embedded default) or a Redis stream
per user (append-only for the tenant). One small protocol, two backends."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from flowcache.accounts.billing import EVENT_FIELDS, Event, event_from_fields
from flowcache.errors import LedgerRetry

log = logging.getLogger("flowcache.accounts.ledger")


class LedgerBackend(Protocol):
    def append(self, events: Sequence[Event]) -> None: ...

    def events(self, user: str, since: float | None = None) -> Iterator[Event]:
        """``user``'s events in arrival order (``seq`` set); with ``since``, at least those
        recorded at or after it (a hint to read less: earlier ones may come too)."""

    def users(self) -> list[str]: ...

    def close(self) -> None: ...


class SQLiteBackend:
    """One table in a SQLite file (WAL), shared by every process of the user on this host."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():  # never share one across a fork
            conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False,
                                   isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY "
                         f"AUTOINCREMENT, {', '.join(EVENT_FIELDS)})")
            conn.execute("CREATE INDEX IF NOT EXISTS events_user ON events (user, seq)")
            conn.execute("CREATE INDEX IF NOT EXISTS events_user_ts ON events (user, ts)")
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def append(self, events: Sequence[Event]) -> None:
        """One transaction per batch: all of it or none (a refused batch is retried whole, so
        a half-written one would be billed twice), and one commit instead of one per event."""
        marks = ", ".join("?" for _ in EVENT_FIELDS)
        rows = [tuple(event.fields().values()) for event in events]
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    f"INSERT INTO events ({', '.join(EVENT_FIELDS)}) VALUES ({marks})", rows)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def events(self, user: str, since: float | None = None) -> Iterator[Event]:
        query = f"SELECT seq, {', '.join(EVENT_FIELDS)} FROM events WHERE user = ?"
        arguments: tuple[Any, ...] = (user,)
        if since is not None:
            query, arguments = query + " AND ts >= ?", (user, since)
        with self._lock:
            rows = self._connection().execute(query + " ORDER BY seq", arguments).fetchall()
        for seq, *values in rows:
            yield event_from_fields(dict(zip(EVENT_FIELDS, values, strict=True)), seq)

    def users(self) -> list[str]:
        with self._lock:
            rows = self._connection().execute("SELECT DISTINCT user FROM events").fetchall()
        return sorted(row[0] for row in rows)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def describe(self) -> str:
        return f"sqlite {self.path}"


#: how far a writer's clock may be ahead of the Redis server's (``events(since=...)``)
CLOCK_SKEW = 300.0


class RedisBackend:
    """A stream per user, ``<prefix>ledger:{<user>}``: tenants may append and read, not trim.

    On a Redis Cluster the stream is one key in one slot (its hash tag is the user) and every
    command names one key, so nothing crosses slots: a batch of several users' events is a
    cluster pipeline redis-py splits by master, answering per event, which is what
    :meth:`append` sorts into dropped, retried and taken.
    """

    def __init__(self, client: Any, *, prefix: str = "flowcache:") -> None:
        self.client = client
        self.prefix = prefix

    def key(self, user: str) -> str:
        return f"{self.prefix}ledger:{{{user}}}"

    def append(self, events: Sequence[Event]) -> None:
        """Append. An event Redis refuses for good (``NOPERM``: another tenant's stream) is
        dropped, saying how many and why; one it refuses for now (out of memory, busy with
        a script) is kept for a retry (:class:`LedgerRetry` carries those), so nobody is
        undercharged by a transient refusal. Connection errors raise (all are retried)."""
        import redis

        pipe = self.client.pipeline(transaction=False)
        for event in events:
            pipe.xadd(self.key(event.user), {k: _wire(v) for k, v in event.fields().items()
                                             if v is not None and v != ""})
        retry, dropped = [], []
        for event, result in zip(events, pipe.execute(raise_on_error=False), strict=True):
            if isinstance(result, redis.exceptions.NoPermissionError):
                dropped.append((event, result))
            elif isinstance(result, Exception):
                retry.append((event, result))
        if dropped:
            log.warning("the ledger dropped %d events Redis refused for good (first: %s, "
                        "for user %s): this connection may not write those users' streams",
                        len(dropped), dropped[0][1], dropped[0][0].user)
        if retry:
            raise LedgerRetry([event for event, _ in retry],
                              f"Redis refused {len(retry)} events for now ({retry[0][1]})")

    def events(self, user: str, since: float | None = None) -> Iterator[Event]:
        # stream IDs are the Redis server's clock, events' ``ts`` the writers': allow for skew
        start = "-" if since is None else str(max(0, int((since - CLOCK_SKEW) * 1000)))
        seq = 0
        while True:
            batch = self.client.xrange(self.key(user), min=start, count=1000)
            for _stream_id, raw in batch:
                seq += 1
                yield event_from_fields({_text(k): _text(v) for k, v in raw.items()}, seq)
            if len(batch) < 1000:
                return
            start = "(" + _text(batch[-1][0])

    def users(self) -> list[str]:
        start = len(self.prefix) + len("ledger:{")
        keys = self.client.scan_iter(match=f"{self.prefix}ledger:{{*}}", count=1000)
        return sorted({_text(key)[start:-1] for key in keys})

    def close(self) -> None:
        return None  # the client belongs to whoever made it (usually the Redis tier)

    def describe(self) -> str:
        return f"redis stream {self.prefix}ledger:{{<user>}}"


def _wire(value: Any) -> str | int | float:
    return value if isinstance(value, (int, float)) else str(value)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
