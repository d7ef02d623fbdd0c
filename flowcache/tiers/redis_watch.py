"""What Redis drops on its own (evictions, expiries), reported from its keyspace notifications.

Split from :mod:`flowcache.tiers.redis`, which re-exports both names. Notifications are local to
one server: on a Redis Cluster each master publishes only its own keys' events (a ``PUBLISH``
travels to every node, a notification does not), so one connection would hear one master. The
watcher therefore subscribes on every primary, each on a connection of its own read by a thread
of its own, and looks at the topology again every ``refresh_every`` seconds and as soon as a
connection breaks: the replica a failover promotes is listened to from then on, and so is a
master added later. A single server is the same with one node.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from flowcache.tiers.redis_cluster import is_cluster, node_clients
from flowcache.tiers.redis_errors import outage_errors

log = logging.getLogger("flowcache.tiers.redis")


class KeyspaceWatcher:
    """Reports the entries Redis drops on its own: evictions under ``maxmemory``, expiries.

    Redis evicts silently; its keyspace notifications (``__keyevent@<db>__:evicted`` and
    ``...:expired``) are the only trace. This subscribes to both with an operator's connection
    (tenants may not subscribe: the channels carry every tenant's key names) and calls
    ``on_dropped(name, reason)`` for each entry or part key under ``prefix``. Every node needs
    ``notify-keyspace-events`` with ``E``, ``e`` and ``x`` (:meth:`configure`). Pub/sub is
    fire-and-forget: what Redis drops while nobody listens (a node's events between its
    promotion and the next look at the topology) is not reported here; the ledger's
    reconciliation ends those residencies.
    """

    def __init__(self, client: Any, on_dropped: Callable[[str, str], None], *,
                 prefix: str = "flowcache:", db: int | None = None,
                 refresh_every: float = 2.0) -> None:
        self.client = client
        self.on_dropped = on_dropped
        self.prefix = prefix
        #: how often the topology is looked at again (a broken connection: at once)
        self.refresh_every = refresh_every
        if db is None:  # a cluster has only database 0 (and a lazy one no pool to ask yet)
            kwargs = {} if is_cluster(client) else client.connection_pool.connection_kwargs
            db = int(kwargs.get("db", 0) or 0)
        self.channels = {f"__keyevent@{db}__:evicted": "evicted",
                         f"__keyevent@{db}__:expired": "expired"}
        self.control = f"{prefix}watch:{secrets.token_hex(8)}"
        self.reported = 0
        self._listeners: dict[str, _Listener] = {}
        self._listeners_lock = threading.Lock()
        self._inbox: queue.Queue[tuple[_Listener, dict[str, Any] | None]] = queue.Queue()
        self._refresh_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def configure(self) -> str:
        """Add ``E``, ``e`` and ``x`` to ``notify-keyspace-events`` on every node, replicas
        included: a replica a failover promotes must notify as its master did."""
        wanted = ""
        for _, node in node_clients(self.client):
            current = node.config_get("notify-keyspace-events").get(
                "notify-keyspace-events", "")
            flags = set(_text(current)) | set("Eex")
            if "A" in flags:
                flags -= set("g$lshzxetdm")  # 'A' stands for all of these
            wanted = "".join(sorted(flags))
            node.config_set("notify-keyspace-events", wanted)
        return wanted

    def start(self) -> KeyspaceWatcher:
        """Subscribe on every primary, and return once each subscription is in effect: what
        Redis drops from now on is reported by :meth:`poll`/:meth:`run`."""
        self.refresh()
        self.sync()
        return self

    def listening(self) -> list[str]:
        """``host:port`` of the nodes listened to now."""
        with self._listeners_lock:
            return sorted(name for name, listener in self._listeners.items()
                          if not listener.broken)

    def refresh(self) -> None:
        """Listen to the primaries the cluster has now: drop the connections of nodes that
        left, broke or became replicas, subscribe on new primaries. A node that does not
        answer is tried again at the next refresh; no node answering keeps what there is."""
        self._refresh_at = time.monotonic() + self.refresh_every
        try:
            primaries = dict((node.name, client) for node, client
                             in node_clients(self.client, primaries_only=True))
        except outage_errors() as exc:
            log.debug("keyspace watcher: no node tells the topology (%s)", exc)
            return
        with self._listeners_lock:
            gone = [listener for name, listener in self._listeners.items()
                    if name not in primaries or listener.broken]
            for listener in gone:
                del self._listeners[listener.name]
        _close_all(gone)
        for name, client in primaries.items():
            if name in self._listeners:
                continue
            try:
                listener = _Listener(name, client, [*self.channels, self.control],
                                     self._inbox, owned=client is not self.client)
            except outage_errors() as exc:
                log.debug("keyspace watcher: cannot subscribe on %s (%s)", name, exc)
                continue
            with self._listeners_lock:
                self._listeners[name] = listener

    def poll(self, timeout: float = 1.0) -> bool:
        """Handle at most one message; False if none came within ``timeout`` seconds."""
        if time.monotonic() >= self._refresh_at:
            self.refresh()
        try:
            listener, message = self._inbox.get(timeout=timeout)
        except queue.Empty:
            return False
        if message is None:  # its connection broke: the topology may have changed
            self._refresh_at = 0.0
            return True
        channel, data = _text(message.get("channel")), _text(message.get("data"))
        if channel == self.control:
            listener.seen = data
            return True
        reason = self.channels.get(channel)
        name = entry_name(data, self.prefix)
        if reason is not None and name is not None:
            self.on_dropped(name, reason)
            self.reported += 1
        return True

    def sync(self, timeout: float = 30.0) -> None:
        """Report everything Redis dropped before now.

        Publishes a token on a control channel through every node listened to, and reads
        until each subscription has it back: a node delivers a connection's messages in
        order, so every earlier notification has been handled. A subscription that breaks
        meanwhile is not waited for.
        """
        token = secrets.token_hex(8)
        with self._listeners_lock:
            waiting = list(self._listeners.values())
        for listener in waiting:
            with contextlib.suppress(*outage_errors()):
                listener.client.publish(self.control, token)
        deadline = time.monotonic() + timeout
        while any(listener.seen != token and not listener.broken for listener in waiting):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no control message back from Redis within {timeout}s")
            self.poll(timeout=1.0)

    def run(self) -> None:
        """Report until :meth:`stop` (``flowcache ledger watch``)."""
        if not self._listeners:
            self.start()
        while not self._stop.is_set():
            self.poll(timeout=0.5)

    def run_in_thread(self) -> KeyspaceWatcher:
        if not self._listeners:
            self.start()
        self._thread = threading.Thread(target=self.run, name="flowcache-keyspace-watcher",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._listeners_lock:
            listeners, self._listeners = list(self._listeners.values()), {}
        _close_all(listeners)


class _Listener:
    """One node's subscription, read by a thread of its own into the watcher's inbox (so
    that one slow or dead node never delays another's events)."""

    def __init__(self, name: str, client: Any, channels: list[str],
                 inbox: queue.Queue[tuple[_Listener, dict[str, Any] | None]], *,
                 owned: bool) -> None:
        self.name = name
        self.client = client
        self.owned = owned  # a node connection of our own (closed with the subscription)
        self.seen: str | None = None
        self.broken = False
        self._inbox = inbox
        self._stop = threading.Event()
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            self._pubsub.subscribe(*channels)  # connects: a dead node raises here
        except BaseException:
            self._pubsub.close()
            raise
        self._thread = threading.Thread(target=self._read, daemon=True,
                                        name=f"flowcache-keyspace-{name}")
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._pubsub.get_message(timeout=0.5)
            except Exception as exc:  # the node went away (a failover, a restart)
                if not self._stop.is_set():
                    log.info("keyspace watcher: lost %s (%s)", self.name, exc)
                    self.broken = True
                    self._inbox.put((self, None))
                return
            if message is not None:
                self._inbox.put((self, message))

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(Exception):
            self._pubsub.close()
        if self.owned:
            with contextlib.suppress(Exception):
                self.client.close()


def _close_all(listeners: list[_Listener]) -> None:
    """Stop every reader first, then wait for each: they wind down together."""
    for listener in listeners:
        listener.stop()
    for listener in listeners:
        listener.close()


def entry_name(key: str, prefix: str = "flowcache:") -> str | None:
    """``flowcache:{alice/ab/k}`` or its part ``...}:3`` -> ``alice/ab/k``; other keys: None."""
    if not key.startswith(prefix + "{"):
        return None
    body = key[len(prefix) + 1:]
    end = body.rfind("}")
    if end <= 0 or (end != len(body) - 1 and not body[end + 1:].startswith(":")):
        return None
    return body[:end]


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
