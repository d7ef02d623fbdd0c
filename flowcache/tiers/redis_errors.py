"""What went wrong with Redis, in the store's words: an outage or a refusal of one operation.

The store treats the two differently (:mod:`flowcache.breaker`): an outage
(:class:`TierUnavailable`) makes it skip Redis and retry with backoff, a refusal
(:class:`TierRefused`: out of memory, busy with a script, no permission, a value over
``proto-max-bulk-len``, every pooled connection in use) fails that one operation only. redis-py
does not say which is which, so this module decides, for the Redis tier and anything else that
talks to the tier's client.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

from flowcache.errors import TierRefused, TierUnavailable
from flowcache.tiers.redis_cluster import is_cluster


@functools.cache
def outage_errors() -> tuple[type[BaseException], ...]:
    """No answer; or (a cluster) no node serving the slot right now, as while a failed
    master's replica is being promoted, or no seed answering to give the slot map."""
    import redis

    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, ConnectionError,
            TimeoutError, redis.exceptions.ClusterDownError,
            redis.exceptions.RedisClusterException)


@functools.cache
def refusal_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.exceptions.ResponseError, redis.exceptions.DataError)


@contextlib.contextmanager
def translated(client: Any, describe: Callable[[], str]) -> Iterator[None]:
    """Raise what ``client`` raised inside as :class:`TierUnavailable` or
    :class:`TierRefused` (``describe()`` names the tier in the message).

    A dropped connection is ambiguous (Redis closes it on a too-large value), so before
    calling it an outage a fresh connection asks Redis for a PING.
    """
    try:
        yield
    except refusal_errors() as exc:
        raise TierRefused(f"{describe()} refused: {exc}") from exc
    except outage_errors() as exc:
        if pool_exhausted(exc):
            raise TierRefused(f"{describe()}: every pooled connection is in use ({exc}); "
                              "raise max_connections or pool_timeout") from exc
        if still_answers(client):
            raise TierRefused(f"{describe()} dropped the connection but answers: "
                              f"{exc}") from exc
        raise TierUnavailable(f"{describe()} is unreachable: {exc}") from exc


def still_answers(client: Any) -> bool:
    """PING over a new connection, waiting at most a second. A cluster client is not asked:
    its own failover logic has spoken (and it may have no connection to copy yet)."""
    if is_cluster(client):
        return False
    pool = getattr(client, "connection_pool", None)
    if pool is None:
        return False
    kwargs = {**pool.connection_kwargs, "socket_timeout": 1.0, "socket_connect_timeout": 1.0}
    connection = pool.connection_class(**kwargs)
    try:
        connection.connect()
        connection.send_command("PING")
        reply = connection.read_response()
        return (reply.decode() if isinstance(reply, bytes) else reply) == "PONG"
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            connection.disconnect()


def pool_exhausted(exc: BaseException) -> bool:
    """redis-py's "no connection available" (a blocking pool's wait ran out) or "too many
    connections": the caller's own concurrency, not the server, is the limit."""
    text = str(exc)
    return "No connection available" in text or "Too many connections" in text
