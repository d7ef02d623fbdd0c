"""Eight processes racing to produce one key: the producer runs once, all read the same bytes."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from flowcache.identity import new_key

KEY = "5f" * 32
PROCESSES = 8


def _race(env: dict, counter: str, barrier, results) -> None:
    from flowcache.config import StoreConfig

    store = StoreConfig.from_env(env).build()

    def produce() -> bytes:
        with open(counter, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        time.sleep(0.3)  # simulated work: the other processes arrive while it runs
        return os.urandom(1 << 20)  # two producers would disagree

    barrier.wait()
    outcome = store.get_or_compute(KEY, produce)
    results.put((outcome.hit, hashlib.sha256(outcome.value).hexdigest()))
    store.close()


def _run_race(env: dict, tmp_path: Path) -> list[tuple[bool, str]]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    counter = str(tmp_path / "producers.log")
    procs = [context.Process(target=_race, args=(env, counter, barrier, results))
             for _ in range(PROCESSES)]
    for proc in procs:
        proc.start()
    out = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    producers = Path(counter).read_text().splitlines()
    assert len(producers) == 1, f"the producer ran in {len(producers)} processes"
    return out


def _env(tmp_path: Path, store: str, locks: str, options: dict | None = None) -> dict:
    return {"FLOWCACHE_STORE": store, "FLOWCACHE_USER": "alice",
            "FLOWCACHE_SIGNING_KEY": new_key().hex(), "FLOWCACHE_LOCKS": locks,
            "FLOWCACHE_LOCK_DIR": str(tmp_path / "locks"),
            "FLOWCACHE_STORAGE_OPTIONS": json.dumps(options or {})}


def _options(endpoint) -> dict:
    return {endpoint.protocol: {k: v for k, v in endpoint.options().items()
                                if k != "skip_instance_cache"}}


@pytest.mark.parametrize("setup", ["local-file-locks", "s3-redis-locks", "gcs-redis-locks",
                                   "gcs-file-locks"])
def test_eight_processes_produce_once(setup, tmp_path, request):
    if setup == "local-file-locks":
        env = _env(tmp_path, f"memory+{tmp_path}/store", "file")
    else:
        backend, _, locks = setup.partition("-")
        endpoint = request.getfixturevalue(backend)
        bucket = endpoint.new_bucket()
        durable = f"{endpoint.protocol}://{bucket}/cache"
        if locks == "redis-locks":
            redis_url = request.getfixturevalue("redis_url")
            spec, lock_kind = f"memory+{redis_url}+{durable}", "redis"
        else:
            spec, lock_kind = f"memory+{durable}", "file"
        env = _env(tmp_path, spec, lock_kind, _options(endpoint))
    out = _run_race(env, tmp_path)
    assert sum(1 for hit, _ in out if not hit) == 1  # one computed...
    assert len({digest for _, digest in out}) == 1  # ...and everyone read its bytes
