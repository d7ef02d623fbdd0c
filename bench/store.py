"""Benchmark: the store's tiers against the raw operations they wrap, measured in one run.

Starts its own redis-server, moto (S3) and GCS emulator on free loopback ports, then times:

* 1 KB objects x N (10,000 for memory/Redis/local dir, fewer for the HTTP emulators) and one
  100 MB object: put and get through each tier, through the TieredStore, and the raw
  operation underneath (redis-py SET/GET, fsspec pipe/cat) on the same server;
* keying a 100 MB bytes input.

Every figure is the median of ``--repeats`` runs (default 5); ratios compare against the raw
operation measured in the same run. Prints a table, then one JSON object as the last line.

    .venv/bin/python bench/store.py [--repeats 5] [--small-count 10000] [--skip-gcs]
"""

from __future__ import annotations

from harness import MB, arguments, emit, median_seconds

# isort: split
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import fsspec
import redis

from flowcache.identity import Identity, new_key
from flowcache.keys.canonical import hash_inputs
from flowcache.store import TieredStore
from flowcache.tiers.memory import MemoryTier
from flowcache.tiers.objects import ObjectTier
from flowcache.tiers.redis import RedisTier
from tests.servers import GcsServer, MotoServer, RedisServer

BIG = 100 * MB


class Results:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, float, float | None, str]] = []
        self.figures: dict[str, float] = {}

    def add(self, case: str, what: str, seconds: float, nbytes: int, ops: int,
            baseline: float | None = None, name: str | None = None) -> None:
        ratio = baseline / seconds if baseline else None
        per_op_us = seconds / ops * 1e6
        rate = f"{nbytes * ops / seconds / 1e6:9.1f} MB/s" if nbytes >= MB else \
            f"{per_op_us:9.1f} us/op"
        self.rows.append((case, what, seconds, ratio, rate))
        if name:
            self.figures[f"{name}_s"] = round(seconds, 6)
            if nbytes >= MB:
                self.figures[f"{name}_MBps"] = round(nbytes * ops / seconds / 1e6, 1)
            else:
                self.figures[f"{name}_us_per_op"] = round(per_op_us, 2)
            if ratio is not None:
                self.figures[f"{name}_speed_vs_raw"] = round(ratio, 3)

    def print(self) -> None:
        print(f"{'case':<34} {'operation':<34} {'median s':>10} {'x raw':>7} {'rate':>16}")
        for case, what, seconds, ratio, rate in self.rows:
            ratio_text = f"{ratio:7.2f}" if ratio is not None else "       "
            print(f"{case:<34} {what:<34} {seconds:10.4f} {ratio_text} {rate:>16}")


def small_objects(results: Results, label: str, count: int, repeats: int,
                  raw_put: Callable[[str, bytes], object], raw_get: Callable[[str], object],
                  tier, store: TieredStore) -> None:
    payload = os.urandom(1024)
    names = [f"bench/{i:02x}/{i:060x}" for i in range(count)]
    keys = [f"{i:064x}" for i in range(count)]
    raw_names = [f"raw-{i}" for i in range(count)]

    def loop(fn, items):
        return lambda: [fn(item) for item in items]

    raw_put_s = median_seconds(loop(lambda n: raw_put(n, payload), raw_names), repeats)
    raw_get_s = median_seconds(loop(raw_get, raw_names), repeats)
    frame = store_frame(store, payload)
    tier_put_s = median_seconds(loop(lambda n: tier.put(n, frame), names), repeats)
    tier_get_s = median_seconds(loop(tier.get, names), repeats)
    for key in keys:
        store.put(key, payload, overwrite=True)
    store_get_s = median_seconds(loop(store.get, keys), repeats)
    store_put_s = median_seconds(loop(lambda k: store.put(k, payload, overwrite=True), keys),
                                 repeats)
    case = f"{label} 1KB x {count}"
    results.add(case, "raw put", raw_put_s, 1024, count, name=f"{label}_1k_raw_put")
    results.add(case, "raw get", raw_get_s, 1024, count, name=f"{label}_1k_raw_get")
    results.add(case, "tier put", tier_put_s, 1024, count, raw_put_s, name=f"{label}_1k_tier_put")
    results.add(case, "tier get", tier_get_s, 1024, count, raw_get_s, name=f"{label}_1k_tier_get")
    results.add(case, "store put (signed, confirmed)", store_put_s, 1024, count, raw_put_s,
                name=f"{label}_1k_store_put")
    results.add(case, "store get (verified, loaded)", store_get_s, 1024, count, raw_get_s,
                name=f"{label}_1k_store_get")


def large_object(results: Results, label: str, repeats: int,
                 raw_put: Callable[[str, bytes], object], raw_get: Callable[[str], object],
                 tier, store: TieredStore, data: bytes) -> None:
    raw_put_s = median_seconds(lambda: raw_put("raw-big", data), repeats)
    raw_get_s = median_seconds(lambda: raw_get("raw-big"), repeats)
    frame = store_frame(store, data)
    tier_put_s = median_seconds(lambda: tier.put("bench/bi/big", frame), repeats)
    tier_get_s = median_seconds(lambda: tier.get("bench/bi/big"), repeats)
    key = "b1" * 32
    store_put_s = median_seconds(lambda: store.put(key, data, overwrite=True), repeats)
    store_get_s = median_seconds(lambda: store.get(key), repeats)
    case = f"{label} 100MB"
    results.add(case, "raw put", raw_put_s, BIG, 1, name=f"{label}_100m_raw_put")
    results.add(case, "raw get", raw_get_s, BIG, 1, name=f"{label}_100m_raw_get")
    results.add(case, "tier put", tier_put_s, BIG, 1, raw_put_s, name=f"{label}_100m_tier_put")
    results.add(case, "tier get", tier_get_s, BIG, 1, raw_get_s, name=f"{label}_100m_tier_get")
    results.add(case, "store put (signed, confirmed)", store_put_s, BIG, 1, raw_put_s,
                name=f"{label}_100m_store_put")
    results.add(case, "store get (verified, loaded)", store_get_s, BIG, 1, raw_get_s,
                name=f"{label}_100m_store_get")


def store_frame(store: TieredStore, value: bytes):
    from flowcache.frames import encode

    return encode(value, key="f" * 64, identity=store.identity)


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--small-count", type=int, default=10_000)
    parser.add_argument("--remote-small-count", type=int, default=300)
    parser.add_argument("--skip-gcs", action="store_true")
    args = parser.parse_args()
    repeats = args.repeats
    identity = Identity("bench", new_key())
    results = Results()
    data = os.urandom(BIG)
    workdir = Path(tempfile.mkdtemp(prefix="flowcache-bench-"))

    # -- keying -----------------------------------------------------------------------------
    keying = median_seconds(lambda: hash_inputs({"x": data}), repeats)
    results.add("keying", "hash_inputs(100MB bytes)", keying, BIG, 1, name="keying_100m")

    # -- memory -----------------------------------------------------------------------------
    durable_local = ObjectTier(str(workdir / "durable-mem"), fsync=False)
    mem_store = TieredStore([MemoryTier(max_bytes=1 << 30), durable_local], identity=identity)
    mem_store.put("a1" * 32, data)
    memory_get = median_seconds(lambda: mem_store.get("a1" * 32), repeats)
    results.add("memory 100MB bytes", "store get (memory hit)", memory_get, BIG, 1,
                name="memory_100m_store_get")
    array_value = __import__("numpy").frombuffer(data, dtype="uint8").copy()
    mem_store.put("a2" * 32, array_value)
    memory_array = median_seconds(lambda: mem_store.get("a2" * 32), repeats)
    results.add("memory 100MB numpy", "store get (memory hit, unpickle)", memory_array, BIG, 1,
                name="memory_100m_numpy_store_get")

    # -- redis ------------------------------------------------------------------------------
    server = RedisServer(None, "--maxmemory", "2gb", "--proto-max-bulk-len", "512mb").start()
    try:
        raw = redis.Redis.from_url(server.url)
        tier = RedisTier.from_url(server.url, max_item_bytes=None)
        store = TieredStore([RedisTier.from_url(server.url, max_item_bytes=None),
                             ObjectTier(str(workdir / "durable-redis"), fsync=False)],
                            identity=identity)
        small_objects(results, "redis", args.small_count, repeats, raw.set, raw.get, tier, store)
        raw.flushall()
        large_object(results, "redis", repeats, raw.set, raw.get, tier, store, data)
        raw.flushall()
    finally:
        server.stop()

    # -- object tiers -----------------------------------------------------------------------
    local_root = workdir / "raw-local"
    local_fs = fsspec.filesystem("file")
    local_fs.mkdir(str(local_root))
    for fsync in (True, False):
        label = "local" if fsync else "local_nofsync"
        local_tier = ObjectTier(str(workdir / f"objects-{label}"), fsync=fsync)
        local_store = TieredStore([ObjectTier(str(workdir / f"store-{label}"), fsync=fsync)],
                                  identity=identity)
        count = args.small_count if not fsync else min(args.small_count, 2000)
        small_objects(results, label, count, repeats,
                      lambda n, b: local_fs.pipe_file(str(local_root / n), b),
                      lambda n: local_fs.cat_file(str(local_root / n)), local_tier, local_store)
        if fsync:
            large_object(results, label, repeats,
                         lambda n, b: local_fs.pipe_file(str(local_root / n), b),
                         lambda n: local_fs.cat_file(str(local_root / n)),
                         local_tier, local_store, data)

    servers = [("s3", MotoServer())] + ([] if args.skip_gcs else [("gcs", GcsServer())])
    for label, emulator in servers:
        emulator.start()
        try:
            if label == "s3":
                options = {"endpoint_url": emulator.endpoint, "key": "bench", "secret": "bench",
                           "client_kwargs": {"region_name": "us-east-1"}}
                import boto3

                boto3.client("s3", endpoint_url=emulator.endpoint, region_name="us-east-1"
                             ).create_bucket(Bucket="bench")
                protocol = "s3"
            else:
                options = {"endpoint_url": emulator.endpoint, "token": "anon", "project": "b"}
                fsspec.filesystem("gs", **options).mkdir("bench")
                protocol = "gs"
            fs = fsspec.filesystem(protocol, **options)
            tier = ObjectTier(f"{protocol}://bench/tier", storage_options=options)
            store = TieredStore([ObjectTier(f"{protocol}://bench/store",
                                            storage_options=options)], identity=identity)
            small_objects(results, label, args.remote_small_count, repeats,
                          lambda n, b, fs=fs, p=protocol: fs.pipe_file(f"{p}://bench/raw/{n}", b),
                          lambda n, fs=fs, p=protocol: fs.cat_file(f"{p}://bench/raw/{n}"),
                          tier, store)
            large_object(results, label, repeats,
                         lambda n, b, fs=fs, p=protocol: fs.pipe_file(f"{p}://bench/raw/{n}", b),
                         lambda n, fs=fs, p=protocol: fs.cat_file(f"{p}://bench/raw/{n}"),
                         tier, store, data)
        finally:
            emulator.stop()

    results.print()
    figures = results.figures
    goals = {
        "memory_100m_hit_GBps": round(BIG / figures["memory_100m_store_get_s"] / 1e9, 2),
        "redis_100m_get_vs_raw": figures["redis_100m_store_get_speed_vs_raw"],
        "redis_1k_get_time_vs_raw": round(figures["redis_1k_store_get_s"]
                                          / figures["redis_1k_raw_get_s"], 3),
        "keying_100m_GBps": round(BIG / figures["keying_100m_s"] / 1e9, 2),
    }
    print()
    print("goals: memory hit >= 2 GB/s: {memory_100m_hit_GBps} GB/s; redis 100MB get >= 0.8x raw:"
          " {redis_100m_get_vs_raw}x; redis 1KB get time <= 1.5x raw: {redis_1k_get_time_vs_raw}x;"
          " keying >= 1 GB/s: {keying_100m_GBps} GB/s".format(**goals))
    emit({"repeats": repeats, "goals": goals, **figures})


if __name__ == "__main__":
    main()
