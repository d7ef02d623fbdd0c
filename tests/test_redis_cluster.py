"""Redis Cluster, for real: 3 masters and 3 replicas of redis-server on loopback run the tier
contract, the tenants' ACLs (on every node, one added later included), a master killed
mid-run and a slot resharded while it is read."""

from __future__ import annotations

import hashlib
import json
import os
import threading

import pytest
import redis
from typer.testing import CliRunner

from flowcache.admin import provision_redis_user, sync_redis_acls
from flowcache.cli import app
from flowcache.config import StoreConfig
from flowcache.diagnostics import diagnose
from flowcache.errors import ConfigError
from flowcache.frames import Frame
from flowcache.identity import Identity, new_key
from flowcache.locks import FileLocks, RedisLocks
from flowcache.tiers.memory import MemoryTier
from flowcache.tiers.objects import ObjectTier
from flowcache.tiers.redis import RedisTier
from flowcache.tiers.redis_urls import connect
from flowcache.tiers.spec import TierSpec, parse_store_spec
from tests import test_access, test_tiers
from tests.redis_cluster import HOST, RedisClusterFixture, shared_cluster, wait_until
from tests.servers import free_port


@pytest.fixture(scope="session")
def redis_cluster():
    return shared_cluster()


@pytest.fixture
def cluster(redis_cluster):
    """The session's cluster, healthy and empty (ACL users stay: re-provisioning resets)."""
    redis_cluster.wait_healthy()
    redis_cluster.flush()
    return redis_cluster


def value_for(i: int) -> bytes:
    return hashlib.sha256(str(i).encode()).digest() * (1 + i % 40)


def key_for(i: int) -> str:
    return hashlib.blake2b(str(i).encode(), digest_size=32).hexdigest()


# -- the spelling -----------------------------------------------------------------------------
def test_a_cluster_is_spelled_with_several_seed_nodes():
    spec = TierSpec.parse("redis+cluster://ops:pw@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002"
                          "?max_item_bytes=1MiB&socket_keepalive=true")
    assert spec.kind == "redis"
    assert spec.options == {"max_item_bytes": 1 << 20}
    tiers = parse_store_spec("memory+redis+cluster://a:7000,b:7000/0+s3://bucket/prefix")
    assert [t.kind for t in tiers] == ["memory", "redis", "object"]
    assert tiers[1].url == "redis+cluster://a:7000,b:7000/0"


@pytest.mark.parametrize(("url", "says"), [
    ("redis+cluster://a:7000,,b:7000", "empty seed node"),
    ("redis+cluster://a:7000,b:port", "not a number"),
    ("redis+cluster://a:7000,b:99999", "not a number"),
    ("redis+cluster://a:7000/3", "only database 0"),
    ("redis+cluster://", "names no seed node"),
    ("redis+cluster://a:7000,a:7000", "seed node twice"),
    ("redis://a:7000,b:7000/0", "only a cluster has seed nodes"),
])
def test_a_misspelled_cluster_is_a_config_error_naming_the_setting(url, says):
    with pytest.raises(ConfigError, match=says) as caught:
        parse_store_spec(f"memory+{url}+/tmp/durable")
    assert "FLOWCACHE_STORE" in str(caught.value)
    assert "redis+cluster://10.0.0.1:7000,10.0.0.2:7000" in str(caught.value)


def test_one_reachable_seed_is_enough(cluster):
    dead = free_port()  # nothing listens there
    seeds = ",".join([f"{HOST}:{dead}", *(n.address for n in cluster.primaries()[:1])])
    tier = RedisTier.from_url(f"redis+cluster://{seeds}")
    tier.put("alice/aa/seed", Frame((b"FLWC seeded",)))
    assert tier.get("alice/aa/seed").join() == b"FLWC seeded"
    assert "redis cluster" in tier.describe()
    tier.close()


def test_a_cluster_down_at_startup_is_an_outage_until_it_comes_up(tmp_path, make_store):
    later = RedisClusterFixture(masters=3, replicas=0)  # its ports chosen, nothing listens yet
    spec = f"memory+{later.url}+{tmp_path / 'durable'}"
    alice = Identity("alice", new_key())
    env = {"FLOWCACHE_STORE": spec, "FLOWCACHE_USER": "alice",
           "FLOWCACHE_SIGNING_KEY": alice.key.hex()}  # the ledger and locks on Redis too
    config = StoreConfig.from_env(env)
    store = config.build()  # no seed answers: the store carries on without Redis
    store.put(key_for(1), value_for(1))
    store.tiers[0].clear()
    assert store.get(key_for(1)) == value_for(1)  # from the durable tier
    assert store.counters.tier("redis").writes == 0
    checks = {check.name: check for check in diagnose(config, env)}
    assert checks["store"].status == "ok"
    assert checks["tier 1 (redis)"].status == "fail"
    assert "unreachable" in checks["tier 1 (redis)"].detail
    assert checks["signed round trip"].status == "ok"
    store.close()

    now = [0.0]
    tier = parse_store_spec(spec)[1].build()
    store = make_store(MemoryTier(max_bytes=1 << 20), tier,
                       ObjectTier(str(tmp_path / "durable"), fsync=False), who=alice,
                       clock=lambda: now[0])
    assert store.get(key_for(1)) == value_for(1)
    assert store.breaker(tier).failures > 0  # Redis is backed off
    later.start()
    try:
        def redis_used() -> bool:
            now[0] += 3600  # past any backoff: the next call is the breaker's trial
            store.tiers[0].clear()
            return store.get(key_for(1)) == value_for(1) and store.counters.tier(
                "redis").writes > 0  # promoted into Redis: it serves again
        wait_until(redis_used, "the store uses the cluster once it is up")
        store.tiers[0].clear()
        assert store.get_or_compute(key_for(1), lambda: b"recomputed?").tier == "redis"
    finally:
        store.close()
        later.stop()


# -- the tier contract, on the cluster (the same tests as every tier) --------------------------
@pytest.fixture
def tier(cluster):
    tier = RedisTier.from_url(cluster.url, inline_bytes=4096, max_item_bytes=None)
    yield tier
    tier.close()


test_implements_the_protocol = test_tiers.test_implements_the_protocol
test_put_get_exists_delete = test_tiers.test_put_get_exists_delete
test_size_and_purging_a_namespace = test_tiers.test_size_and_purging_a_namespace
test_large_frames_round_trip = test_tiers.test_large_frames_round_trip
test_scan_lists_names_under_a_prefix = test_tiers.test_scan_lists_names_under_a_prefix
test_exclusive_create_refuses_an_existing_name = (
    test_tiers.test_exclusive_create_refuses_an_existing_name)
test_overwrite_replaces = test_tiers.test_overwrite_replaces


def test_an_entrys_parts_and_lease_live_in_one_slot(cluster):
    tier = RedisTier.from_url(cluster.url, inline_bytes=100, part_bytes=1000)
    admin = tier.client
    name = "alice/ab/" + key_for(1)
    data = b"FLWC" + os.urandom(4500)
    tier.put(name, Frame((data,)))
    keys = [f"flowcache:{{{name}}}", *(f"flowcache:{{{name}}}:{i}" for i in range(5)),
            f"flowcache:lock:{{{name}}}"]
    slots = {admin.keyslot(key) for key in keys}
    assert len(slots) == 1
    owner = cluster.owner(slots.pop())
    with owner.client() as node:
        assert node.exists(*keys[:-1]) == 6  # the manifest and its 5 parts, on one node
    with RedisLocks(admin).hold(name), owner.client() as node:  # FCALL reaches the slot's primary
        assert node.exists(keys[-1]) == 1
    assert tier.get(name).join() == data


# -- tenants: ACLs on every node ----------------------------------------------------------------
@pytest.fixture
def tenant_redis(cluster):
    """test_access's fixture, on the cluster: tenant(user) -> (RedisTenant, their URL)."""
    admin = connect(cluster.url)

    def tenant(user: str):
        made = provision_redis_user(admin, user)
        url = cluster.url.replace("redis+cluster://",
                                  f"redis+cluster://{made.acl_user}:{made.password}@")
        return made, url

    yield cluster, admin, tenant
    admin.close()


test_a_tenant_store_works_with_its_own_credentials = (
    test_access.test_a_tenant_store_works_with_its_own_credentials)


def as_tenant(node, made) -> redis.Redis:
    return redis.Redis(host=HOST, port=node.port, username=made.acl_user,
                       password=made.password, socket_timeout=10)


def test_tenants_exist_and_are_confined_on_every_node(tenant_redis):
    cluster, admin, tenant = tenant_redis
    alice, _ = tenant("alice")
    bob, _ = tenant("bob")
    assert sorted(alice.nodes) == sorted(node.address for node in cluster.running())
    admin.set("flowcache:{alice/00/x}", b"alice's")
    for node in cluster.running():  # replicas too: a failover makes one of them answer
        with as_tenant(node, alice) as client:
            assert client.ping()
        with as_tenant(node, bob) as client, pytest.raises(redis.exceptions.NoPermissionError):
            client.get("flowcache:{alice/00/x}")


def test_a_node_added_later_gets_the_tenants_and_serves_them(tenant_redis, make_store,
                                                             tmp_path):
    cluster, admin, tenant = tenant_redis
    alice, alice_url = tenant("alice")
    store = test_access.tenant_store(make_store, "alice", alice_url, tmp_path / "d",
                                     inline_bytes=64, part_bytes=64)
    store.put(key_for(1), value_for(1) * 10)  # parts and a manifest
    new = cluster.add_node()  # redis-cli --cluster add-node: functions copied, users not
    with pytest.raises(redis.exceptions.AuthenticationError), as_tenant(new, alice) as client:
        client.ping()

    synced = CliRunner().invoke(app, ["admin", "sync-acls", "--redis-url", cluster.url, "--json"],
                                env={"FLOWCACHE_STORE": f"memory+{tmp_path / 'd'}"})
    assert synced.exit_code == 0, synced.output
    changes = json.loads(synced.output)["changes"]
    assert "+flowcache-alice" in changes[new.address]
    assert set(changes) == {new.address}  # the other nodes already agreed
    assert sync_redis_acls(admin) == {}
    with as_tenant(new, alice) as client:
        assert client.ping()

    name = store.name_for(key_for(1))
    slot = admin.keyslot(f"flowcache:{{{name}}}")
    assert cluster.move_slot(slot, new) >= 3  # the manifest and its parts
    store.tiers[0].clear()
    outcome = store.get_or_compute(key_for(1), lambda: b"recomputed?")
    assert (outcome.value, outcome.tier) == (value_for(1) * 10, "redis")  # from the new node
    with RedisLocks(store.tiers[1].client).hold(name), new.client() as node:  # tenant's FCALL
        assert node.exists(f"flowcache:lock:{{{name}}}")
    assert store.counters.tier("redis").errors == 0


# -- faults ---------------------------------------------------------------------------------------
def test_a_master_killed_mid_run_costs_no_wrong_value_and_no_failed_task(cluster, make_store,
                                                                         tmp_path):
    now = [0.0]
    tier = RedisTier.from_url(cluster.url)
    store = make_store(tier, ObjectTier(str(tmp_path / "durable"), fsync=False),
                       clock=lambda: now[0],
                       locks=RedisLocks(tier.client, fallback=FileLocks(tmp_path / "locks")))
    victim = cluster.owner(tier.client.keyslot(f"flowcache:{{{store.name_for(key_for(0))}}}"))
    replica = cluster.replica_of(victim)
    wrong, failed, done = [], [], threading.Event()

    def task(op: int) -> None:
        i = op // 2  # each key is computed once, then read once
        try:
            outcome = store.get_or_compute(key_for(i), lambda: value_for(i))
        except Exception as exc:  # what a task would see
            failed.append((op, exc))
            return
        if outcome.value != value_for(i):
            wrong.append(op)

    def run() -> None:
        while not done.is_set() or ops[0] < after[0] + 400:
            task(ops[0])
            ops[0] += 1
            if ops[0] % 50 == 0:
                now[0] += 1.0  # time passes: the store probes Redis during the outage

    ops, after = [0], [0]
    for _ in range(200):
        task(ops[0])
        ops[0] += 1
    writes_before = store.counters.tier("redis").writes
    worker = threading.Thread(target=run)
    worker.start()
    try:
        cluster.kill(victim)  # SIGKILL, mid-run
        cluster.wait_promoted(replica)
        now[0] += 3600  # past any backoff: the next operation tries Redis again
        hits_promoted = store.counters.tier("redis").hits
        after[0] = ops[0]
    finally:
        done.set()
        worker.join(300)
    assert not worker.is_alive()
    assert (wrong, failed) == ([], [])
    assert writes_before > 0
    assert store.counters.tier("redis").hits > hits_promoted  # Redis serves again

    victim.start()  # it rejoins as a replica of its successor: the cluster is whole again
    wait_until(lambda: victim.role() == "slave", "the old master rejoined as a replica")
    cluster.wait_healthy()


def test_a_slot_moved_while_its_entries_are_read_gives_no_wrong_value(cluster, make_store,
                                                                     tmp_path):
    tier = RedisTier.from_url(cluster.url, inline_bytes=64, part_bytes=256)
    store = make_store(tier, ObjectTier(str(tmp_path / "durable"), fsync=False))
    entries = {key_for(i): value_for(i) * 8 for i in range(12)}  # 2-10 KiB: many parts
    for key, value in entries.items():
        store.put(key, value)
    wrong, served = [], {"redis": 0, "misses": 0}

    def read_all(_keys: object = None) -> None:
        for key, value in entries.items():
            frame = tier.get(store.name_for(key))  # the hot tier alone: hit or miss, never wrong
            if frame is None:
                served["misses"] += 1
                continue
            served["redis"] += 1
            if store.get(key) != value:
                wrong.append(key)

    moved = 0
    for key in list(entries)[:6]:
        slot = tier.client.keyslot(f"flowcache:{{{store.name_for(key)}}}")
        target = next(node for node in cluster.primaries() if node is not cluster.owner(slot))
        moved += cluster.move_slot(slot, target, between=read_all)  # reads meet ASK
        read_all()  # and MOVED, once it has moved
    assert moved >= 6 * 3  # a manifest and 2+ parts per entry: reads ran mid-migration
    assert wrong == []
    assert all(store.get(key) == value for key, value in entries.items())
    assert served["redis"] > 0
    assert store.counters.tier("redis").errors == 0
