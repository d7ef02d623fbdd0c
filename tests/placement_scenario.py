"""The placement scenario, shared by tests/test_locality.py and bench/placement.py: entries
cached unevenly on the hosts' node tiers, a graph that consumes them, and the bytes each tier
served. Workers import this module by name (the harness puts the repository on PYTHONPATH)."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

import dask
from dask import delayed

import dask_cache
from dask_cache.locality import entry_nodes

LOCAL_TIERS = ("memory", "node")
REMOTE_TIERS = ("redis", "object")


def payload(seed: int, nbytes: int) -> bytes:
    """A cached input: ``nbytes`` of seeded noise (one entry per seed)."""
    return random.Random(seed).randbytes(nbytes)


def size(data: bytes) -> int:
    return len(data)


def total(sizes: list[int]) -> int:
    return sum(sizes)


def consumer(seeds: Sequence[int], nbytes: int) -> Any:
    """The graph: load every input, measure it, add up."""
    return delayed(total)([delayed(size)(delayed(payload)(seed, nbytes)) for seed in seeds])


def clear_memory(dask_worker: Any) -> int:
    """For ``client.run``: empty the worker's memory tier, so local reads come from the node."""
    store = dask_worker.flowcache_store
    for tier in store.tiers:
        if tier.name == "memory":
            tier.clear()
    return 0


def bytes_read(client: Any) -> dict[str, int]:
    """Bytes served per tier, summed over the workers' stores (their counters so far)."""
    totals: dict[str, int] = {}
    for snapshot in client.run(dask_cache.worker_metrics).values():
        for tier, counters in snapshot.get("tiers", {}).items():
            totals[tier] = totals.get(tier, 0) + int(counters.get("bytes_read", 0))
    return totals


def delta(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    return {tier: after.get(tier, 0) - before.get(tier, 0) for tier in after}


def local_share(read: Mapping[str, int]) -> float:
    """Bytes served by this host's tiers over all bytes served (0 when nothing was read)."""
    local = sum(read.get(tier, 0) for tier in LOCAL_TIERS)
    remote = sum(read.get(tier, 0) for tier in REMOTE_TIERS)
    return local / (local + remote) if local + remote else 0.0


def wait_until(check: Any, timeout: float = 180.0, what: str = "a condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not hold within {timeout}s")
        time.sleep(0.2)


def seed_unevenly(client: Any, store: Any, placed: Sequence[tuple[list[str], Sequence[int]]],
                  nbytes: int, *, wait: bool = True) -> dict[str, list[str]]:
    """Cache ``payload(seed)`` for each ``(workers, seeds)`` pair on those workers (so each
    entry is in their host's node tier), wait until the scheduler knows where every entry
    is (unless ``wait`` is false: no locality plugin), then empty the workers' memory tiers.
    Returns each entry's nodes (empty without waiting)."""
    keys: list[str] = []
    for workers, seeds in placed:
        if not seeds:
            continue
        with dask.annotate(workers=list(workers), allow_other_workers=False):
            _, plan = dask_cache.compute([delayed(payload)(seed, nbytes) for seed in seeds],
                                         client=client, store=store, return_plan=True)
        keys += [plan.chain[key] for key in plan.outputs]
    where = wait_until(lambda: _all_known(client, keys),
                       what="the scheduler hearing where the seeded entries are") if wait else {}
    client.run(clear_memory)
    return where


def _all_known(client: Any, keys: list[str]) -> dict[str, list[str]] | None:
    where = entry_nodes(client, keys)
    return where if all(where.get(key) for key in keys) else None


def run_consumer(client: Any, store: Any, seeds: Sequence[int], nbytes: int
                 ) -> tuple[dict[str, int], float, Any]:
    """Compute the consumer graph: bytes read per tier, wall seconds, the plan."""
    before = bytes_read(client)
    started = time.perf_counter()
    (result,), plan = dask_cache.compute(consumer(seeds, nbytes), client=client, store=store,
                                         return_plan=True)
    seconds = time.perf_counter() - started
    assert result == len(seeds) * nbytes
    return delta(bytes_read(client), before), seconds, plan
