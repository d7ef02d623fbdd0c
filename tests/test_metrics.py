"""Metrics for autoscaling: the store's counters, bytes held, removals and write confirmations
in Prometheus' format, and the ``flowcache metrics`` exporter scraped by a real Prometheus."""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry

from flowcache.cli.metrics import SharedTiers
from flowcache.config import StoreConfig
from flowcache.errors import ConfigError
from flowcache.frames import encode
from flowcache.identity import Identity, new_key
from flowcache.listeners import StoreListener
from flowcache.metrics import StoreMetrics, expose, withdraw
from flowcache.store import TieredStore
from flowcache.tiers.memory import MemoryTier
from flowcache.tiers.node import NodeTier
from flowcache.tiers.objects import ObjectTier
from flowcache.tiers.redis import RedisTier
from flowcache.usage import OTHER
from tests.prometheus import PrometheusServer, promtool
from tests.servers import RedisServer, free_port, wait_for_port

KEY = "ab" * 32
PAYLOAD = b"x" * 3000


def test_the_store_reports_each_confirmed_durable_write_with_its_latency(make_store, tmp_path):
    seen = []

    class Confirmations(StoreListener):
        def on_confirm(self, name, tier, nbytes, seconds):
            seen.append((name, tier, nbytes, seconds))

    store = make_store(MemoryTier(), ObjectTier(str(tmp_path / "d")))
    store.add_listener(Confirmations())
    entry = store.put(KEY, b"x" * 1000)
    assert len(seen) == 1
    name, tier, nbytes, seconds = seen[0]
    assert (name, tier, nbytes) == (store.name_for(KEY), "object", entry.frame.nbytes)
    assert seconds > 0


# -- the store's metrics ----------------------------------------------------------------------
def scrape(registry) -> dict[tuple[str, frozenset], float]:
    """Every sample of a registry's exposition, by (name, labels), parsed from the text."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    samples = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"{key} appears twice"
            samples[key] = sample.value
    return samples


def value(samples, name, **labels):
    return samples[name, frozenset(labels.items())]


def test_a_store_with_real_tiers_shows_its_hits_misses_evictions_and_confirmations(
        make_store, own_redis, tmp_path):
    probe = make_store(ObjectTier(str(tmp_path / "probe")))
    frame_bytes = encode(PAYLOAD, key=KEY, identity=probe.identity).nbytes
    memory = MemoryTier(max_bytes=frame_bytes * 5 // 2)  # room for two entries, not three
    node = NodeTier(tmp_path / "node", max_bytes=1 << 30)
    store = make_store(memory, node, RedisTier.from_url(own_redis.url),
                       ObjectTier(str(tmp_path / "d")))
    registry = CollectorRegistry()
    metrics = expose(store, name="w1", registry=registry)
    one, two, three, absent = (f"{i:064x}" for i in range(1, 5))
    sizes = [store.put(key, PAYLOAD).frame.nbytes for key in (one, two, three)]  # evicts one
    assert store.get(one) == PAYLOAD  # from the node tier; promoted, it evicts two
    assert store.get(three) == PAYLOAD  # from memory
    assert store.get(absent, None) is None  # from nowhere
    metrics.refresh()

    got = scrape(registry)
    tier = functools.partial(value, got, store="w1")
    assert tier("flowcache_tier_hits_total", tier="memory") == 1
    assert tier("flowcache_tier_hits_total", tier="node") == 1
    assert tier("flowcache_tier_misses_total", tier="memory") == 2
    assert tier("flowcache_tier_misses_total", tier="object") == 1
    assert tier("flowcache_misses_total") == 1
    assert tier("flowcache_tier_writes_total", tier="memory") == 4  # three puts, one promotion
    assert tier("flowcache_tier_writes_total", tier="object") == 3
    assert tier("flowcache_removals_total", tier="memory", reason="evicted") == 2
    assert tier("flowcache_removed_bytes_total", tier="memory", reason="evicted") == \
        sizes[0] + sizes[1]
    assert tier("flowcache_write_confirm_seconds_count") == 3
    assert tier("flowcache_write_confirm_seconds_sum") > 0
    assert tier("flowcache_write_confirm_seconds_bucket", le="+Inf") == 3
    assert tier("flowcache_write_confirmed_bytes_total") == sum(sizes)
    assert tier("flowcache_user_written_bytes_total", tier="object", user="alice") == sum(sizes)
    assert tier("flowcache_tier_bytes", tier="memory") == memory.current_bytes == \
        sizes[0] + sizes[2]
    assert tier("flowcache_tier_capacity_bytes", tier="node") == 1 << 30
    assert tier("flowcache_tier_user_bytes", tier="node", user="alice") == sum(sizes)
    assert tier("flowcache_tier_degraded", tier="redis") == 0

    own_redis.kill()  # the store carries on with the durable tier and skips Redis
    assert store.get(absent, None) is None  # memory and node miss: Redis is asked, and fails
    got = scrape(registry)
    assert value(got, "flowcache_tier_degraded", store="w1", tier="redis") == 1
    assert value(got, "flowcache_tier_failures", store="w1", tier="redis") >= 1
    assert value(got, "flowcache_tier_degraded", store="w1", tier="node") == 0


def test_scraping_leaves_the_memory_tiers_lru_order_alone(make_store, tmp_path):
    probe = make_store(ObjectTier(str(tmp_path / "probe")))
    frame_bytes = encode(PAYLOAD, key=KEY, identity=probe.identity).nbytes
    memory = MemoryTier(max_bytes=frame_bytes * 5 // 2)
    store = make_store(memory, ObjectTier(str(tmp_path / "d")))
    registry = CollectorRegistry()
    metrics = expose(store, registry=registry)
    old, new = f"{1:064x}", f"{2:064x}"
    store.put(old, PAYLOAD)
    store.put(new, PAYLOAD)
    assert store.get(old) == PAYLOAD  # read last: `new` is now the least recently used
    metrics.refresh()
    got = scrape(registry)  # must not count as reading the entries
    assert value(got, "flowcache_tier_user_bytes", store="default", tier="memory",
                 user="alice") == memory.current_bytes
    store.put(f"{3:064x}", PAYLOAD)  # evicts the least recently used
    assert memory.get(store.name_for(new)) is None
    assert memory.get(store.name_for(old)) is not None


def test_stores_sharing_a_registry_write_each_family_once(make_store, tmp_path):
    registry = CollectorRegistry()
    stores = [make_store(MemoryTier(), ObjectTier(str(tmp_path / name))) for name in "ab"]
    exposed = [expose(store, name=name, registry=registry) for store, name in
               zip(stores, "ab", strict=True)]
    stores[0].put(KEY, PAYLOAD)
    got = scrape(registry)  # asserts that no sample appears twice
    assert value(got, "flowcache_tier_writes_total", store="a", tier="object") == 1
    assert value(got, "flowcache_tier_writes_total", store="b", tier="object") == 0
    withdraw(exposed[0], registry=registry)
    stores[0].put("cd" * 32, PAYLOAD)
    got = scrape(registry)
    assert ("flowcache_tier_writes_total",
            frozenset({"store": "a", "tier": "object"}.items())) not in got
    assert exposed[0] not in list(stores[0].listeners)


def test_exposing_a_store_twice_counts_it_once_and_names_stay_unique(make_store, tmp_path):
    registry = CollectorRegistry()
    store = make_store(MemoryTier(), ObjectTier(str(tmp_path / "d")))
    first = expose(store, name="w", registry=registry)
    assert expose(store, name="w", registry=registry) is first  # two plugins, one worker
    store.put(KEY, PAYLOAD)
    got = scrape(registry)  # asserts that no sample appears twice
    assert value(got, "flowcache_tier_writes_total", store="w", tier="object") == 1
    other = make_store(MemoryTier(), ObjectTier(str(tmp_path / "e")))
    with pytest.raises(ConfigError, match="'w' already names another store"):
        expose(other, name="w", registry=registry)


def test_user_labels_are_bounded_and_other_users_are_summed(make_store, tmp_path):
    node = NodeTier(tmp_path / "node")
    users = ["ann", "bob", "cy"]
    for user in users:  # three users' processes share the node tier
        make_store(node, ObjectTier(str(tmp_path / "d")),
                   who=Identity(user, new_key())).put(KEY, PAYLOAD)
    store = make_store(node, ObjectTier(str(tmp_path / "d")))
    registry = CollectorRegistry()
    expose(store, registry=registry, user_limit=2).refresh()
    got = scrape(registry)
    per_user = {dict(labels)["user"]: v for (name, labels), v in got.items()
                if name == "flowcache_tier_user_bytes"}
    assert len(per_user) == 3  # two users by name, the rest as one
    assert per_user[OTHER] > 0
    assert sum(per_user.values()) == node.current_bytes
    with pytest.raises(ConfigError, match="user_limit"):
        expose(store, registry=CollectorRegistry(), user_limit=0)


# -- the exporter, scraped by a real Prometheus -----------------------------------------------
RULES = Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "flowcache.rules.yml"


def test_the_rules_file_passes_promtool():
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def exporter_env(store: str, tmp_path) -> dict:
    return {**os.environ, "FLOWCACHE_STORE": store, "FLOWCACHE_USER": "ops",
            "FLOWCACHE_SIGNING_KEY": new_key().hex(), "FLOWCACHE_LOCK_DIR": str(tmp_path / "l"),
            "FLOWCACHE_LEDGER": "off"}


@pytest.fixture
def exporter(tmp_path):
    """``python -m flowcache metrics`` in a process of its own; stopped (SIGTERM) after."""
    started = []

    def start(store: str, *args: str) -> tuple[subprocess.Popen, int]:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowcache", "metrics", "--port", str(port), *args],
            env=exporter_env(store, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        started.append(proc)
        wait_for_port(port, timeout=120, proc=proc)
        return proc, port

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_real_prometheus_scrapes_the_exporter_and_its_rules_and_alerts_work(
        own_redis, exporter, tmp_path):
    durable = tmp_path / "durable"
    written = {"ann": 0, "bob": 0}
    for user, count in (("ann", 2), ("bob", 1)):
        store = TieredStore([ObjectTier(str(durable))], identity=Identity(user, new_key()))
        written[user] = sum(store.put(f"{i:064x}", PAYLOAD).frame.nbytes for i in range(count))
    client = redis.Redis.from_url(own_redis.url)
    used = int(client.info("memory")["used_memory"])
    maxmemory = used * 9 // 8  # about 89 % used: above the 80 % alert's threshold
    client.config_set("maxmemory", maxmemory)
    proc, port = exporter(f"memory+{own_redis.url}+{durable}", "--walk-interval", "1s")
    prometheus = PrometheusServer(tmp_path / "prometheus", [f"127.0.0.1:{port}"],
                                  rules=[RULES]).start()
    try:
        node = f"127.0.0.1:{own_redis.port}"
        seen = prometheus.wait_for(lambda: prometheus.query("flowcache_redis_memory_used_bytes"),
                                   "flowcache_redis_memory_used_bytes")
        [(labels, reported)] = seen.items()
        assert dict(labels)["node"] == node
        now = int(client.info("memory")["used_memory"])  # a little more or less than then
        assert 0.8 * now < reported < 1.25 * now
        assert prometheus.query("flowcache_redis_maxmemory_bytes") == {labels: maxmemory}
        ratio = prometheus.wait_for(lambda: prometheus.query("flowcache:redis_memory_used:ratio"),
                                    "the recording rule's ratio")
        assert 0.8 < next(iter(ratio.values())) < 1.0
        prometheus.wait_for(lambda: prometheus.alerts().get("FlowcacheRedisMemoryHigh"),
                            "the Redis memory alert")  # pending: it fires after 15 minutes

        by_user = prometheus.wait_for(
            lambda: {dict(k)["user"]: v for k, v in
                     prometheus.query("flowcache_object_bytes").items()}, "object bytes")
        assert by_user == written
        degraded = prometheus.query('flowcache_tier_degraded{tier="redis"}')
        assert list(degraded.values()) == [0]

        own_redis.kill()  # the exporter's probe opens the breaker; INFO fails
        prometheus.wait_for(lambda: list(prometheus.query(
            'flowcache_tier_degraded{tier="redis"}').values()) == [1], "a degraded redis")
        prometheus.wait_for(lambda: list(prometheus.query(
            "flowcache_redis_up").values()) == [0], "redis reported down")
        prometheus.wait_for(lambda: prometheus.alerts().get("FlowcacheTierDegraded"),
                            "the degraded-tier alert")
    finally:
        prometheus.stop()
        client.close()
    proc.terminate()  # SIGTERM: the exporter stops cleanly
    assert proc.wait(timeout=120) == 0, proc.stderr.read()


def test_a_taken_port_is_a_one_line_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "flowcache", "metrics", "--port", str(port)],
            env=exporter_env(f"memory+{tmp_path}/durable", tmp_path), capture_output=True,
            text=True, timeout=300)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines == [f"flowcache: error: port {port} on 127.0.0.1 is already in use (another "
                     "exporter?): stop what listens there or pass --port N"]


def test_bad_exporter_options_are_usage_errors(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "flowcache", "metrics", "--walk", "everything"],
        env=exporter_env(f"memory+{tmp_path}/durable", tmp_path), capture_output=True,
        text=True, timeout=300)
    assert done.returncode == 2
    assert "--walk 'everything': use all, own or off" in done.stderr


def test_a_cluster_is_reported_by_each_primary_and_never_its_replicas(tmp_path):
    """Three masters and a replica (redis-cli joins them): INFO from each master alone."""
    nodes = [RedisServer(None) for _ in range(4)]
    for number, node in enumerate(nodes):
        node.extra = ("--cluster-enabled", "yes", "--cluster-port", str(free_port()),
                      "--cluster-config-file", f"nodes-{node.port}.conf",
                      "--maxmemory", str((number + 1) * 100 << 20))
    try:
        for node in nodes:
            node.start()
        masters, replica = nodes[:3], nodes[3]
        cli = shutil.which("redis-cli")
        subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in masters),
                        "--cluster-yes"], check=True, capture_output=True, timeout=300)
        subprocess.run([cli, "--cluster", "add-node", f"127.0.0.1:{replica.port}",
                        f"127.0.0.1:{masters[0].port}", "--cluster-slave"], check=True,
                       capture_output=True, timeout=300)
        wait_until_replica(replica)
        tier = RedisTier.from_url(f"redis+cluster://127.0.0.1:{masters[0].port}")
        store = TieredStore([tier, ObjectTier(str(tmp_path / "d"))],
                            identity=Identity("ops", new_key()))
        shared = SharedTiers(store, StoreMetrics(store), walk="off", walk_interval=60,
                             walk_limit=10, user_limit=10)
        families = {family.name: family for family in shared.collect()}
        reported = {s.labels["node"]: s.value
                    for s in families["flowcache_redis_maxmemory_bytes"].samples}
        assert reported == {f"127.0.0.1:{n.port}": (i + 1) * 100 << 20
                            for i, n in enumerate(masters)}
        used = {s.labels["node"] for s in families["flowcache_redis_memory_used_bytes"].samples}
        assert used == set(reported)
        store.close()
    finally:
        for node in nodes:
            node.stop()


def wait_until_replica(node: RedisServer, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    with redis.Redis(port=node.port) as client:
        while client.info("replication").get("master_link_status") != "up":
            assert time.monotonic() < deadline, "the replica never synced with its master"
            time.sleep(0.2)


# -- on a Dask worker ---------------------------------------------------------------------------
def test_a_dask_worker_serves_its_store_metrics_beside_dasks_own(tmp_path):
    import urllib.request

    from distributed import Client, LocalCluster
    from prometheus_client.parser import text_string_to_metric_families

    import dask_cache

    config = StoreConfig.from_env({
        "FLOWCACHE_STORE": f"memory+{tmp_path}/durable", "FLOWCACHE_USER": "gus",
        "FLOWCACHE_SIGNING_KEY": new_key().hex(), "FLOWCACHE_LOCK_DIR": str(tmp_path / "l"),
        "FLOWCACHE_LEDGER": "off"})
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        client.register_plugin(dask_cache.CacheWorkerPlugin(config, node_dir=str(tmp_path / "n")))
        client.run(lambda dask_worker: dask_worker.flowcache_store.put(KEY, PAYLOAD))
        [(address, port)] = client.run(lambda dask_worker: dask_worker.http_server.port).items()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as reply:
            text = reply.read().decode()
        samples = {(s.name, frozenset(s.labels.items())): s.value
                   for family in text_string_to_metric_families(text) for s in family.samples}
        assert samples["flowcache_tier_writes_total",
                       frozenset({"store": address, "tier": "object"}.items())] == 1
        assert any(name.startswith("dask_worker_") for name, _ in samples)  # Dask's own
        # the counters Dask already had keep working: client.run and custom worker metrics
        [counters] = client.run(dask_cache.worker_metrics).values()
        assert counters["tiers"]["object"]["writes"] == 1
        deadline = time.monotonic() + 180
        while client.scheduler_info()["workers"][address]["metrics"].get(
                "flowcache-object-bytes_written", 0) == 0:  # sent with the next heartbeat
            assert time.monotonic() < deadline, "no custom metric reached the scheduler"
            time.sleep(0.2)
