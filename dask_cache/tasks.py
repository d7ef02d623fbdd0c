"""What runs on the workers for graph caching: load a stored result, or compute and store one.

Both use the worker process's default store (set by :class:`~dask_cache.plugin.CacheWorkerPlugin`,
else built from the environment). A computed result is stored, durably and confirmed before the
task finishes, only when computing it took longer than loading it would (``LoadPolicy``): a
result cheaper to recompute than to load would only cost storage.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dask.sizeof import sizeof

from flowcache.config import default_store
from flowcache.errors import UnserializableResult
from flowcache.lifetimes import FlowScoped, Lifetime
from flowcache.purge import tracker_for

log = logging.getLogger("dask_cache")
#: this process's graph-cache activity: computed, stored, skipped_cheap, unserializable, loaded
COUNTERS: Counter[str] = Counter()
_LOCK = threading.Lock()


@dataclass(frozen=True)
class LoadPolicy:
    min_compute_seconds: float
    load_bandwidth: float  # bytes per second
    load_latency: float  # seconds

    def worth_storing(self, compute_seconds: float, nbytes: int) -> bool:
        load_seconds = self.load_latency + nbytes / max(1.0, self.load_bandwidth)
        return compute_seconds >= max(self.min_compute_seconds, load_seconds)


ALWAYS = LoadPolicy(0.0, float("inf"), 0.0)


def _count(name: str) -> None:
    with _LOCK:
        COUNTERS[name] += 1


#: stores registered by ``dask_cache.compute`` in this process, by token: tasks run by a local
#: scheduler use the very store the plan was made with; on a worker (another process) the
#: token is unknown and the worker's store (set up by CacheWorkerPlugin) is used
LOCAL_STORES: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()


def store_for(token: str | None) -> Any:
    store = LOCAL_STORES.get(token) if token else None
    return store if store is not None else default_store()


def load(chain_key: str, label: str, token: str | None = None) -> Any:
    """The stored result of a task the rewrite found in the cache."""
    value = store_for(token).get(chain_key, _MISSING)
    if value is _MISSING:
        raise KeyError(f"flowcache: the stored result of {label} ({chain_key[:12]}) vanished "
                       "between planning and loading; run the graph again")
    _count("loaded")
    return value


def compute_and_store(func: Callable[..., Any], chain_key: str, policy: LoadPolicy, label: str,
                      lifetime: Lifetime, token: str | None, *args: Any, **kwargs: Any) -> Any:
    """Run the task; store its result if recomputing it would cost more than loading it."""
    started = time.perf_counter()
    value = func(*args, **kwargs)
    elapsed = time.perf_counter() - started
    _count("computed")
    if not policy.worth_storing(elapsed, sizeof(value)):
        _count("skipped_cheap")
        return value
    store = store_for(token)
    try:
        if isinstance(lifetime, FlowScoped) and lifetime.run_id:
            tracker_for(store).record(lifetime.run_id, chain_key)
        store.put(chain_key, value, lifetime=lifetime, overwrite=True,
                  meta={"task": label, "compute_seconds": round(elapsed, 6)})
    except UnserializableResult as exc:
        _count("unserializable")
        log.warning("flowcache: not caching %s: %s", label, exc)
        return value
    _count("stored")
    return value


def graph_counters(dask_worker: Any = None) -> dict[str, int]:
    """For ``client.run(graph_counters)``: this worker's graph-cache counters."""
    with _LOCK:
        return dict(COUNTERS)


_MISSING = object()
