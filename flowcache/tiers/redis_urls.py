"""Redis URLs: how a store spec names a Redis (one server or a cluster) and the client it gets.

::

    redis://[user:pass@]host:port/db           one server (rediss:// for TLS)
    unix:///path/to/redis.sock                  one server on a socket
    redis+cluster://[user:pass@]h1:p1,h2:p2     a Redis Cluster, through any of its seed nodes

A cluster lists several seed nodes so that a client starting while one of them is down still
finds the cluster; any one reachable seed is enough, the client learns the rest (``CLUSTER
SLOTS``), but only once it is first used (:class:`LazyCluster`): a cluster that is down
when a store is built is an outage of the hot tier, as a single server's would be, not a
failure to build. A cluster has only database 0. Every mistake in the spelling is a
:class:`~flowcache.errors.ConfigError` naming the part that is wrong and a correct example,
checked before any connection is made.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from flowcache.errors import ConfigError

CLUSTER_SCHEME = "redis+cluster"
SCHEMES = ("redis", "rediss", "unix", CLUSTER_SCHEME)
EXAMPLE = "redis://127.0.0.1:6379/0"
CLUSTER_EXAMPLE = "redis+cluster://10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000"


def check_redis_url(url: str) -> str:
    """``url`` if redis-py can use it as written; a :class:`ConfigError` naming the part that
    is wrong (a port that is not a number, a database that is not one) otherwise."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise ConfigError(f"{url!r} is not a Redis URL: write e.g. {EXAMPLE} (or "
                          f"{CLUSTER_EXAMPLE} for a cluster)")
    if scheme == CLUSTER_SCHEME:
        cluster_seeds(url)
        return url
    parts = urlsplit(url)
    if scheme == "unix":
        if not parts.path:
            raise ConfigError(f"{url!r} names no socket: write unix:///path/to/redis.sock")
        return url
    if "," in parts.netloc:
        raise ConfigError(f"{url!r} lists several hosts: only a cluster has seed nodes; "
                          f"write {CLUSTER_EXAMPLE}")
    if not parts.hostname:
        raise ConfigError(f"{url!r} names no host: write e.g. {EXAMPLE}")
    _port_of(parts, url, EXAMPLE)
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ConfigError(f"{url!r}: the database {db!r} is not a number: write e.g. "
                          f"{EXAMPLE}")
    return url


def cluster_seeds(url: str) -> list[tuple[str, int]]:
    """The ``(host, port)`` seed nodes of a ``redis+cluster://`` URL (port 6379 if omitted)."""
    base = url.partition("?")[0]
    rest = base.split("://", 1)[1] if "://" in base else base
    netloc, _, path = rest.partition("/")
    hosts = netloc.rpartition("@")[2]
    if path.strip("/") not in ("", "0"):
        raise ConfigError(f"{url!r}: a Redis Cluster has only database 0, not "
                          f"{path.strip('/')!r}: write e.g. {CLUSTER_EXAMPLE}")
    if not hosts:
        raise ConfigError(f"{url!r} names no seed node: write e.g. {CLUSTER_EXAMPLE}")
    seeds = []
    for text in hosts.split(","):
        if not text.strip():
            raise ConfigError(f"{url!r} has an empty seed node (two commas, or one at an "
                              f"end): write e.g. {CLUSTER_EXAMPLE}")
        parts = urlsplit(f"//{text.strip()}")
        if not parts.hostname:
            raise ConfigError(f"{url!r}: seed node {text!r} names no host: write e.g. "
                              f"{CLUSTER_EXAMPLE}")
        seeds.append((parts.hostname, _port_of(parts, url, CLUSTER_EXAMPLE) or 6379))
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{url!r} lists a seed node twice: write e.g. {CLUSTER_EXAMPLE}")
    return seeds


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() == CLUSTER_SCHEME if "://" in url else False


def connect(url: str, *, max_connections: int = 64, pool_timeout: float = 5.0,
            **client_options: Any) -> Any:
    """A redis-py client for ``url``: ``redis.Redis`` over a blocking pool of
    ``max_connections`` (waiting ``pool_timeout`` for one), or a ``RedisCluster`` seeded
    with every node the URL lists (``max_connections`` per node). ``client_options`` go to
    redis-py as they are (timeouts, ``retry``).

    The cluster client is a :class:`LazyCluster`: it contacts its seeds to learn the slots
    when first used, and if none answers then, the error is redis-py's (the caller decides
    whether that is an outage).
    """
    import redis

    check_redis_url(url.partition("?")[0])
    if not is_cluster_url(url):
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=pool_timeout, **client_options)
        return redis.Redis(connection_pool=pool)
    from redis.cluster import ClusterNode, RedisCluster

    base, _, query = url.partition("?")
    netloc = base.split("://", 1)[1].partition("/")[0]
    userinfo = netloc.rpartition("@")[0]
    seeds = cluster_seeds(url)
    (host, port), *others = seeds
    first = f"redis://{userinfo + '@' if userinfo else ''}{_bracket(host)}:{port}/0"

    def make() -> Any:
        return RedisCluster.from_url(first + (f"?{query}" if query else ""),
                                     startup_nodes=[ClusterNode(h, p) for h, p in others],
                                     max_connections=max_connections, **client_options)

    return LazyCluster(make, seeds)


class LazyCluster:
    """A redis-py ``RedisCluster`` that is made when first used, not when a store is built.

    ``RedisCluster`` asks its seeds for the slot map in its constructor and raises if none
    answers. Made eagerly, a cluster that is down while a store is built (a worker starting
    during a Redis maintenance) would fail the build and every task with it, where a
    single server's client connects only when used and its outage costs nothing but the hot
    tier. So every attribute here is the cluster client's, made once, under a lock, the
    first time one is asked for; until a seed answers each use tries again and raises
    redis-py's own error, which the Redis tier reports as an outage: the store's breaker
    skips Redis, backs off, and its next trial makes the client once the cluster is back.
    """

    def __init__(self, make: Callable[[], Any], seeds: list[tuple[str, int]]) -> None:
        #: the ``(host, port)`` seed nodes, known without asking the cluster anything
        self.seeds = seeds
        self._make = make
        self._client: Any = None
        self._lock = threading.Lock()

    def cluster(self) -> Any:
        """The ``RedisCluster``, made now if it was not yet (redis-py's error if no seed
        answers)."""
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make()
                client = self._client
        return client

    @property
    def connected(self) -> bool:
        """Whether the cluster client has been made (a seed answered once)."""
        return self._client is not None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # copy/pickle probes and half-built instances: no connecting
            raise AttributeError(name)
        return getattr(self.cluster(), name)

    def close(self) -> None:
        """Close the cluster client if it was made (a later use makes a new one)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def __enter__(self) -> LazyCluster:  # special methods skip __getattr__: spelled out
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        seeds = ",".join(f"{_bracket(host)}:{port}" for host, port in self.seeds)
        return f"<LazyCluster {seeds} {'connected' if self.connected else 'not connected'}>"


def _port_of(parts: Any, url: str, example: str) -> int | None:
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{url!r} has a port that is not a number (or not in 1-65535): "
                          f"write e.g. {example}") from None
    if port == 0:
        raise ConfigError(f"{url!r} has port 0: write e.g. {example}")
    return port


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host
