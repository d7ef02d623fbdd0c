"""Carbon-aware placement on a real Dask cluster whose workers carry region resources."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

import dask_cache
from flowcache.carbon.clocks import ManualClock
from tests import dask_jobs as jobs
from tests.known_provider import HOME, HOUR, NORTH, T0, KnownProvider
from tests.prefect_helpers import eventually

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def regions():
    """One worker per region: home (in the LocalCluster) and north (its own process)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                      resources={"region-home": 1}, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        north = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", cluster.scheduler_address,
             "--nthreads", "2", "--resources", "region-north=1", "--no-dashboard",
             "--name", "north"], cwd=ROOT, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        try:
            client.wait_for_workers(2, timeout=60)
            workers = client.scheduler_info()["workers"]
            by_region = {next(iter(info["resources"])).removeprefix("region-"): address
                         for address, info in workers.items()}
            yield client, by_region
        finally:
            north.terminate()
            north.wait(120)


def test_a_carbon_aware_submission_lands_on_the_greener_regions_workers(regions, store_dir):
    client, by_region = regions
    clock = ManualClock(T0)
    with dask_cache.CarbonPlacer(client, home="home", regions=["north"],
                                 provider=KnownProvider({"home": HOME, "north": NORTH}),
                                 clock=clock, store=store_dir) as placer:
        moved = placer.submit(jobs.where_am_i)
        plain = placer.submit(jobs.work, 3)  # not carbon-aware: untouched
        assert moved.result(60) == by_region["north"]  # 300 g/kWh beats 400 at home now
        assert plain.result(60) == 9
    (record,) = placer.records
    assert record.decision.action == "relocate"
    assert record.actual_region == "north"


def test_a_deferred_submission_waits_without_occupying_a_worker(regions, store_dir):
    client, by_region = regions
    clock = ManualClock(T0)
    placer = dask_cache.CarbonPlacer(client, home="home",
                                     provider=KnownProvider({"home": HOME}), clock=clock,
                                     store=store_dir)
    held = placer.submit(jobs.later)
    assert placer.pending == 1
    assert not held.released()
    time.sleep(0.3)  # a check that nothing was sent to the cluster, not a timing assert
    assert all(not tasks for tasks in client.processing().values())  # no worker is busy
    clock.set(T0 + 3 * HOUR)
    assert held.result(60) == by_region["home"]
    records = placer.close()
    assert records[0].actual_start == T0 + 3 * HOUR
    assert records[0].decision.action == "defer"
    from flowcache.carbon.report import load_records

    (stored,) = load_records(store_dir, f"dask-{client.id}")  # flowcache carbon report
    assert stored.decision.start == T0 + 3 * HOUR


def test_cancelling_held_work(regions, store_dir):
    client, _ = regions
    clock = ManualClock(T0)
    placer = dask_cache.CarbonPlacer(client, home="home",
                                     provider=KnownProvider({"home": HOME}), clock=clock)
    held = placer.submit(jobs.later)
    assert placer.cancel_all() == 1
    assert held.done()
    with pytest.raises(RuntimeError, match="cancelled"):
        held.result(5)
    assert eventually(lambda: placer.pending == 0, 120)
    placer.close(wait=False)


@pytest.fixture
def store_dir(tmp_path, make_store):
    from flowcache.tiers.objects import ObjectTier

    return make_store(ObjectTier(str(tmp_path / "durable")))
