"""Example: a batch pipeline over sample files, cached with flowcache.

    samples/*.txt --> per sample: load -> normalize -> features --> merge

``features`` is the cached unit of work per sample (kept across runs); ``load`` and ``normalize``
are its steps, run as nested tasks whose results are intermediates (``lifetime="flow"``): they
exist while the run needs them and are purged from every tier when it ends. On a second run
``features`` hits for every unchanged sample, so its steps do not run at all; edit one sample and
exactly that sample's ``features`` (with its steps) and the ``merge`` recompute.

``EXECUTIONS`` counts how often each task body ran in this process, for the demo and the tests.
"""

from __future__ import annotations

import collections
import hashlib
import time
from pathlib import Path

from prefect import flow, task

from prefect_cache import cache, cache_hooks

EXECUTIONS: collections.Counter[str] = collections.Counter()
WORK_SECONDS = 0.2  # each step pretends to work this long, so hits have something to save


@cache(lifetime="flow")
@task
def load(sample: Path) -> bytes:
    EXECUTIONS["load"] += 1
    time.sleep(WORK_SECONDS)
    return sample.read_bytes()


@cache(lifetime="flow")
@task
def normalize(raw: bytes) -> bytes:
    EXECUTIONS["normalize"] += 1
    time.sleep(WORK_SECONDS)
    return b" ".join(raw.lower().split())


@cache(keep=True)
@task
def features(sample: Path) -> dict[str, float]:
    EXECUTIONS["features"] += 1
    text = normalize(load(sample))
    words = text.split()
    time.sleep(WORK_SECONDS)
    return {"sample": sample.stem, "words": len(words),
            "distinct": len(set(words)), "mean_length": sum(map(len, words)) / max(1, len(words))}


@cache(keep=True)
@task
def merge(rows: list[dict[str, float]]) -> dict[str, float]:
    EXECUTIONS["merge"] += 1
    time.sleep(WORK_SECONDS)
    return {"samples": len(rows), "words": sum(r["words"] for r in rows),
            "distinct_max": max((r["distinct"] for r in rows), default=0)}


@flow(name="flowcache-example-pipeline", **cache_hooks())
def pipeline(data_dir: Path) -> dict[str, float]:
    samples = sorted(Path(data_dir).glob("*.txt"))
    rows = [future.result() for future in features.map(samples)]
    return merge(rows)


def make_samples(data_dir: Path, count: int = 6, words: int = 20_000) -> list[Path]:
    """Write ``count`` deterministic sample files (skipping any that already exist)."""
    vocabulary = ["alpha", "Beta", "gamma", "delta", "EPSILON", "zeta", "eta", "theta"]
    data_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = data_dir / f"sample-{index:02d}.txt"
        if not path.exists():
            seed = hashlib.sha256(str(index).encode()).digest()
            text = " ".join(vocabulary[(seed[i % 32] + i * (index + 1)) % len(vocabulary)]
                            for i in range(words))
            path.write_text(text)
        paths.append(path)
    return paths
