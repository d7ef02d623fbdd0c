"""A first look at the flowcache store, on embedded defaults (no server, no cloud, no keys).

Runs a slow step twice through the store: the first run computes and stores the result
durably (a directory under your cache dir), the second reads it back. Then it edits the input
file, which gives a new key and so a recomputation.

    make demo        (or: .venv/bin/python flows/demo.py)
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from flowcache import StoreConfig, content_key, hash_inputs
from flowcache.code_identity import function_identity


def slow_word_count(path: Path) -> dict[str, int]:
    time.sleep(1.0)  # stands in for real work
    counts: dict[str, int] = {}
    for word in path.read_text().split():
        counts[word] = counts.get(word, 0) + 1
    return counts


def run(store, path: Path) -> None:
    key = content_key(namespace=store.namespace, identity=function_identity(slow_word_count),
                      inputs_digest=hash_inputs({"path": path}))
    started = time.perf_counter()
    outcome = store.get_or_compute(key, lambda: slow_word_count(path))
    elapsed = time.perf_counter() - started
    source = f"hit from the {outcome.tier} tier" if outcome.hit else "miss: computed and stored"
    print(f"  key {key[:12]}…  {source:<34} {elapsed * 1000:8.1f} ms  -> {outcome.value}")


def main() -> None:
    config = StoreConfig.from_env()
    store = config.build()
    print(f"store: {store.describe()}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "words.txt")
        path.write_text("to be or not to be")
        print("first run:")
        run(store, path)
        print("second run (same input):")
        run(store, path)
        print("a new process would read it from disk:")
        run(config.build(), path)
        path.write_text("to be or not to be, that is the question")
        print("after editing the input file:")
        run(store, path)


if __name__ == "__main__":
    main()
