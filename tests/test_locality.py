"""Cache-aware placement on several hosts (tests/hosts.py): loads run on the host whose node tier
holds their entry, so cached inputs are read locally instead of from Redis or the bucket; a graph
with nothing cached, a dead host and a restarted worker change nothing but where bytes come from.
The scheduler's memory for entries is bounded."""

from __future__ import annotations

import itertools
import os
import tracemalloc

import dask
import pytest

from dask_cache.locality import enable_locality, entry_nodes, locality_stats, set_placement
from dask_cache.locality_scheduler import BYTES_PER_ENTRY, EntryNodes, raw_key
from flowcache.errors import ConfigError
from tests import placement_scenario as scenario
from tests.hosts import Hosts

NBYTES = 256 << 10
SEEDS = itertools.count(10_000, 100)  # a fresh block of seeds (fresh entries) per use


@pytest.fixture(scope="module")
def hosts():
    with Hosts(workers=2, threads=2) as started:
        yield started


@pytest.fixture(scope="module")
def client(hosts):
    client = hosts.client()
    enable_locality(client)
    return client


@pytest.fixture(scope="module")
def store(hosts):
    store = hosts.store_config().build()
    yield store
    store.close()


@pytest.fixture
def placing(client):
    set_placement(client, True)
    yield
    set_placement(client, True)


def uneven(hosts, client, many: int = 18, few: int = 6) -> tuple[list, list[int]]:
    """Fresh seeds: ``many`` cached on the first worker host, ``few`` on the second."""
    start = next(SEEDS)
    first, second = hosts.worker_hosts
    seeds = list(range(start, start + many + few))
    return [(hosts.workers_on(client, first), seeds[:many]),
            (hosts.workers_on(client, second), seeds[many:])], seeds


def worker_address() -> str:
    from distributed import get_worker

    return get_worker().address


def test_cached_inputs_are_read_from_the_local_node_tier(hosts, client, store, placing):
    placed, seeds = uneven(hosts, client)
    scenario.seed_unevenly(client, store, placed, NBYTES)
    read, _, plan = scenario.run_consumer(client, store, seeds, NBYTES)
    assert len(plan.loads) == len(seeds)
    served = read["node"] + read["redis"] + read["object"]
    assert served >= len(seeds) * NBYTES  # every input was read from some tier
    assert read["node"] / served >= 0.8, read

    set_placement(client, False)  # the same, with Dask placing the loads by itself
    placed, seeds = uneven(hosts, client)
    scenario.seed_unevenly(client, store, placed, NBYTES)
    without, _, _ = scenario.run_consumer(client, store, seeds, NBYTES)
    assert scenario.local_share(without) < scenario.local_share(read), (without, read)
    assert without["redis"] + without["object"] > 0


def test_the_scheduler_knows_which_host_holds_each_entry(hosts, client, store, placing):
    placed, _ = uneven(hosts, client, many=3, few=2)
    where = scenario.seed_unevenly(client, store, placed, 4096)
    first = hosts.worker_hosts[0]
    labels = sorted(set(itertools.chain.from_iterable(where.values())))
    assert len(labels) == 2
    assert [label.startswith(f"{first.address}:") for label in labels].count(True) == 1
    on_first = [nodes for nodes in where.values() if nodes[0].startswith(f"{first.address}:")]
    assert len(on_first) == 3
    assert all(len(nodes) == 1 for nodes in where.values())
    stats = locality_stats(client)
    assert stats["entries"] >= 5
    assert {len(node["workers"]) for node in stats["nodes"].values()} == {1}


def test_a_task_annotated_with_its_keys_runs_where_they_are(hosts, client, store, placing):
    placed, _ = uneven(hosts, client, many=0, few=2)
    where = scenario.seed_unevenly(client, store, placed, 4096)
    second = hosts.worker_hosts[1]
    # each task would land on the other host half the time unplaced; one at a time, so a
    # queue on the host never invites work stealing (loose restrictions allow it elsewhere)
    ran = []
    for key in list(where) * 3:
        with dask.annotate(flowcache_keys=[key]):
            ran.append(client.submit(worker_address, pure=False).result(timeout=300))
    assert {hosts.host_of(address) for address in ran} == {second}


def test_a_graph_with_nothing_cached_completes(client, store, placing):
    seeds = list(range(next(SEEDS), next(SEEDS)))
    before = locality_stats(client)["placed"]
    _, _, plan = scenario.run_consumer(client, store, seeds, 4096)
    assert plan.loads == set()
    assert len(plan.computes) >= len(seeds)
    assert locality_stats(client)["placed"] == before  # nothing to place, nothing placed


def test_a_dead_hosts_entries_do_not_stall_tasks(hosts, client, store, placing):
    second = hosts.worker_hosts[1]
    start = next(SEEDS)
    seeds = list(range(start, start + 6))
    where = scenario.seed_unevenly(client, store, [(hosts.workers_on(client, second), seeds)],
                                   NBYTES)
    second.kill()
    try:
        scenario.wait_until(lambda: not hosts.workers_on(client, second),
                            what="the scheduler noticing the dead host")
        read, _, plan = scenario.run_consumer(client, store, seeds, NBYTES)
        assert len(plan.loads) == len(seeds)
        assert read["redis"] + read["object"] >= len(seeds) * NBYTES  # read across hosts
    finally:
        hosts.start_workers(second)
        hosts.wait_for_workers(hosts.n_workers * hosts.processes)
    # the restarted worker lists its node tier: the scheduler knows the entries are there
    restarted = hosts.workers_on(client, second)
    known = scenario.wait_until(
        lambda: (lambda stats: next((n for label, n in stats["nodes"].items()
                                     if label.startswith(f"{second.address}:")
                                     and n["workers"] == restarted), None))(
            locality_stats(client)),
        what="the restarted worker's listing")
    assert known["entries"] >= len(seeds)
    assert all(entry_nodes(client, list(where))[key] for key in where)


# -- the scheduler's memory, without a cluster ------------------------------------------------
def test_the_entry_map_is_a_bounded_lru():
    entries = EntryNodes(max_entries=3)
    keys = [os.urandom(32) for _ in range(4)]
    for key in keys[:3]:
        entries.add(key, 0)
    entries.add(keys[0], 1)  # reported again: now the most recent
    entries.add(keys[3], 0)  # over the bound: the least recent (keys[1]) goes
    assert len(entries) == 3
    assert entries.forgotten == 1
    assert entries.nodes(keys[1]) == frozenset()
    assert entries.nodes(keys[0]) == {0, 1}
    entries.discard(keys[0], 0)
    assert entries.nodes(keys[0]) == {1}
    entries.discard(keys[0], 1)
    assert len(entries) == 2


def test_an_entry_costs_at_most_the_documented_bytes():
    entries = EntryNodes(max_entries=50_000)
    keys = [os.urandom(32) for _ in range(50_000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for index, key in enumerate(keys):
            entries.add(key, index % 3)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # the keys themselves are the map's (it keeps them), so they count: 65 bytes each
    assert (used + 65 * len(keys)) / len(keys) <= BYTES_PER_ENTRY


def test_only_flowcache_keys_are_remembered():
    assert raw_key("ab" * 32) == bytes.fromhex("ab" * 32)
    assert raw_key("zz" * 32) is None
    assert raw_key("ab" * 31) is None
    assert raw_key(None) is None


@pytest.mark.parametrize(("option", "value"), [("max_entries", 0), ("max_entries", "many"),
                                               ("interval", 0), ("interval", 3600)])
def test_bad_settings_are_named(option, value):
    with pytest.raises(ConfigError, match=option):
        enable_locality(None, **{option: value})

