"""The ledger on a Redis Cluster, for real (the 3+3 loopback cluster of tests/redis_cluster.py):
a cluster-backed ledger bills writes, hits and removals of several users, whose streams live
on different masters; the keyspace watcher hears what every master expires or evicts, and,
after a master is killed, what the replica promoted in its place drops."""

from __future__ import annotations

import pytest

from flowcache.accounts import billing
from flowcache.accounts.billing import Event
from flowcache.accounts.evictions import watch_evictions
from flowcache.accounts.ledger import Ledger, RedisBackend, SQLiteBackend, ledger_of
from flowcache.admin import provision_redis_user
from flowcache.config import StoreConfig
from flowcache.identity import new_key
from flowcache.tiers.redis_urls import connect
from tests.redis_cluster import RedisClusterFixture, wait_until


@pytest.fixture(scope="module")
def redis_cluster():
    """A cluster of this module's own: its failover test needs 3 masters that all vote, and the
    session's shared cluster may carry what other modules did to it (a 7th master holding a slot
    without a replica, a master restarted as a replica)."""
    cluster = RedisClusterFixture(masters=3, replicas=1).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster(redis_cluster):
    redis_cluster.wait_healthy()
    redis_cluster.flush()
    return redis_cluster


@pytest.fixture
def admin(cluster):
    client = connect(cluster.url)
    yield client
    client.close()


def key(i: int) -> str:
    return f"{i:064x}"


def configured_store(cluster, tmp_path, user: str):
    """A store as FLOWCACHE_* configure it: memory + the cluster + a directory; the ledger
    (auto) and the locks on the cluster too."""
    return StoreConfig.from_env({
        "FLOWCACHE_STORE": f"memory+{cluster.url}+{tmp_path / 'durable'}",
        "FLOWCACHE_USER": user, "FLOWCACHE_SIGNING_KEY": new_key().hex(),
        "FLOWCACHE_LOCK_DIR": str(tmp_path / "locks")}).build()


def removals(ledger: Ledger, user: str) -> set[tuple[str, str, str]]:
    return {(e.tier, e.name, e.reason) for e in ledger.events(user) if e.kind == "remove"}


# -- the ledger's backend -----------------------------------------------------------------------
def test_a_cluster_ledger_bills_writes_hits_and_removals(cluster, admin, tmp_path):
    stores = {user: configured_store(cluster, tmp_path / user, user) for user in ("ann", "eve")}
    streams = {user: ledger_of(store).backend.key(user) for user, store in stores.items()}
    assert isinstance(ledger_of(stores["ann"]).backend, RedisBackend)
    assert len({cluster.owner(admin.keyslot(s)).address for s in streams.values()}) == 2
    for user, store in stores.items():
        ledger = ledger_of(store)
        start = ledger.clock()
        store.put(key(1), b"x" * 5000, meta={"compute_seconds": 2.5, "run": "r1",
                                              "flow": "f", "task": "t"})
        store.tiers[0].clear()
        assert store.get(key(1)) == b"x" * 5000  # a Redis hit
        store.delete(key(1), reason="cleared")
        events = ledger.events(user)
        assert {(e.kind, e.tier) for e in events if e.kind == "write"} == {
            ("write", "object"), ("write", "redis"), ("write", "memory")}
        assert [(e.kind, e.tier, e.seconds) for e in events if e.kind == "hit"] == [
            ("hit", "redis", 2.5)]
        assert {(tier, reason) for tier, _, reason in removals(ledger, user)} >= {
            ("object", "cleared"), ("redis", "cleared")}
        report = billing.usage(events, user=user, since=start, until=ledger.clock() + 1)
        assert report.total("hits") == 1
        assert report.byte_seconds("redis") > 0
        assert admin.xlen(streams[user]) == len(events)
    assert ledger_of(stores["ann"]).users() == ["ann", "eve"]  # listed from every master
    for store in stores.values():
        store.close()


def test_one_batch_for_users_on_every_master_is_recorded(cluster, admin):
    ledger = Ledger(RedisBackend(admin))
    users = [f"user{i}" for i in range(12)]
    masters = {cluster.owner(admin.keyslot(ledger.backend.key(u))).address for u in users}
    assert len(masters) == 3
    for i, user in enumerate(users):  # one pipeline, streams in many slots
        ledger.record(Event(1000.0 + i, "write", user, "redis", f"{user}/00/{key(i)}", 10 + i),
                      Event(2000.0 + i, "remove", user, "redis", f"{user}/00/{key(i)}",
                            reason="evicted"))
    assert ledger.flush()
    assert ledger.users() == sorted(users)
    for i, user in enumerate(users):
        written, removed = ledger.events(user)
        assert (written.nbytes, removed.reason, removed.ts) == (10 + i, "evicted", 2000.0 + i)
    ledger.close()


def test_a_tenants_cluster_ledger_drops_only_what_it_may_not_write(cluster, admin):
    made = provision_redis_user(admin, "alice")
    url = cluster.url.replace("redis+cluster://",
                              f"redis+cluster://{made.acl_user}:{made.password}@")
    tenant = connect(url)
    ledger = Ledger(RedisBackend(tenant))
    others = [f"bob{i}" for i in range(6)]  # streams on other masters than alice's too
    assert len({cluster.owner(admin.keyslot(ledger.backend.key(u))).address
                for u in ["alice", *others]}) == 3
    ledger.missed("alice", "mine")
    for user in others:
        ledger.missed(user, "not alice's to write")  # NOPERM, in the same pipeline
    ledger.missed("alice", "mine too")
    assert ledger.flush()  # refused for good: dropped, not retried
    assert [e.name for e in ledger.events("alice")] == ["mine", "mine too"]
    assert not any(admin.exists(ledger.backend.key(user)) for user in others)
    ledger.close()
    tenant.close()


# -- keyspace notifications from every master -------------------------------------------------
def names_on_each_master(cluster, admin, per_master: int) -> dict[str, list[str]]:
    """``{master address: [entry names in its slots]}``, ``per_master`` each."""
    owners = cluster.owners()
    found: dict[str, list[str]] = {node.address: [] for node in cluster.primaries()}
    i = 0
    while any(len(names) < per_master for names in found.values()):
        name = f"alice/00/{key(i)}"
        names = found[owners[admin.keyslot(f"flowcache:{{{name}}}")].address]
        if len(names) < per_master:
            names.append(name)
        i += 1
    return found


def evict_everything(node) -> None:
    with node.client() as client:
        client.config_set("maxmemory-policy", "allkeys-lru")
        client.config_set("maxmemory", 1)
        client.ping()  # Redis evicts down to maxmemory before running a command
        client.config_set("maxmemory", 0)
        client.config_set("maxmemory-policy", "noeviction")


def test_the_watcher_hears_every_master_and_the_replica_a_failover_promotes(cluster, admin,
                                                                           tmp_path):
    ledger = Ledger(SQLiteBackend(tmp_path / "ledger.sqlite3"))  # not in the Redis it evicts
    watcher = watch_evictions(admin, ledger)
    watcher.configure()
    watcher.start()
    assert watcher.listening() == sorted(node.address for node in cluster.primaries())
    watcher.run_in_thread()
    names = names_on_each_master(cluster, admin, 3)
    victim = next(node for node in cluster.primaries() if node.address in names)
    replica = cluster.replica_of(victim)
    try:
        expiring = {names[address][0] for address in names}
        for name in expiring:
            admin.set(f"flowcache:{{{name}}}", b"x", px=50)
        wait_until(lambda: {("redis", n, "expired") for n in expiring} <= removals(
            ledger, "alice"), "the expiries on every master recorded")

        evicted = {names[address][1] for address in names}
        for name in evicted:
            admin.set(f"flowcache:{{{name}}}:0", b"y" * 100)  # a part key names its entry
        for node in cluster.primaries():
            evict_everything(node)
        wait_until(lambda: {("redis", n, "evicted") for n in evicted} <= removals(
            ledger, "alice"), "the evictions on every master recorded")

        cluster.wait_healthy()  # every replica in sync (the evictions above replicated)
        cluster.kill(victim)  # SIGKILL: its replica takes over its slots
        cluster.wait_promoted(replica)
        wait_until(lambda: replica.address in watcher.listening(),
                   "the watcher listens to the promoted replica")
        late = names[victim.address][2]
        with replica.client() as client:
            client.set(f"flowcache:{{{late}}}", b"z", px=50)
        wait_until(lambda: ("redis", late, "expired") in removals(ledger, "alice"),
                   "an expiry on the promoted replica recorded")
        assert victim.address not in watcher.listening()
    finally:
        watcher.stop()
        ledger.close()
        if not victim.running:
            victim.start()  # it rejoins as a replica of its successor
            wait_until(lambda: victim.role() == "slave", "the old master rejoined as a replica")
            cluster.wait_healthy()
    assert watcher.reported == len(expiring) + len(evicted) + 1
