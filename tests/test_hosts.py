"""The several-host harness (tests/hosts.py) does what the placement tests rely on: each worker
host has its own address and node tier, Redis and the bucket answer at the bridge address,
nothing listens beyond the hosts' own addresses, namespaces have no way out, and everything is
cleaned up; the loopback fallback keeps hosts apart by address, directory and process group."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import dask
import pytest
from dask import delayed

import dask_cache
from tests import placement_scenario as scenario
from tests.hosts import MODE_VARIABLE, Hosts, listening_sockets
from tests.netns import Bridge, netns_refusal, sweep_stale

REFUSAL = netns_refusal()
needs_netns = pytest.mark.skipif(REFUSAL is not None,
                                 reason=f"network namespaces unavailable: {REFUSAL}")


@pytest.fixture(scope="module")
def hosts():
    with Hosts(workers=2, threads=1) as started:
        yield started


@pytest.fixture(scope="module")
def client(hosts):
    return hosts.client()


def node_dir_of(dask_worker) -> str:
    return next(tier.root for tier in dask_worker.flowcache_store.tiers if tier.name == "node")


def tier_descriptions(dask_worker) -> list[str]:
    return [tier.describe() for tier in dask_worker.flowcache_store.tiers]


def redis_answers(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=30)
    try:
        return bool(client.ping())
    finally:
        client.close()


def connect_errno(address: str, port: int) -> int:
    """The errno of connecting to ``address`` (0 if it connected)."""
    import socket

    try:
        with socket.create_connection((address, port), timeout=10):
            return 0
    except OSError as exc:
        return exc.errno or -1


def test_three_hosts_each_worker_on_its_own_address_and_node_tier(hosts, client):
    assert hosts.mode == ("netns" if REFUSAL is None else "loopback")
    assert len(hosts.hosts) == 3
    addresses = [host.address for host in hosts.hosts]
    assert len(set(addresses)) == 3
    dirs = client.run(node_dir_of)
    assert len(dirs) == 2
    for worker, directory in dirs.items():
        host = hosts.host_of(worker)
        assert host in hosts.worker_hosts
        assert directory == str(host.node_dir)
    assert len(set(dirs.values())) == 2


def test_an_entry_written_on_one_host_lands_in_that_hosts_node_tier_only(hosts, client):
    store = hosts.store_config().build()
    first, second = hosts.worker_hosts
    with dask.annotate(workers=hosts.workers_on(client, first), allow_other_workers=False):
        (value,), plan = dask_cache.compute(delayed(scenario.payload)(7, 4096), client=client,
                                            store=store, return_plan=True)
    assert len(value) == 4096
    key = plan.chain[plan.outputs[0]]
    found = [path.name for path in first.node_dir.rglob(key)]
    assert found == [key]
    assert list(second.node_dir.rglob(key)) == []
    store.close()


def test_redis_and_the_bucket_answer_at_the_bridge_address(hosts, client):
    assert hosts.redis_url.startswith(f"redis://{hosts.service_address}:")
    assert hosts.s3_endpoint.startswith(f"http://{hosts.service_address}:")
    for tiers in client.run(tier_descriptions).values():
        assert any(t.startswith(f"redis {hosts.service_address}:") for t in tiers), tiers
    assert all(client.run(redis_answers, hosts.redis_url).values())
    answers = client.run(connect_errno, hosts.service_address, hosts.moto_port)
    assert set(answers.values()) == {0}


def test_nothing_listens_beyond_the_hosts_own_addresses(hosts):
    for host in hosts.hosts:
        bound = host.listening()
        assert bound, f"{host.name} listens on nothing"
        assert all(address.startswith(f"{host.address}:") for address in bound), bound
    services = listening_sockets({proc.pid for proc in hosts._services})
    assert len(services) >= 2
    assert all(address.startswith(f"{hosts.service_address}:") for address in services)


@needs_netns
def test_a_host_namespace_has_no_route_out(hosts, client):
    # no default route: the kernel refuses at once, no packet leaves the namespace
    answers = client.run(connect_errno, "198.51.100.7", 9)
    assert set(answers.values()) == {errno.ENETUNREACH}


@needs_netns
def test_a_bridge_and_its_namespaces_are_removed_on_close():
    bridge = Bridge().open()
    try:
        netns, address = bridge.add_host(0)
        assert netns in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                       text=True).stdout
        assert address.startswith(bridge.subnet)
    finally:
        bridge.close()
    assert netns not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                       text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    assert bridge.bridge not in links


@needs_netns
def test_namespaces_left_by_a_dead_run_are_swept():
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = f"fch-{gone.pid}-0-0"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        sweep_stale()
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert stale not in listed.split()
    finally:
        subprocess.run(["ip", "netns", "del", stale], capture_output=True)


def test_the_mode_can_be_forced_to_the_fallback(monkeypatch):
    monkeypatch.setenv(MODE_VARIABLE, "loopback")
    harness = Hosts(workers=1)
    try:
        assert harness.mode == "loopback"
        assert harness.fallback_reason == f"{MODE_VARIABLE}=loopback"
    finally:
        harness.close()
    monkeypatch.setenv(MODE_VARIABLE, "elsewhere")
    with pytest.raises(ValueError, match=MODE_VARIABLE):
        Hosts(workers=1)


def test_the_loopback_fallback_keeps_hosts_apart():
    with Hosts(workers=2, threads=1, mode="loopback") as fallback:
        assert fallback.mode == "loopback"
        assert fallback.bridge is None
        client = fallback.client()
        dirs = client.run(node_dir_of)
        assert sorted(dirs.values()) == sorted(str(h.node_dir) for h in fallback.worker_hosts)
        for worker, directory in dirs.items():
            assert directory == str(fallback.host_of(worker).node_dir)
        groups = {os.getpgid(proc.pid) for host in fallback.hosts for proc in host.procs}
        assert len(groups) == 3
        assert os.getpgid(0) not in groups
        for host in fallback.hosts:
            bound = host.listening()
            assert bound
            assert all(a.startswith(f"{host.address}:") for a in bound), bound
        store = fallback.store_config().build()
        (value,) = dask_cache.compute(delayed(scenario.payload)(3, 1000), client=client,
                                      store=store)
        assert value == scenario.payload(3, 1000)
        store.close()
