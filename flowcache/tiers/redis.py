"""The Redis tier: a shared hot tier over redis-py (a single server or a ``RedisCluster``).

Small frames are one Redis string. A large frame is stored as its parts (the payload in one
string up to ``part_bytes``) plus a small manifest under the entry's own key, written last, so a
reader sees either a complete entry or none; a part evicted under ``maxmemory`` makes the entry a
miss. Keeping the payload as its own string lets a read hand back the exact ``bytes`` redis-py
received, with no copy to cut it out of a larger buffer.

Every key of an entry shares one hash tag (``flowcache:{alice/ab/ab12..}:1``), so in a cluster
all of them live in one slot, and a tenant's ACL pattern ``flowcache:{alice/*`` covers them.
Connection failures surface as :class:`TierUnavailable`; the store decides what to do with them.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator
from typing import Any

from flowcache.entry import MAGIC, Frame
from flowcache.errors import TierUnavailable
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

    def __init__(self, client: Any, *, prefix: str = "flowcache:",
                 max_item_bytes: int | None = 64 << 20, inline_bytes: int = 1 << 20,
                 part_bytes: int = 256 << 20) -> None:
        self.client = client
        self.prefix = prefix
        self.max_item_bytes = max_item_bytes
        self.inline_bytes = inline_bytes
        self.part_bytes = part_bytes
        self._unavailable = _redis_errors()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisTier:
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
            if frame.nbytes <= self.inline_bytes:
                done = self.client.set(key, frame.join(), px=px, nx=exclusive or None)
                if exclusive and not done:
                    raise FileExistsError(name)
                return
            parts = self._split(frame)
            pipe = self.client.pipeline(transaction=False)
            for index, part in enumerate(parts):
                pipe.set(f"{key}:{index}", part, px=px)
            manifest = _MANIFEST + _PART_COUNT.pack(len(parts)) + b"".join(
                _PART_SIZE.pack(memoryview(part).nbytes) for part in parts)
            pipe.set(key, manifest, px=px, nx=exclusive or None)
            results = pipe.execute()
        if exclusive and not results[-1]:
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
            return bool(self.client.delete(*keys))

    def scan(self, prefix: str = "") -> Iterator[str]:
        pattern = f"{_glob_escape(self.prefix)}{{{_glob_escape(prefix)}*"
        start = len(self.prefix) + 1
        with self._translate():
            keys = list(self.client.scan_iter(match=pattern, count=1000))
        for raw in keys:
            key = raw.decode() if isinstance(raw, bytes) else raw
            if key.endswith("}"):  # part keys end with "}:N"
                yield key[start:-1]

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


def _part_sizes(manifest: bytes) -> list[int]:
    if manifest[:4] != _MANIFEST:
        return []
    count = _PART_COUNT.unpack_from(manifest, 4)[0]
    start = 4 + _PART_COUNT.size
    return [_PART_SIZE.unpack_from(manifest, start + i * _PART_SIZE.size)[0]
            for i in range(count)]


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
