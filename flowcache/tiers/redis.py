"""The Redis tier: a shared hot tier over redis-py (a single server or a ``RedisCluster``).

Small frames are one Redis string. A large frame is stored as its parts (the payload in one
string up to ``part_bytes``) plus a small manifest under the entry's own key, written last, so a
reader sees either a complete entry or none; a part evicted under ``maxmemory`` makes the entry a
miss. Keeping the payload as its own string lets a read hand back the exact ``bytes`` redis-py
received, with no copy to cut it out of a larger buffer.

Every key of an entry shares one hash tag (``flowcache:{alice/ab/ab12..}:1``), so in a cluster
all of them live in one slot, and a tenant's ACL pattern ``flowcache:{alice/*`` covers them.
Connection failures surface as :class:`TierUnavailable`, refusals of one operation as
:class:`TierRefused` (:mod:`flowcache.tiers.redis_errors`); the store decides what to do.

**Tenants** (``index=True``): Redis ACLs cannot filter what ``SCAN``/``KEYS`` return, so a tenant
is denied both, and the tier keeps a set of the names of each namespace instead
(``flowcache:index:{alice}``, written in the same pipeline as the entry). Listing reads that set
and drops the names whose entry Redis has since evicted or expired. Only listings (``gc``,
operator tools) use it; reads and writes never need it.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from flowcache.frames import MAGIC, Frame
from flowcache.tiers.base import BaseTier
from flowcache.tiers.redis_cluster import is_cluster, node_clients, seed_names
from flowcache.tiers.redis_errors import translated
from flowcache.tiers.redis_urls import check_redis_url, connect
from flowcache.tiers.redis_watch import KeyspaceWatcher, entry_name

__all__ = ["KeyspaceWatcher", "RedisTier", "check_redis_url", "entry_name"]

_MANIFEST = b"FCRP"
_PART_COUNT = struct.Struct("<I")
_PART_SIZE = struct.Struct("<Q")


class RedisTier(BaseTier):
    name = "redis"
    durable = False
    trusted = False
    process_local = False
    url_options: ClassVar = {"max_item_bytes": "size", "inline_bytes": "size",
                             "part_bytes": "size", "prefix": "str", "index": "bool",
                             "socket_timeout": "duration", "socket_connect_timeout": "duration",
                             "max_connections": "int", "pool_timeout": "duration"}
    #: redis-py's own URL options, handed to it as they are
    url_passthrough: ClassVar = frozenset({
        "socket_keepalive", "retry_on_timeout", "health_check_interval", "socket_read_size",
        "client_name", "protocol", "ssl_check_hostname", "ssl_cert_reqs", "ssl_ca_certs",
        "ssl_ca_path", "ssl_certfile", "ssl_keyfile", "ssl_min_version"})

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

    @classmethod
    def from_url(cls, url: str, *, storage_options: Mapping[str, Mapping[str, Any]]
                 | None = None, **options: Any) -> RedisTier:
        """``redis://[user:pass@]host:port/db``, ``rediss://...``, ``unix:///path.sock`` or
        ``redis+cluster://[user:pass@]host:port,host:port`` (seed nodes of a cluster).

        Every call is bounded: connecting by ``socket_connect_timeout`` (default 1 s), each
        reply by ``socket_timeout`` (default 5 s; one quick retry re-opens a connection a
        restart closed), and waiting for one of the pool's ``max_connections`` (default 64:
        a thread pool of any size shares them) by ``pool_timeout`` (default 5 s).
        """
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        cls.check_url(url.partition("?")[0])
        client = connect(
            url, max_connections=options.pop("max_connections", 64),
            pool_timeout=options.pop("pool_timeout", 5.0),
            socket_connect_timeout=options.pop("socket_connect_timeout", 1.0),
            socket_timeout=options.pop("socket_timeout", 5.0),
            # one quick retry re-opens a pooled connection that a server restart closed (or,
            # in a cluster, follows a failover the client has just learned of); longer
            # outages are the store's business (it backs off and uses the durable tier)
            retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 1))
        return cls(client, **options)

    @classmethod
    def check_url(cls, url: str) -> None:
        check_redis_url(url)

    # -- primitives ---------------------------------------------------------------------------
    def get(self, name: str) -> Frame | None:
        key = self._key(name)
        with self._translate():
            value = self.client.get(key)
            if value is None:
                return None
            if value[:4] == MAGIC:
                return Frame((value,))
            count = _manifest_count(value)
            if count is None:
                return Frame((value,))  # not ours, or malformed: frame verification rejects it
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
            written = [key]
            if frame.nbytes <= self.inline_bytes:
                pipe.set(key, frame.join(), px=px, nx=exclusive or None)
            else:
                parts = self._split(frame)
                for index, part in enumerate(parts):
                    pipe.set(f"{key}:{index}", part, px=px)
                    written.append(f"{key}:{index}")
                manifest = _MANIFEST + _PART_COUNT.pack(len(parts)) + b"".join(
                    _PART_SIZE.pack(memoryview(part).nbytes) for part in parts)
                pipe.set(key, manifest, px=px, nx=exclusive or None)
            stored_at = len(pipe)
            if self.index:
                pipe.sadd(self.index_key(name), name)  # after the entry: never indexes less
            results = pipe.execute(raise_on_error=False)
            refused = [result for result in results if isinstance(result, Exception)]
            if refused:
                # a refused command (OOM under noeviction...) must not strand the parts that
                # were stored before it: nothing would ever read or remove them
                with contextlib.suppress(Exception):
                    self.client.delete(*written)
                raise refused[0]
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
            keys = [key] + [f"{key}:{index}" for index in range(_manifest_count(value) or 0)]
            if not self.index:
                return bool(self.client.delete(*keys))
            pipe = self.client.pipeline(transaction=False)
            for key in keys:  # one DEL each: a cluster's pipeline refuses a multi-key DEL
                pipe.delete(key)
            pipe.srem(self.index_key(name), name)
            return any(pipe.execute()[:len(keys)])

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

    def sweep_debris(self, namespace: str, older_than: float) -> int:
        """Parts whose entry (their manifest) is gone, idle for ``older_than`` seconds: what a
        writer killed between its parts and its manifest left. Needs a connection allowed to
        SCAN (a tenant's is not: then nothing is swept here, by design)."""
        if self.index:
            return 0
        pattern = f"{_glob_escape(self.prefix)}{{{_glob_escape(namespace)}/*}}:*"
        removed = 0
        with self._translate():
            parts = [_text(raw) for raw in self.client.scan_iter(match=pattern, count=1000)]
            for part in parts:
                entry = part.rpartition(":")[0]
                if self.client.exists(entry):
                    continue
                idle = self.client.object("idletime", part)
                if idle is not None and idle >= older_than and self.client.delete(part):
                    removed += 1
        return removed

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

    def health(self) -> list[str]:
        """PING; and a warning when Redis's ``default`` user needs no password: any client
        can then connect as it and bypass the tenants' ACLs."""
        with self._translate():
            self.client.ping()
        try:  # ACLs are per node: in a cluster, every node's default user counts
            open_nodes = []
            for node, client in node_clients(self.client):
                flags = _acl_flags(client.execute_command("ACL", "GETUSER", "default"))
                if "on" in flags and "nopass" in flags:
                    open_nodes.append(node.name)
        except Exception as exc:  # a tenant may not run ACL: say what was not checked
            return [f"could not check Redis's default user ({type(exc).__name__}: {exc})"]
        if open_nodes:
            where = f" (on {', '.join(open_nodes)})" if is_cluster(self.client) else ""
            return [f"Redis's 'default' user is enabled without a password{where}: any "
                    "client can connect as it and read or delete every tenant's entries; "
                    "give it a password or turn it off (ACL SETUSER default off)"]
        return []

    def close(self) -> None:
        self.client.close()

    def describe(self) -> str:
        if is_cluster(self.client):  # the seeds it was given: asks nothing of the cluster
            return f"redis cluster {seed_names(self.client) or '?'} prefix={self.prefix!r}"
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

    def _translate(self) -> contextlib.AbstractContextManager[None]:
        """What went wrong, in the store's words (:func:`translated`): an outage or a
        refusal of this one operation."""
        return translated(self.client, self.describe)


def _acl_flags(reply: Any) -> set[str]:
    """The ``flags`` of an ``ACL GETUSER`` reply (a flat list or, with RESP3, a dict)."""
    items = reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2],
                                                            strict=False))
    flags = items.get("flags", items.get(b"flags", []))
    return {_text(flag) for flag in flags}


def _manifest_count(value: bytes) -> int | None:
    """How many parts a manifest lists; None if ``value`` is not a well-formed manifest (its
    length must match its count: a crafted count never makes us fetch billions of keys)."""
    if value[:4] != _MANIFEST or len(value) < 4 + _PART_COUNT.size:
        return None
    count = _PART_COUNT.unpack_from(value, 4)[0]
    if len(value) != 4 + _PART_COUNT.size + count * _PART_SIZE.size:
        return None
    return count


def _part_sizes(manifest: bytes) -> list[int]:
    count = _manifest_count(manifest)
    if count is None:
        return []
    start = 4 + _PART_COUNT.size
    return [_PART_SIZE.unpack_from(manifest, start + i * _PART_SIZE.size)[0]
            for i in range(count)]


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
