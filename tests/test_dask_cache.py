"""dask_cache on real LocalClusters (worker processes): graph caching, the node tier, a killed
worker, residency billing and session purge."""

from __future__ import annotations

import threading
import time

import dask
import pytest
from dask import delayed

import dask_cache
from dask_cache.tasks import load
from flowcache.config import StoreConfig
from flowcache.frames import decode
from flowcache.identity import new_key
from tests import dask_jobs as jobs
from tests.prefect_helpers import eventually


@pytest.fixture(scope="module")
def config(tmp_path_factory, redis_server):
    root = tmp_path_factory.mktemp("dask-store")
    return StoreConfig.from_env({
        "FLOWCACHE_STORE": f"memory+{redis_server.url}+{root}/durable",
        "FLOWCACHE_USER": "gus", "FLOWCACHE_SIGNING_KEY": new_key().hex(),
        "FLOWCACHE_LOCK_DIR": str(root / "locks")})


@pytest.fixture(scope="module")
def cluster(config, tmp_path_factory):
    from distributed import Client, LocalCluster

    node_dir = tmp_path_factory.mktemp("node")
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        client.register_plugin(dask_cache.CacheWorkerPlugin(config, node_dir=str(node_dir)))
        client.register_plugin(dask_cache.CacheSchedulerPlugin(config))
        yield cluster, client


@pytest.fixture
def client(cluster):
    return cluster[1]


@pytest.fixture
def store(config):
    return config.build()


def computed(client) -> int:
    return sum(c.get("computed", 0) for c in client.run(dask_cache.graph_counters).values())


def tree(n: int):
    leaves = [delayed(jobs.work)(i) for i in range(n)]
    while len(leaves) > 1:
        leaves = [delayed(jobs.add)(leaves[i], leaves[i + 1]) if i + 1 < len(leaves)
                  else leaves[i] for i in range(0, len(leaves), 2)]
    return leaves[0]


def test_the_second_run_of_a_500_task_graph_computes_nothing(client, store):
    graph = tree(251)  # 251 leaves + 250 sums
    before = computed(client)
    (first,), plan = dask_cache.compute(graph, client=client, store=store, return_plan=True)
    assert first == sum(i * i for i in range(251))
    assert len(plan.chain) >= 500
    assert computed(client) - before == len(plan.computes) >= 500
    before = computed(client)
    (second,), plan = dask_cache.compute(graph, client=client, store=store, return_plan=True)
    assert second == first
    assert plan.computes == set()
    assert len(plan.loads) == 1
    assert computed(client) == before  # not one task ran


def test_an_edited_input_file_recomputes_exactly_its_dependants(client, store, tmp_path):
    paths = []
    for i in range(6):
        path = tmp_path / f"part-{i}.txt"
        path.write_text(" ".join(["word"] * (i + 1)))
        paths.append(path)

    def pipeline():
        counts = [delayed(jobs.count)(delayed(jobs.read_words)(p)) for p in paths]
        return delayed(jobs.total)(counts)

    (first,) = dask_cache.compute(pipeline(), client=client, store=store)
    assert first == 21
    paths[3].write_text("word " * 10)
    (second,), plan = dask_cache.compute(pipeline(), client=client, store=store,
                                         return_plan=True)
    assert second == 21 - 4 + 10
    labels = sorted(str(key).split("-")[0] for key in plan.computes)
    assert labels == ["count", "read_words", "total"]  # exactly the edited file's branch
    assert len(plan.loads) == 5  # the other counts came from the cache


def test_a_result_cached_on_one_worker_is_read_by_another_from_the_node_tier(client, store):
    first, second = sorted(client.scheduler_info()["workers"])
    key = "3c" * 32
    client.submit(lambda: dask_cache_store_put(key), workers=[first], pure=False).result()
    value = client.submit(load, key, "test", workers=[second], pure=False).result()
    assert value == b"payload from the first worker"
    metrics = client.run(dask_cache.worker_metrics, workers=[second])[second]["tiers"]
    assert metrics["node"]["hits"] >= 1, metrics
    assert metrics.get("redis", {}).get("hits", 0) == 0
    assert metrics.get("object", {}).get("hits", 0) == 0
    def shown():  # custom metrics reach the scheduler with the next heartbeat
        return client.scheduler_info()["workers"][second]["metrics"].get(
            "flowcache-node-hits", 0) >= 1

    assert eventually(shown, 120), client.scheduler_info()["workers"][second]["metrics"]


def dask_cache_store_put(key: str) -> None:
    from flowcache.config import default_store

    default_store().put(key, b"payload from the first worker")


def test_killing_a_worker_mid_run_loses_no_committed_entry(cluster, client, store):
    graph = [delayed(jobs.slow)(i + 1000) for i in range(24)]
    box = {}
    thread = threading.Thread(target=lambda: box.update(
        result=dask_cache.compute(*graph, client=client, store=store)))
    thread.start()
    assert eventually(lambda: sum(1 for _ in store.scan()) >= 4, 60)
    victim = sorted(client.scheduler_info()["workers"])[0]
    client.run(jobs.die, workers=[victim], wait=False)
    thread.join(120)
    assert box["result"] == tuple(range(1000, 1024))
    for name in store.scan():
        frame = store.durable.get(name)
        decode(frame, identity=store.identity)  # every committed frame is whole and signed
    (_, plan) = dask_cache.compute(*graph, client=client, store=store, return_plan=True)
    assert plan.computes == set()
    client.wait_for_workers(2, timeout=60)


def test_residency_billing_matches_nbytes_times_time(client, config):
    from dask.sizeof import sizeof

    sizes = [200_000, 300_000]
    submitted = time.time()
    with dask.annotate(flowcache=True, flowcache_owner="residency-test"):
        futures = [client.submit(jobs.blob, n, pure=False) for n in sizes]
    client.gather(futures)
    held_from = time.time()
    nbytes = sum(sizeof(b"x" * n) for n in sizes)
    time.sleep(1.5)  # hold the results in cluster memory for a measured while
    keys = [f.key for f in futures]

    def gone():
        return not client.run_on_scheduler(
            lambda dask_scheduler, keys=keys: [k for k in keys if k in dask_scheduler.tasks])

    released = time.time()
    del futures  # the scheduler releases them within milliseconds of this
    assert eventually(gone, 120)
    gone_at = time.time()
    billed = client.run_on_scheduler(dask_cache.scheduler_residency)["residency-test"]
    # bytes x the time they were in cluster memory: at least while we held them, at most from
    # submission until we saw them gone (the bounds a loaded machine can only widen; quiet,
    # they are within a few percent of each other)
    assert nbytes * (released - held_from) * 0.999 <= billed <= nbytes * (gone_at - submitted)
    expected = billed

    from flowcache.accounts.billing import usage
    from flowcache.accounts.ledger import ledger_of

    ledger = ledger_of(config.build())  # what `flowcache billing` reads

    def ledgered():
        rows = usage(ledger.events("residency-test"), user="residency-test",
                     since=held_from - 60, until=time.time() + 1).rows
        return sum(r.byte_seconds for r in rows if r.tier == "dask-memory")

    def closed():  # both copies written and removed in the ledger (written asynchronously)
        kinds = [e.kind for e in ledger.events("residency-test") if e.tier == "dask-memory"]
        return kinds.count("remove") >= 2

    assert eventually(closed, 120)
    assert ledgered() == pytest.approx(expected, rel=0.01)  # the ledger says the same


def test_what_workers_write_hit_and_evict_is_billed(redis_server, tmp_path):
    """The worker plugin adds its node tier to the worker's store in place, so the store's
    ledger sees what the worker does (a rebuilt store would lose it: nothing billed)."""
    import json

    from distributed import Client, LocalCluster
    from typer.testing import CliRunner

    from flowcache.cli import app

    env = {"FLOWCACHE_STORE": f"memory+{tmp_path}/durable", "FLOWCACHE_USER": "wendy",
           "FLOWCACHE_SIGNING_KEY": new_key().hex(), "FLOWCACHE_LOCK_DIR": str(tmp_path / "l"),
           "FLOWCACHE_LEDGER": str(tmp_path / "ledger.sqlite3")}
    config = StoreConfig.from_env(env)
    started = time.time()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        client.register_plugin(dask_cache.CacheWorkerPlugin(
            config, node_dir=str(tmp_path / "node"), node_bytes=3000))
        first = client.submit(jobs.cached_blob, 2000, 1, pure=False).result()  # written
        assert client.submit(jobs.cached_blob, 2000, 1, pure=False).result() == first  # a hit
        client.submit(jobs.cached_blob, 2000, 2, pure=False).result()  # evicts the first

    def billed():
        result = CliRunner().invoke(app, ["billing", "--since", "1h", "--json"], env=env)
        assert result.exit_code == 0, result.output
        rows = {row["tier"]: row for row in json.loads(result.output)["rows"]}
        if {"object", "node", "memory"} <= rows.keys() and rows["memory"]["hits"] >= 1:
            return rows
        return None

    rows = eventually(billed, 60)
    assert rows, "the worker's writes and hit never reached the ledger"
    assert rows["object"]["entries"] == rows["node"]["entries"] == 2
    ledger = config.build_ledger()
    evicted = [e for e in ledger.events("wendy", started - 60)
               if e.kind == "remove" and e.tier == "node"]
    assert [e.reason for e in evicted] == ["evicted"]


def test_a_sessions_intermediates_are_purged_when_its_client_leaves(cluster, store):
    from distributed import Client

    graph = [delayed(jobs.work)(i + 5000) for i in range(5)]
    with Client(cluster[0]) as other:
        dask_cache.compute(*graph, client=other, store=store, lifetime="flow")
        headers = [h for _, h in store.headers()]
        assert None not in headers  # every stored frame has a readable header
        kinds = [h.lifetime["kind"] for h in headers
                 if h.lifetime.get("run") == f"dask-{other.id}"]
        assert kinds == ["flow"] * 5
        run = f"dask-{other.id}"
    assert eventually(lambda: not [h for _, h in store.headers()
                                   if h.lifetime.get("run") == run], 30)


def test_the_cache_option_on_plain_functions(client):
    first = client.submit(jobs.cached_square, 12, pure=False).result()
    again = client.submit(jobs.cached_square, 12, pure=False).result()
    assert again == first  # the same dict, down to the pid of the process that computed it


def test_dask_collections_through_the_local_scheduler(store):
    import dask.array as da
    import dask.bag as db
    import dask.dataframe as dd
    import pandas as pd

    array = (da.arange(400, chunks=100) * 3).sum()
    bag = db.from_sequence(range(50), npartitions=5).map(jobs.work).sum()
    frame = dd.from_pandas(pd.DataFrame({"x": range(40)}), npartitions=4)
    series = (frame.x * 2).sum()
    for collection, scheduler in ((array, "threads"), (bag, "sync"), (series, "threads")):
        (expected,) = dask.compute(collection, scheduler=scheduler)
        (got,), first = dask_cache.compute(collection, store=store, scheduler=scheduler,
                                           return_plan=True)
        (again,), second = dask_cache.compute(collection, store=store, scheduler=scheduler,
                                              return_plan=True)
        assert got == again == expected
        assert first.computes
        assert second.computes == set()

