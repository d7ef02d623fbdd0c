"""Redis URLs: how a store spec names a Redis (one server or a cluster) and the client it gets.

::

    redis://[user:pass@]host:port/db           one server (rediss:// for TLS)
    unix:///path/to/redis.sock                  one server on a socket
    redis+cluster://[user:pass@]h1:p1,h2:p2     a Redis Cluster, through any of its seed nodes

A cluster lists several seed nodes so that a client starting while one of them is down still
finds the cluster; any one reachable seed is enough, the client learns the rest (``CLUSTER
SLOTS``). A cluster has only database 0. Every mistake in the spelling is a
:class:`~flowcache.errors.ConfigError` naming the part that is wrong and a correct example,
checked before any connection is made.
"""

from __future__ import annotations

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

    A cluster client contacts its seeds at once to learn the slots; if none answers, the
    error is redis-py's (the caller decides whether that is an outage).
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
    (host, port), *others = cluster_seeds(url)
    first = f"redis://{userinfo + '@' if userinfo else ''}{_bracket(host)}:{port}/0"
    return RedisCluster.from_url(first + (f"?{query}" if query else ""),
                                 startup_nodes=[ClusterNode(h, p) for h, p in others],
                                 max_connections=max_connections, **client_options)


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
