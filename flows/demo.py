"""The quickstart demo: the example pipeline, three times, on embedded defaults.

No Redis, no cloud, no API keys: the store is process memory plus a directory under your cache
dir, and Prefect runs its own temporary API. The demo

1. runs the pipeline over six fresh sample files (everything computes),
2. runs it again (every task is a hit: no task body runs),
3. edits one sample and runs it a third time (exactly that sample's branch and the merge
   recompute),

printing after each run what the cache did, from the statistics artifact each run publishes.
At the end it removes the demo's entries from the store.

    make demo        (or: .venv/bin/python flows/demo.py [--verbose])
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description="flowcache quickstart demo")
    parser.add_argument("--verbose", action="store_true", help="show Prefect's own logs")
    args = parser.parse_args()
    if not args.verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # the temporary API needs ~20 s to start here, more on a busy machine
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

    from flowcache.config import default_store
    from flowcache.purge import clear
    from flows import pipeline as example

    store = default_store()
    print(f"store: {store.describe()}")
    with tempfile.TemporaryDirectory(prefix="flowcache-demo-") as tmp:
        samples = example.make_samples(Path(tmp) / "samples", count=6)
        print(f"samples: {len(samples)} files in {samples[0].parent}")
        print("starting Prefect's temporary API (about 20 s the first time)...")
        _run("run 1: cold", example, samples)
        _run("run 2: warm", example, samples)
        samples[3].write_text(samples[3].read_text() + " omega")
        print(f"\nedited {samples[3].name}")
        _run("run 3: one input edited", example, samples)
    removed = clear(store, flow="flowcache-example-pipeline")
    print(f"\ncleaned up: removed the demo's {removed.entries} kept entries from the store")


def _run(title: str, example, samples: list[Path]) -> None:
    example.EXECUTIONS.clear()
    started = time.perf_counter()
    state = example.pipeline(samples[0].parent, return_state=True)
    elapsed = time.perf_counter() - started
    result = state.result()
    ran = ", ".join(f"{name} x{count}" for name, count in sorted(example.EXECUTIONS.items()))
    print(f"\n{title}: {elapsed:.1f} s, merged {result['words']:,} words")
    print(f"  task bodies that ran: {ran or 'none'}")
    stats = _stats_artifact(state.state_details.flow_run_id)
    if stats is not None:
        rows, description = stats
        total = rows[-1]
        print(f"  cache: {total['hits']} hits, {total['misses']} misses, "
              f"{total['task time saved (summed)']} of task time skipped by hits (summed "
              "over tasks)")
        print(f"  {description.split(': ', 1)[-1]}")


def _stats_artifact(flow_run_id) -> tuple[list[dict], str] | None:
    import json

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterId,
    )

    for _ in range(50):  # the API stores artifacts asynchronously
        with get_client(sync_client=True) as client:
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_="flowcache-stats-")),
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        if found:
            data = found[0].data
            return (json.loads(data) if isinstance(data, str) else data), found[0].description
        time.sleep(0.1)
    return None


if __name__ == "__main__":
    main()
