"""Example: a dask.delayed pipeline over files, cached at graph level on a LocalCluster.

    files -> parse -> per-file statistics -> summary

Runs the pipeline three times on a local cluster of worker processes (embedded defaults: memory
plus a local directory, and a node tier in shared memory that the workers share):

1. cold: every task computes, and the results worth keeping are stored;
2. warm: the summary is loaded from the cache and nothing else runs;
3. after editing one file: exactly that file's branch and the summary recompute.

    .venv/bin/python flows/dask_pipeline.py
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dask import delayed

import dask_cache
from flowcache.config import StoreConfig


def parse(path: Path) -> list[float]:
    time.sleep(0.2)  # stands in for real parsing
    return [float(x) for x in Path(path).read_text().split()]


def statistics(values: list[float]) -> dict[str, float]:
    time.sleep(0.2)
    return {"n": len(values), "mean": sum(values) / max(1, len(values)), "max": max(values)}


def summary(stats: list[dict[str, float]]) -> dict[str, float]:
    return {"files": len(stats), "values": sum(s["n"] for s in stats),
            "max": max(s["max"] for s in stats)}


def make_files(directory: Path, count: int = 8) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        seed = hashlib.sha256(str(index).encode()).digest()
        path = directory / f"values-{index}.txt"
        path.write_text(" ".join(str(b) for b in seed * 50))
        paths.append(path)
    return paths


def pipeline(paths: list[Path]):
    return delayed(summary)([delayed(statistics)(delayed(parse)(p)) for p in paths])


def main() -> None:
    from distributed import Client, LocalCluster

    config = StoreConfig.from_env()
    store = config.build()
    with tempfile.TemporaryDirectory(prefix="flowcache-dask-demo-") as tmp, \
            LocalCluster(n_workers=2, threads_per_worker=2, processes=True,
                         dashboard_address=":0") as cluster, Client(cluster) as client:
        client.register_plugin(dask_cache.CacheWorkerPlugin(config))
        paths = make_files(Path(tmp))
        for title in ("cold", "warm", "one file edited"):
            if title == "one file edited":
                paths[5].write_text(paths[5].read_text() + " 999")
            started = time.perf_counter()
            (result,), plan = dask_cache.compute(pipeline(paths), client=client, store=store,
                                                 return_plan=True)
            print(f"{title}: {time.perf_counter() - started:.2f} s -> {result}")
            print(f"  {plan.summary()}")
        tiers = client.run(dask_cache.worker_metrics)
        for address, counters in tiers.items():
            hits = {tier: c["hits"] for tier, c in counters["tiers"].items() if c["hits"]}
            print(f"  worker {address}: hits by tier {hits or 'none'}")


if __name__ == "__main__":
    main()
