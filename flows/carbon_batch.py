"""Example: an ML-style batch that is cached and carbon-aware.

    prepare -> train x N (carbon-aware: may wait, may move) -> evaluate

Runs on embedded defaults: the store is memory plus a local directory, the intensities are the
shipped 2022 Electricity Maps data, and the two "regions" are two local thread pools standing in
for two clusters: home ``DE`` and ``FR``. Because the data is from 2022, the runner's clock
starts on 2022-06-01 18:00 UTC, an evening when Germany's grid is dirty and gets cleaner
overnight; it starts when the flow run does, not when the script does (Prefect may take half a
minute to start its temporary API first).

    .venv/bin/python flows/carbon_batch.py                 # advise: plan, record, run now
    .venv/bin/python flows/carbon_batch.py --act --fast    # act on it, one grid hour = 1 s

``--act`` lets the runner defer and relocate; ``--fast`` compresses time (an hour of grid time
per second) so deferral is real but takes seconds. Half of the training tasks may move to FR, the
other half may only wait.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# Prefect reads its settings when imported: set them first (a slow machine may take more than
# the default to start the temporary API)
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

from prefect import flow, task
from prefect.task_runners import ThreadPoolTaskRunner

from flowcache.carbon.clocks import CompressedClock
from flowcache.carbon.timestamps import to_epoch
from prefect_cache import cache
from prefect_cache.carbon_option import carbon
from prefect_cache.carbon_runner import CarbonAwareTaskRunner

ORIGIN = to_epoch("2022-06-01T18:00:00Z")


@cache(keep=True)
@task
def prepare(samples: int) -> list[list[float]]:
    return [[(i * j) % 7 / 7.0 for j in range(16)] for i in range(samples)]


def _train(data: list[list[float]], seed: int) -> dict[str, float]:
    weight = sum(row[seed % 16] for row in data) / max(1, len(data))
    return {"seed": seed, "weight": round(weight, 4)}


def training_tasks(act: bool) -> tuple:
    """The same cached training step with two carbon options: may also move to FR, or may
    only wait. Without ``act`` both only advise."""
    def variant(name: str, regions: list[str], mode: str):
        marked = carbon(max_delay="14h", duration="1h", power=300.0, regions=regions,
                        mode=mode if act else "advise")
        return marked(cache(keep=True)(task(_train, name=name)))

    return (variant("train", ["FR"], "defer+relocate"), variant("train-here", [], "defer"))


@cache(keep=True)
@task
def evaluate(models: list[dict[str, float]]) -> dict[str, float]:
    return {"models": len(models), "best": max(m["weight"] for m in models)}


def make_runner(fast: bool) -> CarbonAwareTaskRunner:
    clock = CompressedClock(ORIGIN, speed=3600.0 if fast else 1.0)
    return CarbonAwareTaskRunner(ThreadPoolTaskRunner(max_workers=4), home="DE",
                                 regions={"FR": ThreadPoolTaskRunner(max_workers=4)},
                                 provider="files", clock=clock, capacity=2)


def build_flow(act: bool, fast: bool, models: int):
    anywhere, here = training_tasks(act)

    @flow(name="flowcache-carbon-batch", task_runner=make_runner(fast))
    def batch(samples: int = 200) -> dict[str, float]:
        data = prepare(samples)
        futures = [(anywhere if i % 2 else here).submit(data, i) for i in range(models)]
        return evaluate([f.result() for f in futures])

    return batch


def main() -> None:
    parser = argparse.ArgumentParser(description="carbon-aware, cached ML batch")
    parser.add_argument("--act", action="store_true", help="defer and relocate (default: advise)")
    parser.add_argument("--fast", action="store_true", help="one grid hour per wall second")
    parser.add_argument("--models", type=int, default=4)
    args = parser.parse_args()
    batch = build_flow(args.act, args.fast, args.models)
    started = time.perf_counter()
    state = batch(return_state=True)
    print(f"\nresult: {state.result()} in {time.perf_counter() - started:.1f} s")
    runner = batch.task_runner._children[-1]
    from flowcache.carbon.report import report_rows, summary_line

    for row in report_rows(runner.records):
        print(f"  {row['task']}: {row['action']} in {row['region']}, planned "
              f"{row['planned start']}, realised {row['realised g']} g "
              f"vs {row['run now at home g']} g now at home")
    print(summary_line(runner.records))
    print(f"runner overhead: {1000 * runner.overhead_seconds / max(1, runner.submissions):.2f}"
          f" ms per submission")


if __name__ == "__main__":
    main()
