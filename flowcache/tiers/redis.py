"""The Redis tier: a shared hot tier over redis-py (a single server or a ``RedisCluster``).

Small frames are one Redis string. A large frame is stored as its parts (the payload in one
string up to ``part_bytes``) plus a small manifest under the entry's own key, written last, so a
reader sees either a complete entry or none; a part evicted under ``maxmemory`` makes the entry a
miss. Keeping the payload as its own string lets a read hand back the exact ``bytes`` redis-py
received, with no copy to cut it out of a larger buffer.

Every key of an entry shares one hash tag (``flowcache:{alice/ab/ab12..}:1``), so in a cluster
all of them live in one slot, and a tenant's ACL pattern ``flowcache:{alice/*`` covers them.
Connection failures surface as :class:`TierUnavailable`; the store decides what to do with them.

**Tenants** (``index=True``): Redis ACLs cannot filter what ``SCAN``/``KEYS`` return, so a tenant
is denied both, and the tier keeps a set of the names of each namespace instead
(``flowcache:index:{alice}``, written in the same pipeline as the entry). Listing reads that set
and drops the names whose entry Redis has since evicted or expired. Only listings (``gc``,
operator tools) use it; reads and writes never need it.
"""

from __future__ import annotations

import contextlib
import secrets
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

from flowcache.errors import TierUnavailable
from flowcache.frames import MAGIC, Frame
from flowcache.tiers.base import BaseTier

_MANIFEST = b"FCRP"
_PART_COUNT = struct.Struct("<I")
_PART_SIZE = struct.Struct("<Q")


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, ConnectionError,
            TimeoutError)


class RedisTier(BaseTier):
    name = "redis"
    durable = False
    trusted = False
    process_local = False
    url_options: ClassVar = {"max_item_bytes": "size", "inline_bytes": "size",
                             "part_bytes": "size", "prefix": "str", "index": "bool"}

    def __init__(self, client: Any, *, prefix: str = "flowcache:",
                 max_item_bytes: int | None = 64 << 20, inline_bytes: int = 1 << 20,
                 part_bytes: int = 256 << 20, index: bool = False) -> None:
        self.client = client
        self.prefix = prefix
        self.max_item_bytes = max_item_bytes
        self.inline_bytes = inline_bytes
        self.part_bytes = part_bytes
        #: keep a per-namespace set of names and list from it (tenants may not SCAN)
        self.index = index
        self._unavailable = _redis_errors()

    @classmethod
    def from_url(cls, url: str, *, storage_options: Mapping[str, Mapping[str, Any]]
                 | None = None, **options: Any) -> RedisTier:
        """``redis://[user:pass@]host:port/db`` or ``redis+cluster://host:port``."""
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        client_options = {
            "socket_connect_timeout": options.pop("socket_connect_timeout", 1.0),
            "socket_timeout": options.pop("socket_timeout", 10.0),
            # one quick retry re-opens a pooled connection that a server restart closed;
            # longer outages are the store's business (it backs off and uses the durable tier)
            "retry": Retry(ExponentialBackoff(cap=0.05, base=0.01), 1),
        }
        if url.startswith("redis+cluster://"):
            from redis.cluster import RedisCluster

            client = RedisCluster.from_url("redis://" + url[len("redis+cluster://"):],
                                           **client_options)
        else:
            client = redis.Redis.from_url(url, **client_options)
        return cls(client, **options)

    # -- primitives ---------------------------------------------------------------------------
    def get(self, name: str) -> Frame | None:
        key = self._key(name)
        with self._translate():
            value = self.client.get(key)
            if value is None:
                return None
            if value[:4] == MAGIC:
                return Frame((value,))
            if value[:4] != _MANIFEST:
                return Frame((value,))  # not ours: let frame verification reject it
            count = _PART_COUNT.unpack_from(value, 4)[0]
            pipe = self.client.pipeline(transaction=False)
            for index in range(count):
                pipe.get(f"{key}:{index}")
            parts = pipe.execute()
        if any(part is None for part in parts):
            self.delete(name)  # a part was evicted: the entry is incomplete
            return None
        return Frame(parts)

    def put(self, name: str, frame: Frame, *, ttl: float | None = None,
            exclusive: bool = False) -> None:
        key = self._key(name)
        px = max(1, int(ttl * 1000)) if ttl is not None else None
        with self._translate():
            if frame.nbytes <= self.inline_bytes and not self.index:
                done = self.client.set(key, frame.join(), px=px, nx=exclusive or None)
                if exclusive and not done:
                    raise FileExistsError(name)
                return
            pipe = self.client.pipeline(transaction=False)
            if frame.nbytes <= self.inline_bytes:
                pipe.set(key, frame.join(), px=px, nx=exclusive or None)
            else:
                parts = self._split(frame)
                for index, part in enumerate(parts):
                    pipe.set(f"{key}:{index}", part, px=px)
                manifest = _MANIFEST + _PART_COUNT.pack(len(parts)) + b"".join(
                    _PART_SIZE.pack(memoryview(part).nbytes) for part in parts)
                pipe.set(key, manifest, px=px, nx=exclusive or None)
            stored_at = len(pipe)
            if self.index:
                pipe.sadd(self.index_key(name), name)  # after the entry: never indexes less
            results = pipe.execute()
        if exclusive and not results[stored_at - 1]:
            raise FileExistsError(name)

    def exists(self, name: str) -> bool:
        with self._translate():
            return bool(self.client.exists(self._key(name)))

    def delete(self, name: str) -> bool:
        key = self._key(name)
        with self._translate():
            value = self.client.get(key)
            if value is None:
                return False
            keys = [key]
            if value[:4] == _MANIFEST:
                count = _PART_COUNT.unpack_from(value, 4)[0]
                keys += [f"{key}:{index}" for index in range(count)]
            if not self.index:
                return bool(self.client.delete(*keys))
            pipe = self.client.pipeline(transaction=False)
            pipe.delete(*keys)
            pipe.srem(self.index_key(name), name)
            return bool(pipe.execute()[0])

    def scan(self, prefix: str = "") -> Iterator[str]:
        if self.index:
            yield from self._scan_index(prefix)
            return
        pattern = f"{_glob_escape(self.prefix)}{{{_glob_escape(prefix)}*"
        start = len(self.prefix) + 1
        with self._translate():
            try:
                keys = list(self.client.scan_iter(match=pattern, count=1000))
            except Exception as exc:
                if type(exc).__name__ != "NoPermissionError":
                    raise
                raise PermissionError(
                    f"this Redis user may not SCAN ({exc}): it is a tenant's; add index=true "
                    "to its redis URL so that names are listed from the tenant's index") from None
        for raw in keys:
            key = raw.decode() if isinstance(raw, bytes) else raw
            if key.endswith("}"):  # part keys end with "}:N"
                yield key[start:-1]

    def _scan_index(self, prefix: str) -> Iterator[str]:
        """Names under ``prefix`` from its namespace's index, dropping those Redis let go."""
        namespace, slash, _ = prefix.partition("/")
        if not namespace or not slash:
            raise ValueError(f"a Redis tier with index=true lists one namespace at a time: "
                             f"scan('<namespace>/...'), not scan({prefix!r})")
        index = self.index_key(prefix)
        with self._translate():
            members = sorted(_text(raw) for raw in self.client.sscan_iter(
                index, match=f"{_glob_escape(prefix)}*", count=1000))
            for start in range(0, len(members), 500):
                batch = members[start:start + 500]
                pipe = self.client.pipeline(transaction=False)
                for name in batch:
                    pipe.exists(self._key(name))
                found = pipe.execute()
                gone = [name for name, present in zip(batch, found, strict=True) if not present]
                if gone:
                    self.client.srem(index, *gone)
                yield from (name for name, present in zip(batch, found, strict=True) if present)

    def index_key(self, name: str) -> str:
        """The set listing the names of ``name``'s namespace (its first path segment)."""
        return f"{self.prefix}index:{{{name.partition('/')[0]}}}"

    def purge_namespace(self, namespace: str) -> list[str]:
        """Delete every key of ``namespace`` (entries, parts, locks, index); return entry names.

        For operators (``flowcache clear --user``): needs a connection allowed to SCAN, and
        never reads a value, so it works without the namespace owner's signing key.
        """
        names: list[str] = []
        entry_start = len(self.prefix) + 1
        patterns = [f"{_glob_escape(self.prefix)}{{{_glob_escape(namespace)}/*",
                    f"{_glob_escape(self.prefix)}lock:{{{_glob_escape(namespace)}/*"]
        with self._translate():
            keys = [_text(raw) for pattern in patterns
                    for raw in self.client.scan_iter(match=pattern, count=1000)]
            keys.append(self.index_key(f"{namespace}/"))
            for key in keys:
                if key.startswith(f"{self.prefix}{{") and key.endswith("}"):
                    names.append(key[entry_start:-1])
            for start in range(0, len(keys), 500):
                pipe = self.client.pipeline(transaction=False)
                for key in keys[start:start + 500]:
                    pipe.unlink(key)
                pipe.execute()
        return sorted(names)

    def head(self, name: str, nbytes: int) -> bytes | None:
        key = self._key(name)
        with self._translate():
            value = self.client.getrange(key, 0, nbytes - 1)
            if not value or value[:4] != _MANIFEST:
                return value or None
            manifest = self.client.get(key) or b""
            pipe = self.client.pipeline(transaction=False)
            wanted = nbytes
            for index, size in enumerate(_part_sizes(manifest)):
                pipe.getrange(f"{key}:{index}", 0, min(size, wanted) - 1)
                wanted -= size
                if wanted <= 0:
                    break
            pieces = pipe.execute()
        return b"".join(pieces) or None

    def ttl(self, name: str) -> float | None:
        """Seconds left before Redis expires ``name`` (None: no expiry or no such key)."""
        with self._translate():
            left = self.client.pttl(self._key(name))
        return left / 1000 if left is not None and left >= 0 else None

    def close(self) -> None:
        self.client.close()

    def describe(self) -> str:
        kwargs = getattr(getattr(self.client, "connection_pool", None), "connection_kwargs", {})
        where = f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
        return f"redis {where} prefix={self.prefix!r}"

    # -- helpers ------------------------------------------------------------------------------
    def _key(self, name: str) -> str:
        return f"{self.prefix}{{{name}}}"

    def _split(self, frame: Frame) -> list[bytes | memoryview]:
        parts: list[bytes | memoryview] = []
        for part in frame.parts:
            view = memoryview(part)
            if view.nbytes <= self.part_bytes:
                parts.append(part)
                continue
            for start in range(0, view.nbytes, self.part_bytes):
                parts.append(view[start:start + self.part_bytes])
        return parts

    @contextlib.contextmanager
    def _translate(self) -> Iterator[None]:
        """Connection-level failures become TierUnavailable; other errors pass through."""
        try:
            yield
        except self._unavailable as exc:
            raise TierUnavailable(f"{self.describe()} is unreachable: {exc}") from exc


class KeyspaceWatcher:
    """Reports the entries Redis drops on its own: evictions under ``maxmemory``, expiries.

    Redis evicts silently; its keyspace notifications (``__keyevent@<db>__:evicted`` and
    ``...:expired``) are the only trace. This subscribes to both with an operator's connection
    (tenants may not subscribe: the channels carry every tenant's key names) and calls
    ``on_dropped(name, reason)`` for each entry or part key under ``prefix``. The server needs
    ``notify-keyspace-events`` with ``E``, ``e`` and ``x`` (:meth:`configure`). Pub/sub is
    fire-and-forget: what Redis drops while nobody listens is not reported here.
    """

    def __init__(self, client: Any, on_dropped: Callable[[str, str], None], *,
                 prefix: str = "flowcache:", db: int | None = None) -> None:
        self.client = client
        self.on_dropped = on_dropped
        self.prefix = prefix
        if db is None:
            kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
            db = int(kwargs.get("db", 0) or 0)
        self.channels = {f"__keyevent@{db}__:evicted": "evicted",
                         f"__keyevent@{db}__:expired": "expired"}
        self.control = f"{prefix}watch:{secrets.token_hex(8)}"
        self.reported = 0
        self._seen: str | None = None
        self._pubsub: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def configure(self) -> str:
        """Add ``E``, ``e`` and ``x`` to the server's ``notify-keyspace-events``."""
        current = self.client.config_get("notify-keyspace-events").get(
            "notify-keyspace-events", "")
        flags = set(_text(current)) | set("Eex")
        if "A" in flags:
            flags -= set("g$lshzxetdm")  # 'A' stands for all of these
        wanted = "".join(sorted(flags))
        self.client.config_set("notify-keyspace-events", wanted)
        return wanted

    def start(self) -> KeyspaceWatcher:
        """Subscribe: what Redis drops from now on is reported by :meth:`poll`/:meth:`run`."""
        self._pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(*self.channels, self.control)
        return self

    def poll(self, timeout: float = 1.0) -> bool:
        """Handle at most one message; False if none came within ``timeout`` seconds."""
        message = self._pubsub.get_message(timeout=timeout)
        if message is None:
            return False
        channel, data = _text(message.get("channel")), _text(message.get("data"))
        if channel == self.control:
            self._seen = data
            return True
        reason = self.channels.get(channel)
        name = entry_name(data, self.prefix)
        if reason is not None and name is not None:
            self.on_dropped(name, reason)
            self.reported += 1
        return True

    def sync(self, timeout: float = 30.0) -> None:
        """Report everything Redis dropped before now.

        Publishes a token on a control channel and reads until it comes back: Redis delivers
        a connection's messages in order, so every earlier notification has been handled.
        """
        token = secrets.token_hex(8)
        self.client.publish(self.control, token)
        deadline = time.monotonic() + timeout
        while self._seen != token:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no control message back from Redis within {timeout}s")
            self.poll(timeout=1.0)

    def run(self) -> None:
        """Report until :meth:`stop` (``flowcache ledger watch``)."""
        if self._pubsub is None:
            self.start()
        while not self._stop.is_set():
            self.poll(timeout=0.5)

    def run_in_thread(self) -> KeyspaceWatcher:
        if self._pubsub is None:
            self.start()
        self._thread = threading.Thread(target=self.run, name="flowcache-keyspace-watcher",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._pubsub is not None:
            self._pubsub.close()
            self._pubsub = None


def entry_name(key: str, prefix: str = "flowcache:") -> str | None:
    """``flowcache:{alice/ab/k}`` or its part ``...}:3`` -> ``alice/ab/k``; other keys: None."""
    if not key.startswith(prefix + "{"):
        return None
    body = key[len(prefix) + 1:]
    end = body.rfind("}")
    if end <= 0 or (end != len(body) - 1 and not body[end + 1:].startswith(":")):
        return None
    return body[:end]


def _part_sizes(manifest: bytes) -> list[int]:
    if manifest[:4] != _MANIFEST:
        return []
    count = _PART_COUNT.unpack_from(manifest, 4)[0]
    start = 4 + _PART_COUNT.size
    return [_PART_SIZE.unpack_from(manifest, start + i * _PART_SIZE.size)[0]
            for i in range(count)]


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
