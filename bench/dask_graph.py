"""Benchmark: graph-level caching on a LocalCluster (2 worker processes x 2 threads).

* a ``dask.delayed`` graph of 10 ms tasks (a binary reduction tree over ``--leaves`` leaves,
  999 tasks by default), new leaves every repeat, and in the same repeat every peer:
  plain Dask (recompute), ``dask_cache.compute`` cold (computes and stores) and warm (all
  cached), and the same tree of ``joblib.Memory``-wrapped tasks cold and warm (joblib's cache
  on the workers' shared local disk: the usual way to cache Dask tasks without flowcache);
* per peer, the cold overhead per task: (cold wall - plain wall) / tasks; the warm speed-up
  over recomputing; the time to chain-hash the graph, per task;
* the floor under flowcache's cold overhead on this disk: a durable write must be on disk
  before its task completes, so each stored result waits for one ``fsync`` of the durable
  directory; the median of a small write + fsync + rename there, divided by the 4 threads that
  overlap them, is printed beside the overhead;
* flowcache's own cost per stored result, without a cluster: a tree of instant tasks on
  Dask's synchronous scheduler, plain and through ``dask_cache.compute`` storing every result
  (durably, node tier, ledger), one thread, no scheduler or network in the way;
* node tier: reading a 100 MB result from the node tier (verified, loaded), GB/s.

The node tier lives in ``/dev/shm`` (as by default); the durable tier in a new directory under
``--durable`` (default: the system's temp dir, on disk; ``/dev/shm`` shows the overhead without
a disk flush). Medians of ``--repeats`` runs. Last line: one JSON object.

    .venv/bin/python bench/dask_graph.py [--repeats 5] [--leaves 500] [--durable DIR]
"""

from __future__ import annotations

from harness import arguments, emit, median, timed

# isort: split
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import dask
import joblib
from dask import delayed

import dask_cache
from dask_cache.plugin import add_node_tier
from dask_cache.settings import DaskCacheSettings
from flowcache.config import StoreConfig
from flowcache.identity import new_key
from flowcache.store import TieredStore
from flowcache.tiers.node import NodeTier
from flowcache.tiers.objects import ObjectTier
from tests.dask_jobs import add, work


def tree(leaves: int, salt: int, leaf=work, join=add):
    nodes = [delayed(leaf)(i + salt) for i in range(leaves)]
    while len(nodes) > 1:
        nodes = [delayed(join)(nodes[i], nodes[i + 1]) if i + 1 < len(nodes) else nodes[i]
                 for i in range(0, len(nodes), 2)]
    return nodes[0]


def square(i: int) -> int:
    return i * i


def plus(a: int, b: int) -> int:
    return a + b


def synchronous(config: StoreConfig, node_dir: Path, leaves: int, repeats: int
                ) -> tuple[list[float], list[float]]:
    """Plain and cold-cached walls of a tree of instant tasks on the synchronous scheduler."""
    store = config.build()
    add_node_tier(store, NodeTier(node_dir / "sync", max_bytes=1 << 30))
    every = DaskCacheSettings(node_dir=None, node_bytes=1 << 30, min_compute_seconds=0.0,
                              load_bandwidth=1 << 40, load_latency=0.0, files=True)
    plain, cold = [], []
    for repeat in range(-1, repeats):
        salt = 10**9 + (repeat + 1) * 100_000
        graph = tree(leaves if repeat >= 0 else 8, salt, square, plus)
        started = time.perf_counter()
        (expected,) = dask.compute(graph, scheduler="sync")
        record(plain, repeat, time.perf_counter() - started)
        started = time.perf_counter()
        (value,) = dask_cache.compute(graph, store=store, scheduler="sync", settings=every)
        record(cold, repeat, time.perf_counter() - started)
        assert value == expected
    store.close()
    return plain, cold


def record(figures: list[float], repeat: int, seconds: float) -> None:
    if repeat >= 0:
        figures.append(seconds)


def run(client, graph) -> tuple[float, object]:
    started = time.perf_counter()
    value = client.compute(graph).result()
    return time.perf_counter() - started, value


def fsync_ms(directory: Path, writes: int = 50) -> float:
    """Median milliseconds of a 250-byte write + fsync + rename in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    times = []
    for i in range(writes):
        tmp, final = directory / f"{i}.tmp", directory / f"{i}"
        started = time.perf_counter()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"x" * 250)
        os.fsync(fd)
        os.close(fd)
        os.replace(tmp, final)
        times.append(time.perf_counter() - started)
    shutil.rmtree(directory)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--leaves", type=int, default=500)
    parser.add_argument("--durable", default=tempfile.gettempdir(),
                        help="where the durable tier's directory is made (default: temp dir)")
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    root = Path(tempfile.mkdtemp(prefix="flowcache-bench-dask-", dir=args.durable))
    node_dir = Path(tempfile.mkdtemp(prefix="flowcache-bench-node-",
                                     dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    config = StoreConfig.from_env({"FLOWCACHE_STORE": f"memory+{root}/durable",
                                   "FLOWCACHE_USER": "bench",
                                   "FLOWCACHE_SIGNING_KEY": new_key().hex(),
                                   "FLOWCACHE_LOCK_DIR": str(root / "locks")})
    store = config.build()
    memory = joblib.Memory(location=str(root / "joblib"), verbose=0)
    joblib_work, joblib_add = memory.cache(work), memory.cache(add)
    plain, cold, warm, keying, planning, tasks = [], [], [], [], [], 0
    joblib_cold, joblib_warm, fsyncs = [], [], []
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        client.register_plugin(dask_cache.CacheWorkerPlugin(config, node_dir=str(node_dir)))
        for repeat in range(-1, args.repeats):  # -1: a small warm-up round, not recorded
            salt = (repeat + 1) * 100_000  # new work every repeat
            leaves = args.leaves if repeat >= 0 else 8
            graph = tree(leaves, salt)
            seconds, expected = run(client, graph)
            record(plain, repeat, seconds)
            started = time.perf_counter()
            (result,), plan = dask_cache.compute(graph, client=client, store=store,
                                                 return_plan=True)
            record(cold, repeat, time.perf_counter() - started)
            assert result == expected
            assert plan.loads == set()
            tasks = len(plan.chain)
            record(keying, repeat, plan.keying_seconds)
            record(planning, repeat, plan.planning_seconds)
            record(fsyncs, repeat, fsync_ms(root / "fsync-probe"))
            # the warm runs get graphs of their own (new Dask keys, same content): a result the
            # cluster still holds under the old keys must not stand in for a cache hit
            started = time.perf_counter()
            (again,), warm_plan = dask_cache.compute(tree(leaves, salt), client=client,
                                                     store=store, return_plan=True)
            record(warm, repeat, time.perf_counter() - started)
            assert again == expected
            assert warm_plan.computes == set()
            seconds, value = run(client, tree(leaves, salt, joblib_work, joblib_add))
            record(joblib_cold, repeat, seconds)
            assert value == expected
            seconds, value = run(client, tree(leaves, salt, joblib_work, joblib_add))
            record(joblib_warm, repeat, seconds)
            assert value == expected

    sync_plain, sync_cold = synchronous(config, node_dir, args.leaves, args.repeats)

    node_store = TieredStore([NodeTier(node_dir / "read", max_bytes=1 << 30),
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
        "joblib_cold_s": round(med(joblib_cold), 3), "joblib_warm_s": round(med(joblib_warm), 3),
        "warm_speedup_vs_recompute": round(med(plain) / med(warm), 1),
        "joblib_warm_speedup_vs_recompute": round(med(plain) / med(joblib_warm), 1),
        "warm_vs_joblib_warm": round(med(joblib_warm) / med(warm), 1),
        "keying_ms_per_task": round(1000 * med(keying) / tasks, 4),
        "planning_ms_per_task": round(1000 * med(planning) / tasks, 4),
        "durable_fsync_ms": round(med(fsyncs), 3),
        "fsync_floor_ms_per_task": round(med(fsyncs) / 4, 3),
        "durable_dir": str(root),
        "cold_overhead_ms_per_task": round(1000 * (med(cold) - med(plain)) / tasks, 3),
        "joblib_cold_overhead_ms_per_task":
            round(1000 * (med(joblib_cold) - med(plain)) / tasks, 3),
        "sync_plain_s": round(med(sync_plain), 4), "sync_cached_cold_s": round(med(sync_cold), 4),
        "sync_cost_ms_per_result": round(1000 * (med(sync_cold) - med(sync_plain)) / tasks, 3),
        "node_read_100mb_s": round(med(reads), 4),
        "node_read_GBps": round((100 << 20) / med(reads) / 1e9, 2),
    }
    print(f"{tasks}-task graph of 10 ms tasks on 2 workers x 2 threads (median of "
          f"{args.repeats}):")
    print(f"  recompute (plain Dask) {figures['plain_dask_s']} s")
    print(f"  flowcache: cold {figures['cached_cold_s']} s, warm {figures['cached_warm_s']} s "
          f"-> {figures['warm_speedup_vs_recompute']}x faster than recomputing (goal >= 5x)")
    print(f"  joblib.Memory: cold {figures['joblib_cold_s']} s, warm {figures['joblib_warm_s']} s"
          f" -> {figures['joblib_warm_speedup_vs_recompute']}x; flowcache warm is "
          f"{figures['warm_vs_joblib_warm']}x faster than joblib warm")
    print(f"  cold overhead per task over plain Dask: flowcache "
          f"{figures['cold_overhead_ms_per_task']} ms (goal <= 0.5 ms), joblib "
          f"{figures['joblib_cold_overhead_ms_per_task']} ms (joblib never fsyncs); keying "
          f"{figures['keying_ms_per_task']} ms per task (goal <= 1 ms), planning "
          f"{figures['planning_ms_per_task']} ms")
    print(f"  durable write + fsync {figures['durable_fsync_ms']} ms in {root}: over 4 threads a "
          f"floor of {figures['fsync_floor_ms_per_task']} ms per task under the cold overhead")
    print(f"  synchronous scheduler, instant tasks, every result stored: "
          f"{figures['sync_cost_ms_per_result']} ms per result over plain Dask")
    print(f"  node tier: 100 MB read in {figures['node_read_100mb_s']} s = "
          f"{figures['node_read_GBps']} GB/s (goal >= 1 GB/s)")
    shutil.rmtree(node_dir, ignore_errors=True)
    emit(figures)


if __name__ == "__main__":
    main()
