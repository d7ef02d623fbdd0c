"""Single-flight locks: at most one producer per key, across threads, processes and hosts.

Locks are an optimisation of work, not a guard of correctness: entries are write-once and
content-addressed, so two producers that both ran would still store the same result. That is
why a lock whose backend fails (Redis down) degrades to a host-local lock instead of failing.

* :class:`ThreadLocks`: per-name locks within one process (always the first layer);
* :class:`FileLocks`: ``flock`` on a file per name, for processes on one host;
* :class:`RedisLocks`: a lease (``SET NX PX`` plus renewal, released by compare-and-delete),
  for processes on many hosts that share a Redis.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from flowcache.errors import LockTimeout

log = logging.getLogger("flowcache.locks")

_WAIT_LOG_EVERY = 30.0
_WARN_EVERY = 60.0


class Locks(Protocol):
    def hold(self, name: str, timeout: float | None = None) -> contextlib.AbstractContextManager:
        """Hold the lock for ``name``; raise :class:`LockTimeout` after ``timeout`` seconds."""


class ThreadLocks:
    """Per-name ``threading.Lock``s, created on demand and dropped when unused."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, list[Any]] = {}  # name -> [lock, users]

    @contextlib.contextmanager
    def hold(self, name: str, timeout: float | None = None) -> Iterator[None]:
        with self._guard:
            slot = self._locks.setdefault(name, [threading.Lock(), 0])
            slot[1] += 1
        try:
            if not slot[0].acquire(timeout=-1 if timeout is None else timeout):
                raise LockTimeout(f"timed out after {timeout}s waiting for {name}")
            try:
                yield
            finally:
                slot[0].release()
        finally:
            with self._guard:
                slot[1] -= 1
                if slot[1] == 0:
                    del self._locks[name]


class FileLocks:
    """``flock`` on ``directory/<hash>.lock``: released by the kernel if the holder dies."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def hold(self, name: str, timeout: float | None = None) -> Iterator[None]:
        path = self.directory / (hashlib.blake2b(name.encode(), digest_size=16).hexdigest()
                                 + ".lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            _wait(lambda: _try_flock(fd), name, timeout)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


#: The operator's code tenants may run (FCALL), loaded once as a Redis function library: a
#: tenant is never granted EVAL, with which one endless script makes Redis answer BUSY to all.
LIBRARY = """#!lua name=flowcache
redis.register_function('flowcache_release', function(keys, args)
  if redis.call('get', keys[1]) == args[1] then return redis.call('del', keys[1]) end
  return 0
end)
redis.register_function('flowcache_renew', function(keys, args)
  if redis.call('get', keys[1]) == args[1] then
    return redis.call('pexpire', keys[1], args[2])
  end
  return 0
end)
"""


def load_library(client: Any) -> None:
    """Load (or replace) flowcache's function library: an operator's connection."""
    client.execute_command("FUNCTION", "LOAD", "REPLACE", LIBRARY)


class RedisLocks:
    """Leases in Redis, renewed while held, so a crashed holder's lease simply runs out.

    Leases are set with ``SET NX PX`` and renewed and released by the functions of
    :data:`LIBRARY` (``FCALL``; loaded on first use where the connection may, else by
    ``flowcache admin add-user``). Locks only save work, so any Redis failure (unreachable,
    busy, out of memory, no permission) falls back to ``fallback`` (host-local) with one
    warning: it never fails the caller.
    """

    def __init__(self, client: Any, *, prefix: str = "flowcache:lock:", lease: float = 30.0,
                 fallback: Locks | None = None) -> None:
        self.client = client
        self.prefix = prefix
        self.lease = lease
        self.fallback = fallback
        self._quiet_until = 0.0

    @contextlib.contextmanager
    def hold(self, name: str, timeout: float | None = None) -> Iterator[None]:
        key = f"{self.prefix}{{{name}}}"
        token = secrets.token_hex(16)
        lease_ms = int(self.lease * 1000)
        try:
            _wait(lambda: bool(self.client.set(key, token, nx=True, px=lease_ms)), name, timeout)
        except Exception as exc:
            if isinstance(exc, LockTimeout) or self.fallback is None:
                raise
            now = time.monotonic()
            if now >= self._quiet_until:  # one warning a minute: in a cluster whose master
                # is down, leases on the other masters still work, so outage and recovery
                # alternate from one call to the next
                log.warning("Redis locks unavailable (%s: %s); using host-local locks",
                            type(exc).__name__, exc)
                self._quiet_until = now + _WARN_EVERY
            with self.fallback.hold(name, timeout):
                yield
            return
        stop = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(key, token, lease_ms, stop),
                                   name=f"flowcache-lease-{name[-12:]}", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()
            try:
                self._call("flowcache_release", key, token)
            except Exception as exc:  # the lease runs out by itself
                log.debug("could not release the lease on %s: %s", key, exc)

    def _call(self, function: str, key: str, *args: Any) -> Any:
        """FCALL a library function, loading the library once if Redis does not know it."""
        try:
            return self.client.fcall(function, 1, key, *args)
        except Exception as exc:
            if "Function not found" not in str(exc):
                raise
        load_library(self.client)  # needs FUNCTION rights: an operator's or an admin's user
        return self.client.fcall(function, 1, key, *args)

    def _renew(self, key: str, token: str, lease_ms: int, stop: threading.Event) -> None:
        while not stop.wait(self.lease / 3):
            try:
                if not self._call("flowcache_renew", key, token, lease_ms):
                    log.warning("lost the lease on %s; another producer may start", key)
                    return
            except Exception as exc:
                log.warning("could not renew the lease on %s: %s", key, exc)


class LayeredLocks:
    """Thread locks first (cheap, no I/O for waiters in this process), then ``outer``."""

    def __init__(self, outer: Locks | None) -> None:
        self.threads = ThreadLocks()
        self.outer = outer

    @contextlib.contextmanager
    def hold(self, name: str, timeout: float | None = None) -> Iterator[None]:
        with self.threads.hold(name, timeout):
            if self.outer is None:
                yield
            else:
                with self.outer.hold(name, timeout):
                    yield


def _wait(attempt: Callable[[], bool], name: str, timeout: float | None) -> None:
    """Retry ``attempt`` with capped backoff until it succeeds or ``timeout`` passes."""
    start = time.monotonic()
    next_log = start + _WAIT_LOG_EVERY
    delay = 0.001
    while not attempt():
        now = time.monotonic()
        if timeout is not None and now - start >= timeout:
            raise LockTimeout(f"timed out after {timeout}s waiting for another producer of {name}")
        if now >= next_log:
            log.info("still waiting for another producer of %s (%.0fs)", name, now - start)
            next_log = now + _WAIT_LOG_EVERY
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
