"""Benchmark: reading S3 objects through flowcache:: against plain s3fs, measured in one run.

Starts its own moto server (S3) on a free loopback port, puts a 200 MB and a 1 GB object, then:

* plain s3fs ``cat`` of the 200 MB object (the baseline), interleaved with
* plain s3fs ``cat`` with a Range header for the whole object (moto answers a ranged GET far
  faster than a plain one, so this is the fastest plain read; the cache's fetches are ranged),
* a cold read through ``flowcache::`` (a fresh store: nothing cached; the bytes are returned
  while the blocks are stored in the background, timed separately as "incl. fill"), and
* a re-read through ``flowcache::`` served from the node tier (a store of node tier + durable
  tier, no memory tier, so no block can come from process memory), through a new filesystem
  instance over a new store object (nothing remembered in the process), checking the version
  (one HEAD, consistency "always") and verifying every block's MAC;
* the peers: the same re-read through fsspec's own ``simplecache::`` and ``filecache::`` (each
  filled once, then read through a new filesystem instance; neither checks the remote nor
  verifies its copy), their caches in a temporary directory on the local disk as by default;
* the flowcache re-read again with the node tier in a directory on that same disk (the peers'
  place), since this VM's tmpfs (``/dev/shm``, the node tier's default) copies out slower than
  the disk's page cache;
* random 1 MB range reads of the cached 1 GB object on an open file: from the node tier alone,
  and with a memory tier (default 512 MiB budget) in front.

Every store: node tier in ``/dev/shm`` (as deployed), durable tier a local directory with
fsync, file locks; consistency "always" (one metadata request per open). Every figure is the
median of ``--repeats`` runs (default 5). Prints a table, then one JSON object as the last line.

    .venv/bin/python bench/files.py [--repeats 5] [--random-reads 200] [--big-mb 200]
    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 .venv/bin/python bench/files.py
"""

from __future__ import annotations

from harness import MB, arguments, emit, median, timed

# isort: split
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import boto3
import fsspec

from flowcache.files import FlowcacheFileSystem
from flowcache.identity import Identity, new_key
from flowcache.locks import FileLocks
from flowcache.store import TieredStore
from flowcache.tiers.memory import MemoryTier
from flowcache.tiers.node import NodeTier
from flowcache.tiers.objects import ObjectTier
from tests.servers import MotoServer

# This VM (firecracker, free page reporting) makes every first touch of fresh memory slow
# (~1 ms per MB), which dominates a 200 MB re-read. Run it with glibc keeping freed memory
# (MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736), for both sides alike, to measure
# the cache rather than the page faults; the JSON says which allocator the run had.
ALLOCATOR = ("glibc, freed memory retained" if os.environ.get("MALLOC_MMAP_MAX_") == "0"
             else "glibc default")
IDENTITY = Identity("bench", new_key())
PEERS = ("simplecache", "filecache")


class Stores:
    """Fresh stores in throwaway directories (node tier under /dev/shm when there is one)."""

    def __init__(self) -> None:
        shm = Path("/dev/shm")
        self.node_root = Path(tempfile.mkdtemp(prefix="fc-bench-node-",
                                               dir=shm if shm.is_dir() else None))
        self.disk_root = Path(tempfile.mkdtemp(prefix="fc-bench-"))
        self.count = 0

    def make(self, *, memory: bool = False, node_bytes: int = 4 << 30,
             node_parent: Path | None = None) -> TieredStore:
        self.count += 1
        tiers = [MemoryTier()] if memory else []
        tiers += [NodeTier((node_parent or self.node_root) / f"n{self.count}",
                           max_bytes=node_bytes),
                  ObjectTier(str(self.disk_root / f"d{self.count}"))]
        return TieredStore(tiers, identity=IDENTITY, locks=FileLocks(self.disk_root / "locks"))

    def share(self, store: TieredStore, *, memory: bool) -> TieredStore:
        """Another store over ``store``'s node and durable tiers (a new process, in effect)."""
        tiers = ([MemoryTier()] if memory else []) + [store.tiers[-2], store.tiers[-1]]
        return TieredStore(tiers, identity=IDENTITY, locks=FileLocks(self.disk_root / "locks"))

    def cleanup(self) -> None:
        shutil.rmtree(self.node_root, ignore_errors=True)
        shutil.rmtree(self.disk_root, ignore_errors=True)


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--random-reads", type=int, default=200)
    parser.add_argument("--big-mb", type=int, default=200)
    parser.add_argument("--huge-mb", type=int, default=1024)
    args = parser.parse_args()
    repeats = max(5, args.repeats)
    big_bytes, huge_bytes = args.big_mb * MB, args.huge_mb * MB

    server = MotoServer().start()
    stores = Stores()
    try:
        options = {"endpoint_url": server.endpoint, "key": "bench", "secret": "bench",
                   "client_kwargs": {"region_name": "us-east-1"}}
        boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1"
                     ).create_bucket(Bucket="bench")
        s3 = fsspec.filesystem("s3", **options)
        data = os.urandom(big_bytes)
        s3.pipe_file("bench/big.bin", data, chunksize=big_bytes + 1)
        expected = data
        del data

        def cache(store: TieredStore, **kw) -> FlowcacheFileSystem:
            return FlowcacheFileSystem(target_protocol="s3", target_options=options,
                                       store=store, **kw)

        peer_dirs = {name: tempfile.mkdtemp(prefix=f"fc-bench-{name}-",
                                            dir=stores.disk_root) for name in PEERS}

        def peer(name: str) -> fsspec.AbstractFileSystem:
            return fsspec.filesystem(name, target_protocol="s3", target_options=options,
                                     cache_storage=peer_dirs[name], skip_instance_cache=True)

        for name in PEERS:  # fill each peer's cache once
            assert peer(name).cat_file("bench/big.bin") == expected
        disk_store = stores.make(node_parent=stores.disk_root)
        cache(disk_store).cat_file("bench/big.bin")
        cache(disk_store).wait()

        plain, ranged, cold, cold_fill, warm = [], [], [], [], []
        peers: dict[str, list[float]] = {name: [] for name in PEERS}
        warm_disk: list[float] = []
        warm_store = None
        for _ in range(repeats):  # interleaved, so drift on the shared machine hits all alike
            seconds, out = timed(lambda: s3.cat_file("bench/big.bin"))
            assert out == expected
            plain.append(seconds)
            del out
            seconds, out = timed(lambda: s3.cat_file("bench/big.bin", start=0, end=big_bytes))
            ranged.append(seconds)
            del out
            store = stores.make()
            fs = cache(store)
            start = time.perf_counter()
            out = fs.cat_file("bench/big.bin")
            cold.append(time.perf_counter() - start)
            fs.wait()
            cold_fill.append(time.perf_counter() - start)
            assert out == expected
            del out
            warm_store = store
            reader = cache(stores.share(warm_store, memory=False))
            seconds, out = timed(lambda reader=reader: reader.cat_file("bench/big.bin"))
            assert out == expected
            warm.append(seconds)
            del out
            for name in PEERS:
                seconds, out = timed(lambda name=name: peer(name).cat_file("bench/big.bin"))
                assert out == expected
                peers[name].append(seconds)
                del out
            seconds, out = timed(lambda: cache(stores.share(disk_store, memory=False)
                                               ).cat_file("bench/big.bin"))
            assert out == expected
            warm_disk.append(seconds)
            del out
        del expected

        # -- random 1 MB reads of a cached 1 GB object --------------------------------------
        huge = os.urandom(huge_bytes)
        s3.pipe_file("bench/huge.bin", huge, chunksize=huge_bytes + 1)
        base = stores.make()
        fill_seconds, _ = timed(lambda: (cache(base).cat_file("bench/huge.bin"),
                                         cache(base).wait()))
        rng = random.Random(1)
        offsets = [rng.randrange(0, huge_bytes - MB) for _ in range(args.random_reads)]
        random_ms = {}
        for label, memory in (("node", False), ("memory_node", True)):
            store = stores.share(base, memory=memory)
            times = []
            with cache(store).open("bench/huge.bin") as handle:
                for offset in offsets:
                    handle.seek(offset)
                    start = time.perf_counter()
                    chunk = handle.read(MB)
                    times.append(time.perf_counter() - start)
                    assert chunk == huge[offset:offset + MB]
            random_ms[label] = (median(times) * 1e3,
                                sorted(times)[int(len(times) * 0.9)] * 1e3)
        plain_range = []
        for offset in offsets[:repeats]:
            seconds, chunk = timed(lambda offset=offset: s3.cat_file("bench/huge.bin",
                                                                     start=offset,
                                                                     end=offset + MB))
            plain_range.append(seconds)
        del huge
    finally:
        stores.cleanup()
        server.stop()

    med = median
    figures = {
        "repeats": repeats, "object_mb": args.big_mb, "huge_mb": args.huge_mb,
        "allocator": ALLOCATOR,
        "plain_s3fs_cat_s": round(med(plain), 4),
        "plain_s3fs_ranged_cat_s": round(med(ranged), 4),
        "cold_read_s": round(med(cold), 4),
        "cold_read_incl_fill_s": round(med(cold_fill), 4),
        "node_reread_s": round(med(warm), 4),
        "node_reread_speedup": round(med(plain) / med(warm), 2),
        "node_reread_speedup_vs_ranged": round(med(ranged) / med(warm), 2),
        "simplecache_reread_s": round(med(peers["simplecache"]), 4),
        "filecache_reread_s": round(med(peers["filecache"]), 4),
        "node_on_disk_reread_s": round(med(warm_disk), 4),
        "node_reread_vs_simplecache": round(med(warm) / med(peers["simplecache"]), 3),
        "node_on_disk_reread_vs_simplecache": round(med(warm_disk) / med(peers["simplecache"]),
                                                    3),
        "cold_vs_plain": round(med(cold) / med(plain), 3),
        "huge_cold_read_incl_fill_s": round(fill_seconds, 3),
        "random_1mb_node_median_ms": round(random_ms["node"][0], 3),
        "random_1mb_node_p90_ms": round(random_ms["node"][1], 3),
        "random_1mb_memory_node_median_ms": round(random_ms["memory_node"][0], 3),
        "random_1mb_memory_node_p90_ms": round(random_ms["memory_node"][1], 3),
        "plain_s3fs_random_1mb_median_ms": round(med(plain_range) * 1e3, 1),
    }
    goals = {
        "node_reread_10x": figures["node_reread_speedup"] >= 10,
        "cold_within_1.2x": figures["cold_vs_plain"] <= 1.2,
        "random_1mb_under_5ms": figures["random_1mb_node_median_ms"] < 5,
        "reread_as_fast_as_simplecache": figures["node_reread_vs_simplecache"] <= 1.0,
    }
    rows = [
        ("plain s3fs cat, 200 MB", med(plain), ""),
        ("plain s3fs cat with a Range header", med(ranged), "(moto serves ranges faster)"),
        ("flowcache:: cold read", med(cold), f"{figures['cold_vs_plain']}x plain"),
        ("  incl. storing the blocks", med(cold_fill), ""),
        ("flowcache:: re-read (node tier)", med(warm),
         f"{figures['node_reread_speedup']}x faster "
         f"({figures['node_reread_speedup_vs_ranged']}x the ranged cat; "
         f"{figures['node_reread_vs_simplecache']}x simplecache)"),
        ("fsspec simplecache:: re-read", med(peers["simplecache"]), "(no check, no MAC)"),
        ("fsspec filecache:: re-read", med(peers["filecache"]), "(no check, no MAC)"),
        ("flowcache:: re-read, node tier on disk", med(warm_disk),
         f"{figures['node_on_disk_reread_vs_simplecache']}x simplecache"),
        ("random 1 MB read, node tier", random_ms["node"][0] / 1e3,
         f"p90 {random_ms['node'][1]:.2f} ms"),
        ("random 1 MB read, memory+node", random_ms["memory_node"][0] / 1e3,
         f"p90 {random_ms['memory_node'][1]:.2f} ms"),
        ("plain s3fs 1 MB range, 1 GB object", med(plain_range), ""),
    ]
    print(f"{'case':<38} {'median s':>10}  note")
    for case, seconds, note in rows:
        print(f"{case:<38} {seconds:10.4f}  {note}")
    print(f"allocator: {ALLOCATOR}; goals: {goals}")
    emit({"goals": goals, **figures})


if __name__ == "__main__":
    main()
