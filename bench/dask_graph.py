"""Benchmark: graph-level caching on a LocalCluster (2 worker processes x 2 threads).

* a 1,000-task ``dask.delayed`` graph of 10 ms tasks (a binary reduction tree over 500 leaves):
  plain Dask, then ``dask_cache.compute`` cold (computes and stores), then warm (all cached), in
  the same run; speed-up of the warm re-run over recomputing;
* keying: the time to chain-hash the graph, per task, and the whole overhead of a cold cached
  run over plain Dask, per task;
* node tier: reading a 100 MB result from the node tier (verified, loaded), MB/s.

Medians of ``--repeats`` runs. Last line: one JSON object.

    .venv/bin/python bench/dask_graph.py [--repeats 5]
"""

from __future__ import annotations

from harness import arguments, emit, median, timed

# isort: split
import os
import tempfile
import time
from pathlib import Path

from dask import delayed

import dask_cache
from flowcache.config import StoreConfig
from flowcache.identity import new_key
from flowcache.store import TieredStore
from flowcache.tiers.node import NodeTier
from flowcache.tiers.objects import ObjectTier
from tests.dask_jobs import add, work


def tree(leaves: int, salt: int):
    nodes = [delayed(work)(i + salt) for i in range(leaves)]
    while len(nodes) > 1:
        nodes = [delayed(add)(nodes[i], nodes[i + 1]) if i + 1 < len(nodes) else nodes[i]
                 for i in range(0, len(nodes), 2)]
    return nodes[0]


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--leaves", type=int, default=500)
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    root = Path(tempfile.mkdtemp(prefix="flowcache-bench-dask-"))
    config = StoreConfig.from_env({"FLOWCACHE_STORE": f"memory+{root}/durable",
                                   "FLOWCACHE_USER": "bench",
                                   "FLOWCACHE_SIGNING_KEY": new_key().hex(),
                                   "FLOWCACHE_LOCK_DIR": str(root / "locks")})
    store = config.build()
    plain, cold, warm, keying, tasks = [], [], [], [], 0
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        client.register_plugin(dask_cache.CacheWorkerPlugin(config,
                                                            node_dir=str(root / "node")))
        for repeat in range(args.repeats):
            graph = tree(args.leaves, salt=repeat * 100_000)  # new work every repeat
            started = time.perf_counter()
            expected = client.compute(graph).result()
            plain.append(time.perf_counter() - started)
            started = time.perf_counter()
            (result,), plan = dask_cache.compute(graph, client=client, store=store,
                                                 return_plan=True)
            cold.append(time.perf_counter() - started)
            assert result == expected
            tasks = len(plan.chain)
            keying.append(plan.keying_seconds)
            started = time.perf_counter()
            (again,), warm_plan = dask_cache.compute(graph, client=client, store=store,
                                                     return_plan=True)
            warm.append(time.perf_counter() - started)
            assert again == expected
            assert warm_plan.computes == set()

    node_store = TieredStore([NodeTier(root / "node-read", max_bytes=1 << 30),
                              ObjectTier(str(root / "node-durable"), fsync=False)],
                             identity=store.identity)
    payload = os.urandom(100 << 20)
    node_store.put("ab" * 32, payload)
    reads = []
    for _ in range(args.repeats):
        seconds, value = timed(lambda: node_store.get("ab" * 32))
        reads.append(seconds)
        assert len(value) == len(payload)
    assert node_store.counters.tier("node").hits == args.repeats

    med = median
    figures = {
        "tasks": tasks, "task_seconds": 0.01, "repeats": args.repeats,
        "plain_dask_s": round(med(plain), 3), "cached_cold_s": round(med(cold), 3),
        "cached_warm_s": round(med(warm), 4),
        "warm_speedup_vs_recompute": round(med(plain) / med(warm), 1),
        "keying_ms_per_task": round(1000 * med(keying) / tasks, 4),
        "cold_overhead_ms_per_task": round(1000 * (med(cold) - med(plain)) / tasks, 3),
        "node_read_100mb_s": round(med(reads), 4),
        "node_read_GBps": round((100 << 20) / med(reads) / 1e9, 2),
    }
    print(f"{tasks}-task graph of 10 ms tasks on 2 workers x 2 threads (median of "
          f"{args.repeats}):")
    print(f"  plain Dask {figures['plain_dask_s']} s; cached cold {figures['cached_cold_s']} s;"
          f" cached warm {figures['cached_warm_s']} s -> {figures['warm_speedup_vs_recompute']}x"
          f" faster than recomputing (goal >= 5x)")
    print(f"  keying {figures['keying_ms_per_task']} ms per task (goal <= 1 ms); whole cold "
          f"overhead {figures['cold_overhead_ms_per_task']} ms per task (keying, storing)")
    print(f"  node tier: 100 MB read in {figures['node_read_100mb_s']} s = "
          f"{figures['node_read_GBps']} GB/s (goal >= 1 GB/s)")
    emit(figures)


if __name__ == "__main__":
    main()
