"""Functions the Dask tests run on worker processes (importable there by module name)."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

from dask_cache.options import cache, carbon


def work(i: int) -> int:
    time.sleep(0.01)
    return i * i


def add(a: int, b: int) -> int:
    time.sleep(0.002)
    return a + b


def read_words(path: Path) -> list[str]:
    time.sleep(0.01)
    return Path(path).read_text().split()


def count(words: list[str]) -> int:
    time.sleep(0.005)
    return len(words)


def total(counts: list[int]) -> int:
    return sum(counts)


def slow(i: int) -> int:
    time.sleep(0.2)
    return i


def blob(n: int) -> bytes:
    return os.urandom(n)


@cache(keep=True)
def cached_square(x: int) -> dict:
    return {"x": x, "pid": os.getpid(), "square": x * x}


@cache(keep=True)
def cached_blob(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


@carbon(duration="1h", power=200, regions=["north"], mode="relocate")
def where_am_i() -> str:
    from distributed import get_worker

    return get_worker().address


@carbon(duration="1h", power=200, max_delay="6h", mode="defer")
def later() -> str:
    from distributed import get_worker

    return get_worker().address


async def die() -> None:
    """For ``client.run(die, wait=False)``: end this worker process abruptly."""
    os._exit(1)


def worker_settings(dask_worker=None) -> dict:
    """For ``client.run``: dask_cache's settings as this worker process parses them."""
    from dataclasses import asdict

    from dask_cache.settings import DaskCacheSettings

    return asdict(DaskCacheSettings.current())


def worker_plugins(dask_worker) -> list[str]:
    """For ``client.run``: the names of the plugins installed on this worker."""
    return sorted(dask_worker.plugins)


def scheduler_plugins(dask_scheduler) -> list[str]:
    """For ``client.run_on_scheduler``: the names of the scheduler's plugins."""
    return sorted(dask_scheduler.plugins)
