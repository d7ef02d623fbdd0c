"""What Redis drops silently, into the ledger: evictions and expiries as they happen.

Redis evicts under ``maxmemory`` and expires TTLs without telling any client; its keyspace
notifications are the only trace. :func:`watch_evictions` wires the Redis tier's
:class:`~flowcache.tiers.redis.KeyspaceWatcher` to a ledger (the ``flowcache ledger watch``
command runs one), so Redis residencies end when Redis ends them.
"""

from __future__ import annotations

from typing import Any

from flowcache.accounts.ledger import Ledger
from flowcache.identity import namespace_of
from flowcache.tiers.redis import KeyspaceWatcher


def watch_evictions(client: Any, ledger: Ledger, *, prefix: str = "flowcache:") -> KeyspaceWatcher:
    """A watcher ending Redis residencies in ``ledger`` as Redis evicts or expires them (call
    ``start()`` then ``run()``, or ``run_in_thread()``); ``client`` is an operator's connection
    allowed to subscribe to keyspace notifications."""

    def dropped(name: str, reason: str) -> None:
        ledger.removed(namespace_of(name), "redis", name, reason)

    return KeyspaceWatcher(client, dropped, prefix=prefix)
