"""Benchmark: scaling out, measured in one run. Each section is one question; the JSON last line
has one key per section.

* ``redis``: the store's Redis tier against 1 redis-server vs a 3-master Redis Cluster
  (``redis-server --cluster-enabled yes`` x 3 on loopback, joined by ``redis-cli --cluster
  create``, no replicas unless ``--replicas``), both started by this run. Put and get of
  1 KiB entries through :class:`RedisTier` and store hits through a :class:`TieredStore`
  (Redis over a local durable tier), by ``--threads`` threads at once. Figures: operations per
  second (median of ``--repeats``), and cluster / single ratios.
* ``placement``: cache-aware placement on the several-host harness (``bench/placement.py``'s
  ``measure_placement``: network namespaces as root, loopback addresses otherwise): the share of
  cached-input bytes read from the local node tier, bytes read across hosts and wall times, with
  and without ``dask_cache.locality``, on an unevenly cached graph and on one with nothing cached.

What a 2-core machine limits: the client threads, the Python client's own work (redis-py
parses every reply in Python, under the GIL) and all the servers share two cores, so three
masters cannot run three times as fast here; the ratio says what the cluster's extra work
(slot routing, a connection pool per node) costs or gains on one small host, not how a cluster
of real machines scales.

    .venv/bin/python bench/scale.py [--repeats 5] [--ops 4000] [--threads 8] [--replicas 0]
"""

from __future__ import annotations

from harness import arguments, emit, median

# isort: split
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from flowcache.frames import Frame
from flowcache.identity import Identity, new_key
from flowcache.locks import ThreadLocks
from flowcache.store import TieredStore
from flowcache.tiers.objects import ObjectTier
from flowcache.tiers.redis import RedisTier
from tests.redis_cluster import RedisClusterFixture
from tests.servers import RedisServer

VALUE_BYTES = 1024


def throughput(fn: Callable[[int], Any], ops: int, threads: int) -> float:
    """Operations per second of ``fn(0..ops-1)`` spread over ``threads`` threads."""
    chunks = [range(start, ops, threads) for start in range(threads)]

    def run(chunk: range) -> None:
        for i in chunk:
            fn(i)

    with ThreadPoolExecutor(threads) as pool:
        start = time.perf_counter()
        list(pool.map(run, chunks))
        return ops / (time.perf_counter() - start)


def redis_figures(url: str, args: Any, workdir: Path) -> dict[str, float]:
    """Median ops/s of tier put, tier get and store hits against the Redis at ``url``."""
    tier = RedisTier.from_url(url, max_connections=max(64, args.threads * 2))
    payload = b"FLWC" + os.urandom(VALUE_BYTES - 4)
    names = [f"raw/{i % 256:02x}/{i:064x}" for i in range(args.ops)]  # apart from the store's
    store = TieredStore([tier, ObjectTier(str(workdir / "durable"), fsync=False)],
                        identity=Identity("bench", new_key()), locks=ThreadLocks())
    keys = [f"{i:064x}" for i in range(args.ops)]
    for key in keys:
        store.put(key, payload)
    puts, gets, hits = [], [], []
    for _ in range(args.repeats):
        puts.append(throughput(lambda i: tier.put(names[i], Frame((payload,))), args.ops,
                               args.threads))
        gets.append(throughput(lambda i: tier.get(names[i]), args.ops, args.threads))
        hits.append(throughput(lambda i: store.get(keys[i]), args.ops, args.threads))
    counters = store.counters.tier("redis")
    if counters.errors or counters.misses or counters.corrupt:
        raise RuntimeError(f"store hits missed Redis: {counters}")
    store.close()
    return {"tier_put_ops_s": median(puts), "tier_get_ops_s": median(gets),
            "store_hit_ops_s": median(hits)}


def redis_section(args: Any) -> dict[str, Any]:
    single = RedisServer().start()
    cluster = RedisClusterFixture(masters=3, replicas=args.replicas).start()
    try:
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            one = redis_figures(single.url, args, Path(a))
            many = redis_figures(cluster.url, args, Path(b))
    finally:
        cluster.stop()
        single.stop()
    ratios = {f"{name}_cluster_vs_single": many[name] / one[name] for name in one}
    print(f"{'ops/s (1 KiB)':<22}{'1 redis':>12}{'3-master cluster':>18}{'ratio':>8}")
    for name in one:
        print(f"{name:<22}{one[name]:>12.0f}{many[name]:>18.0f}"
              f"{ratios[name + '_cluster_vs_single']:>8.2f}")
    return {"single": one, "cluster": many, **ratios,
            "setup": {"ops": args.ops, "threads": args.threads, "value_bytes": VALUE_BYTES,
                      "masters": 3, "replicas": args.replicas, "repeats": args.repeats,
                      "cores": os.cpu_count()}}


def placement_section(args: Any) -> dict[str, Any]:
    from placement import measure_placement  # bench/placement.py, beside this file

    return measure_placement(repeats=args.repeats)


#: one entry per question
SECTIONS: dict[str, Callable[[Any], dict[str, Any]]] = {"redis": redis_section,
                                                        "placement": placement_section}


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--ops", type=int, default=4000, help="operations per figure")
    parser.add_argument("--threads", type=int, default=8, help="client threads at once")
    parser.add_argument("--replicas", type=int, default=0, help="replicas per cluster master")
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append",
                        help="run only this section (repeatable)")
    args = parser.parse_args()
    emit({name: SECTIONS[name](args) for name in (args.only or SECTIONS)})


if __name__ == "__main__":
    main()
