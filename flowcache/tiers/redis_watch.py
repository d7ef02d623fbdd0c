"""What Redis drops on its own (evictions, expiries), reported from its keyspace notifications.

Split from :mod:`flowcache.tiers.redis`, which re-exports both names. Notifications are local to
one server: on a Redis Cluster each master publishes only its own keys' events, so a watcher
here (one connection) hears one node; a cluster needs one watcher per master.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import Any


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



def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
