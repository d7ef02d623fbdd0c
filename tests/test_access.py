"""Tenant isolation: through the library, through each tenant's own Redis credentials (NOPERM
from a real redis-server), and against frames planted without the owner's key."""

from __future__ import annotations

import json
import os
import pickle
import shlex
import stat
import threading

import pytest
import redis
from typer.testing import CliRunner

from flowcache.accounts.ledger import Ledger, RedisBackend, SQLiteBackend, ledger_of
from flowcache.admin import (
    RedisTenant,
    acl_username,
    clear_namespace,
    tenant_acl_rules,
    tenant_store_spec,
)
from flowcache.cli import app
from flowcache.config import (
    StoreConfig,
    TierSpec,
    default_store,
    flowcache_user,
    split_store_spec,
    use_store,
)
from flowcache.errors import ConfigError, CorruptEntry, ForeignEntry, ForeignNamespace
from flowcache.frames import Frame, Header, encode_payload
from flowcache.identity import Identity, new_key
from flowcache.locks import RedisLocks
from flowcache.purge import RunTracker
from flowcache.tiers.memory import MemoryTier
from flowcache.tiers.objects import ObjectTier
from flowcache.tiers.redis import RedisTier

NOPERM = redis.exceptions.NoPermissionError


def key(i: int) -> str:
    return f"{i:064x}"


def tenant_store(make_store, user: str, url: str, durable, **tier_options):
    tier = RedisTier.from_url(url, index=True, **tier_options)
    return make_store(MemoryTier(), tier, ObjectTier(str(durable)),
                      who=Identity(user, new_key()), locks=RedisLocks(tier.client))


def export_lines(output: str) -> dict[str, str]:
    env = {}
    for line in output.splitlines():
        if line.startswith("export "):
            name, _, value = shlex.split(line[len("export "):])[0].partition("=")
            env[name] = value
    return env


# -- Redis ACLs, from the tenant's side ----------------------------------------------------------
def test_a_tenant_cannot_read_write_or_delete_another_tenants_keys(tenant_redis, make_store,
                                                                   tmp_path):
    _, admin, tenant = tenant_redis
    _, alice_url = tenant("alice")
    _, bob_url = tenant("bob")
    alice = tenant_store(make_store, "alice", alice_url, tmp_path / "d", inline_bytes=64,
                         part_bytes=64)
    alice.get_or_compute(key(1), lambda: b"small")
    alice.get_or_compute(key(2), lambda: b"large" * 100)  # stored as parts
    alice_client = redis.Redis.from_url(alice_url)
    alice_client.xadd("flowcache:ledger:{alice}", {"kind": "miss"})
    lock_key = "flowcache:lock:{" + alice.name_for(key(3)) + "}"
    before = {k: admin.dump(k) for k in admin.keys("*")}
    kinds = {k.decode().split("{")[0] + ("part" if not k.endswith(b"}") else "") for k in before}
    assert kinds == {"flowcache:", "flowcache:part", "flowcache:index:", "flowcache:ledger:"}

    bob = redis.Redis.from_url(bob_url)
    with RedisLocks(alice_client).hold(alice.name_for(key(3))):  # a lease alice holds now
        assert admin.exists(lock_key)
        for target in [*before, lock_key.encode()]:
            for command in [("GET", target), ("GETRANGE", target, 0, 3), ("EXISTS", target),
                            ("PTTL", target), ("SET", target, b"mine"), ("DEL", target),
                            ("SADD", target, "x"), ("SSCAN", target, 0), ("SREM", target, "x"),
                            ("XRANGE", target, "-", "+"), ("XADD", target, "*", "k", "v")]:
                with pytest.raises(NOPERM):
                    bob.execute_command(*command)
    assert {k: admin.dump(k) for k in admin.keys("*")} == before  # nothing changed
    assert alice.get(key(2)) == b"large" * 100


def test_a_tenant_cannot_list_keys_or_run_admin_commands(tenant_redis):
    _, admin, tenant = tenant_redis
    _, alice_url = tenant("alice")
    admin.set("flowcache:{bob/00/x}", b"bob's")
    alice = redis.Redis.from_url(alice_url)
    assert alice.ping()
    refused = [("KEYS", "*"), ("SCAN", 0), ("SCAN", 0, "MATCH", "flowcache:*"), ("RANDOMKEY",),
               ("FLUSHALL",), ("FLUSHDB",), ("CONFIG", "GET", "maxmemory"),
               ("CONFIG", "SET", "maxmemory", "1"), ("DEBUG", "SLEEP", "0"), ("MONITOR",),
               ("SUBSCRIBE", "__keyevent@0__:evicted"), ("PSUBSCRIBE", "*"),
               ("ACL", "LIST"), ("ACL", "SETUSER", "alice2", "on"), ("SHUTDOWN", "NOSAVE"),
               ("SWAPDB", 0, 1), ("OBJECT", "ENCODING", "flowcache:{alice/00/x}")]
    for command in refused:
        with pytest.raises(NOPERM):
            alice.execute_command(*command)
    # the server itself allows these commands (DEBUG is enabled): the refusals are the ACL's
    assert admin.execute_command("DEBUG", "SLEEP", "0")
    assert admin.config_get("maxmemory")
    assert admin.get("flowcache:{bob/00/x}") == b"bob's"


def test_tenants_run_only_the_operators_code_and_only_on_their_keys(tenant_redis):
    """No EVAL (an endless script would make Redis answer BUSY to every tenant), no FUNCTION
    LOAD; FCALL of the operator's library, which the ACL's key patterns still confine."""
    _, admin, tenant = tenant_redis
    _, alice_url = tenant("alice")
    admin.set("flowcache:{bob/00/x}", b"bob's")
    admin.set("flowcache:lock:{bob/00/x}", b"bob's token")
    alice = redis.Redis.from_url(alice_url)
    for script in ("while true do end", "return redis.call('flushall')",
                   "return redis.call('get', 'flowcache:{bob/00/x}')"):
        with pytest.raises(NOPERM, match="eval"):
            alice.eval(script, 0)
    with pytest.raises(NOPERM):
        alice.execute_command("FUNCTION", "LOAD", "REPLACE",
                              "#!lua name=evil\nredis.register_function('e', "
                              "function() while true do end end)")
    with pytest.raises(NOPERM):  # the library's functions, on another tenant's key
        alice.fcall("flowcache_release", 1, "flowcache:lock:{bob/00/x}", "bob's token")
    alice.set("flowcache:lock:{alice/00/y}", b"mine", px=60_000)
    assert alice.fcall("flowcache_release", 1, "flowcache:lock:{alice/00/y}", "mine") == 1
    assert admin.get("flowcache:lock:{bob/00/x}") == b"bob's token"
    assert admin.ping()  # nobody made it BUSY


def test_a_tenants_ledger_stream_is_append_only(tenant_redis):
    _, admin, tenant = tenant_redis
    _, alice_url = tenant("alice")
    alice = redis.Redis.from_url(alice_url)
    alice.xadd("flowcache:ledger:{alice}", {"kind": "miss"})
    assert alice.xlen("flowcache:ledger:{alice}") == 1
    for command in [("DEL", "flowcache:ledger:{alice}"), ("XTRIM", "flowcache:ledger:{alice}",
                    "MAXLEN", 0), ("XDEL", "flowcache:ledger:{alice}", "0-1")]:
        with pytest.raises(NOPERM):
            alice.execute_command(*command)
    assert admin.xlen("flowcache:ledger:{alice}") == 1


def test_a_tenant_store_works_with_its_own_credentials(tenant_redis, make_store, tmp_path):
    _, admin, tenant = tenant_redis
    _, bob_url = tenant("bob")
    bob = tenant_store(make_store, "bob", bob_url, tmp_path / "d", inline_bytes=64,
                       part_bytes=64)
    for i in range(4):
        outcome = bob.get_or_compute(key(i), lambda i=i: bytes([i]) * (10 + 40 * i))
        assert not outcome.hit
    redis_tier = bob.tiers[1]
    names = [bob.name_for(key(i)) for i in range(4)]
    assert sorted(redis_tier.scan("bob/")) == names
    admin.unlink("flowcache:{" + names[1] + "}")  # what an eviction does
    assert sorted(redis_tier.scan("bob/")) == [names[0], names[2], names[3]]
    assert sorted(m.decode() for m in admin.smembers("flowcache:index:{bob}")) == [
        names[0], names[2], names[3]]  # the listing dropped the stale name
    assert bob.delete(key(3))
    assert sorted(redis_tier.scan("bob/")) == [names[0], names[2]]
    bob.tiers[0].clear()
    assert bob.get_or_compute(key(2), lambda: b"?").tier == "redis"
    with pytest.raises(ValueError, match="one namespace at a time"):
        list(redis_tier.scan(""))
    plain = RedisTier.from_url(bob_url)  # a tenant without index=true
    with pytest.raises(PermissionError, match="index=true"):
        list(plain.scan("bob/"))


# -- the library --------------------------------------------------------------------------------
@pytest.fixture
def two_users(make_store, redis_url, tmp_path):
    """alice and bob on shared tiers that can reach each other's bytes (no backend isolation):
    what the client checks must hold by itself."""
    def store(user: str):
        return make_store(MemoryTier(), RedisTier.from_url(redis_url),
                          ObjectTier(str(tmp_path / "shared")), who=Identity(user, new_key()))
    return store("alice"), store("bob")


def test_another_users_entry_is_a_permission_error_on_every_path(two_users):
    alice, bob = two_users
    alice.put(key(1), {"secret": 1})
    alice.put(key(2), {"secret": 2})
    alice_name = alice.name_for(key(1))
    with pytest.raises(ForeignNamespace):  # delete by name
        bob.delete_name(alice_name)
    assert isinstance(ForeignNamespace(alice_name, "bob"), PermissionError)
    assert list(bob.scan()) == []  # listing
    assert list(bob.headers()) == []
    # alice's frame copied into bob's namespace in the durable tier: refused, never loaded
    bob.durable.put(bob.name_for(key(1)), alice.durable.get(alice_name))
    with pytest.raises(ForeignEntry) as refused:
        bob.get(key(1))
    assert isinstance(refused.value, PermissionError)
    assert "belongs to 'alice'" in str(refused.value)
    # ...and get_or_compute computes bob's own value instead of serving alice's
    outcome = bob.get_or_compute(key(1), lambda: {"bob": 1})
    assert (outcome.value, outcome.hit) == ({"bob": 1}, False)
    # in a hot tier only: dropped and counted, not served
    bob.tiers[1].put(bob.name_for(key(2)), alice.durable.get(alice.name_for(key(2))))
    assert bob.get(key(2), None) is None
    assert bob.counters.tier("redis").corrupt == 1
    assert not bob.tiers[1].exists(bob.name_for(key(2)))
    # someone naming themselves alice, without her key, cannot read her entries either
    impostor = type(alice)(alice.tiers[2:], identity=Identity("alice", new_key()))
    with pytest.raises(CorruptEntry, match="signature"):
        impostor.get(key(2))
    assert alice.get(key(1)) == {"secret": 1}
    assert alice.get(key(2)) == {"secret": 2}


class Payload:
    """Unpickling this creates a file (what an attacker's frame would do)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def forged(owner: str, key_: str, payload: bytes, signing_key: bytes):
    header = Header(key=key_, owner=owner, serializer="pickle", size=len(payload),
                    created=0.0, lifetime={"kind": "keep"})
    return encode_payload(header, payload, Identity(owner, signing_key))


def test_a_frame_planted_without_the_owners_key_is_never_unpickled(make_store, redis_url,
                                                                   tmp_path):
    alice = make_store(MemoryTier(), RedisTier.from_url(redis_url),
                       ObjectTier(str(tmp_path / "d")), who=Identity("alice", new_key()))
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Payload(str(marker)))
    mallory = new_key()
    as_alice = forged("alice", key(7), payload, mallory)  # claims alice, signed by mallory
    as_mallory = forged("mallory", key(8), payload, mallory)  # honest owner, wrong namespace
    for k, frame in [(key(7), as_alice), (key(8), as_mallory)]:
        for tier in alice.tiers[1:]:  # Redis and the bucket: where an attacker could write
            tier.put(alice.name_for(k), frame)

    with pytest.raises(CorruptEntry, match="signature"):
        alice.get(key(7))
    with pytest.raises(ForeignEntry):
        alice.get(key(8))
    assert alice.get_or_compute(key(7), lambda: "recomputed").value == "recomputed"
    assert alice.get(key(7)) == "recomputed"
    assert alice.counters.tier("redis").corrupt == 2
    assert not marker.exists()  # nothing was unpickled
    pickle.loads(payload).close()  # the payload was live: unpickling it does create the file
    assert marker.exists()


# -- provisioning and operators -------------------------------------------------------------------
def test_admin_add_user_prints_a_configuration_that_works_and_confines(tenant_redis, tmp_path):
    server, admin, _ = tenant_redis
    operator_env = {"FLOWCACHE_STORE": f"memory+{server.url}+{tmp_path / 'durable'}",
                    "FLOWCACHE_USER": "operator", "FLOWCACHE_KEYS_DIR": str(tmp_path / "keys")}
    runner = CliRunner()
    configs = {}
    for user in ("alice", "bob"):
        result = runner.invoke(app, ["admin", "add-user", user], env=operator_env)
        assert result.exit_code == 0, result.output
        configs[user] = export_lines(result.output)
    alice_env = configs["alice"]
    assert alice_env["FLOWCACHE_USER"] == "alice"
    key_file = tmp_path / "keys" / "alice.key"
    assert alice_env["FLOWCACHE_SIGNING_KEY_FILE"] == str(key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "flowcache-alice:" in alice_env["FLOWCACHE_STORE"]
    assert "index=true" in alice_env["FLOWCACHE_STORE"]

    store = StoreConfig.from_env(alice_env).build()
    try:
        store.put(key(1), b"alice's")
        store.tiers[0].clear()
        assert store.get_entry(key(1)) is not None
        assert store.get(key(1)) == b"alice's"
        assert list(store.tiers[1].scan("alice/")) == [store.name_for(key(1))]
        ledger_of(store).flush()
    finally:
        store.close()
    assert admin.exists("flowcache:{" + store.name_for(key(1)) + "}")
    assert admin.xlen("flowcache:ledger:{alice}") > 0  # its ledger, in Redis, via its ACL

    bob_url = TierSpec.parse(configs["bob"]["FLOWCACHE_STORE"].split("+")[1]).url
    bob = redis.Redis.from_url(bob_url.split("?")[0])
    with pytest.raises(NOPERM):
        bob.get("flowcache:{" + store.name_for(key(1)) + "}")
    again = runner.invoke(app, ["admin", "add-user", "alice", "--inline-key"], env=operator_env)
    assert export_lines(again.output)["FLOWCACHE_SIGNING_KEY"] == key_file.read_text().strip()
    removed = runner.invoke(app, ["admin", "remove-user", "bob"], env=operator_env)
    assert "removed" in removed.output
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis.from_url(bob_url.split("?")[0]).ping()


def test_acl_rules_are_built_from_validated_names():
    rules = tenant_acl_rules("alice", "0" * 64)
    assert rules[:4] == ["reset", "on", "#" + "0" * 64, "resetchannels"]
    assert "~flowcache:{alice/*" in rules
    assert not {"+keys", "+scan", "+@all", "+flushall"} & set(rules)
    assert acl_username("alice") == "flowcache-alice"
    with pytest.raises(ConfigError):
        tenant_acl_rules("al*ce", "0" * 64)
    with pytest.raises(ConfigError):
        acl_username("default bob")


def test_a_tenants_store_spec_carries_their_credentials_never_the_operators():
    tenant = RedisTenant("alice", "flowcache-alice", "pw-a", (), persisted=False)
    spec = tenant_store_spec(["memory", "redis://ops:adminpw@cache:6379/2?prefix=fc:",
                              "s3://team/fc"], tenant)
    memory, redis_url, durable = split_store_spec(spec)
    assert (memory, durable) == ("memory", "s3://team/fc")
    assert redis_url == "redis://flowcache-alice:pw-a@cache:6379/2?prefix=fc%3A&index=true"
    assert "adminpw" not in spec
    assert TierSpec.parse(redis_url).options == {"prefix": "fc:", "index": True}


def test_bucket_policy_command_confines_a_user_to_their_prefix():
    runner = CliRunner()
    result = runner.invoke(app, ["admin", "bucket-policy", "alice", "--s3", "team-cache/fc"])
    policy = json.loads(result.output)
    assert policy["Version"] == "2012-10-17"
    listing, objects = policy["Statement"]
    assert listing["Action"] == "s3:ListBucket"
    assert listing["Resource"] == "arn:aws:s3:::team-cache"
    assert listing["Condition"]["StringLike"]["s3:prefix"] == ["fc/alice", "fc/alice/",
                                                               "fc/alice/*"]
    assert objects["Resource"] == "arn:aws:s3:::team-cache/fc/alice/*"
    assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"} <= set(objects["Action"])
    assert all(s["Effect"] == "Allow" and "Principal" not in s for s in policy["Statement"])

    arn = "arn:aws:iam::123456789012:user/alice"
    result = runner.invoke(app, ["admin", "bucket-policy", "alice", "--s3", "s3://team-cache/fc",
                                 "--principal", arn])
    statements = {s["Sid"]: s for s in json.loads(result.output)["Statement"]}
    deny = statements["FlowcacheDenyOtherObjects"]
    assert (deny["Effect"], deny["Principal"], deny["NotResource"]) == (
        "Deny", {"AWS": arn}, "arn:aws:s3:::team-cache/fc/alice/*")
    assert statements["FlowcacheDenyListingOthers"]["Condition"]["StringNotLike"]

    result = runner.invoke(app, ["admin", "bucket-policy", "alice", "--gcs", "team-cache/fc",
                                 "--member", "serviceAccount:alice@p.iam.gserviceaccount.com"])
    gcs = json.loads(result.output)
    (binding,) = gcs["bindings"]
    assert gcs["version"] == 3
    assert binding["members"] == ["serviceAccount:alice@p.iam.gserviceaccount.com"]
    assert binding["condition"]["expression"] == (
        'resource.name.startsWith("projects/_/buckets/team-cache/objects/fc/alice/")')
    result = runner.invoke(app, ["admin", "bucket-policy", "alice", "--gcs", "team-cache/fc",
                                 "--commands"])
    assert "managed-folders create gs://team-cache/fc/alice/" in result.output
    bad = runner.invoke(app, ["admin", "bucket-policy", "alice", "--s3", "Not_A_Bucket/x"])
    assert bad.exit_code == 2  # a bad value: usage
    assert "bucket name" in bad.output
    neither = runner.invoke(app, ["admin", "bucket-policy", "alice"])
    assert neither.exit_code == 2


class UnreadableTier(ObjectTier):
    """A durable tier whose frames the operator must not read."""

    def get(self, name):
        raise AssertionError(f"the operator read {name}")

    def head(self, name, nbytes):
        raise AssertionError(f"the operator read the header of {name}")


def test_an_operator_clears_a_namespace_without_reading_it(tenant_redis, make_store, tmp_path):
    server, admin, tenant = tenant_redis
    _, alice_url = tenant("alice")
    _, bob_url = tenant("bob")
    alice = tenant_store(make_store, "alice", alice_url, tmp_path / "d", inline_bytes=64,
                         part_bytes=64)
    bob = tenant_store(make_store, "bob", bob_url, tmp_path / "d")
    tracker = RunTracker(alice)
    for i in range(3):
        tracker.record("run-1", key(i))
        alice.put(key(i), bytes(100 * i + 1))
    tracker.leave("run-1")
    bob.put(key(0), b"bob's")
    admin.set("flowcache:lock:{" + alice.name_for(key(9)) + "}", "a lease")
    ledger = Ledger(SQLiteBackend(tmp_path / "ledger.db"))

    report = clear_namespace([RedisTier.from_url(server.url),
                              UnreadableTier(str(tmp_path / "d"))], "alice", ledger=ledger)
    assert (report.entries, report.hot, report.records) == (3, {"redis": 3}, 4)
    assert [k for k in admin.keys("*") if b"alice" in k and b"ledger" not in k] == []
    assert not (tmp_path / "d" / "alice").exists() or not any(
        p.is_file() for p in (tmp_path / "d" / "alice").rglob("*"))
    assert bob.get(key(0)) == b"bob's"
    removals = [(e.tier, e.reason) for e in ledger.events("alice") if e.kind == "remove"]
    assert sorted(removals) == [("object", "cleared")] * 3 + [("redis", "cleared")] * 3
    alice.tiers[0].clear()
    assert alice.get(key(1), None) is None


def test_clear_user_command(tenant_redis, make_store, tmp_path):
    server, admin, tenant = tenant_redis
    _, alice_url = tenant("alice")
    alice = tenant_store(make_store, "alice", alice_url, tmp_path / "d")
    alice.put(key(1), b"x")
    env = {"FLOWCACHE_STORE": f"{server.url}+{tmp_path / 'd'}", "FLOWCACHE_USER": "operator",
           "FLOWCACHE_LEDGER": f"sqlite://{tmp_path / 'ledger.db'}"}
    result = CliRunner().invoke(app, ["clear", "--user", "alice", "--yes"], env=env)
    assert result.exit_code == 0, result.output
    assert "cleared 1 entries of alice" in result.output
    assert admin.keys("flowcache:{alice/*") == []
    refused = CliRunner().invoke(app, ["clear", "--user", "alice", "--flow", "f"], env=env)
    assert refused.exit_code == 2


# -- choosing the user inside a process ----------------------------------------------------------
def test_flowcache_user_switches_the_default_store_for_the_block_only(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWCACHE_STORE", f"memory+{tmp_path / 'd'}")
    monkeypatch.setenv("FLOWCACHE_USER", "erin")
    monkeypatch.setenv("FLOWCACHE_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("FLOWCACHE_LEDGER", "off")
    from flowcache.config import set_default_store

    set_default_store(None)
    try:
        assert default_store().identity.user == "erin"
        seen = {}
        with flowcache_user("carol") as carol:
            assert default_store() is carol
            carol.put(key(1), b"carol's")
            worker = threading.Thread(target=lambda: seen.setdefault("other", default_store()))
            worker.start()
            worker.join()
        assert seen["other"].identity.user == "erin"  # a thread started outside the context
        assert default_store().identity.user == "erin"
        assert (tmp_path / "keys" / "carol.key").exists()
        assert (tmp_path / "d" / "carol").is_dir()
        with flowcache_user("carol") as again:
            assert again is carol
            assert again.get(key(1)) == b"carol's"
        with use_store(carol):
            assert default_store() is carol
    finally:
        set_default_store(None)


@pytest.mark.usefixtures("prefect_api")
def test_a_flow_can_cache_as_another_user(make_store, tmp_path, default_store_of):
    from prefect import flow, task

    from prefect_cache import cache

    tiers = (MemoryTier(), ObjectTier(str(tmp_path / "d")))
    alice = default_store_of(make_store(*tiers, who=Identity("alice", new_key())))
    bob = make_store(*tiers, who=Identity("bob", new_key()))

    @cache(keep=True)
    @task
    def square(x: int) -> int:
        return x * x

    @flow
    def as_bob() -> list[int]:
        with use_store(bob):
            futures = [square.submit(i) for i in range(3)]
            return [f.result() for f in futures] + [square(5)]

    assert as_bob() == [0, 1, 4, 25]
    assert len(list(bob.scan())) == 4
    assert list(alice.scan()) == []
    assert os.path.isdir(tmp_path / "d" / "bob")


# -- names from users never become paths (issue 14) --------------------------------------------
def test_names_with_path_syntax_never_reach_another_namespace(tmp_path, make_store):
    from flowcache.errors import InvalidName

    shared = tmp_path / "shared"
    alice = make_store(ObjectTier(str(shared)), who=Identity("alice", new_key()))
    bob = make_store(ObjectTier(str(shared)), who=Identity("bob", new_key()))
    key = "ab" * 32
    alice.put(key, b"alice's")
    alice_file = shared / alice.name_for(key)
    assert alice_file.exists()
    for attempt in (lambda: bob.delete_name(f"bob/../alice/ab/{key}"),
                    lambda: bob.delete_name(f"bob/ab/../../alice/ab/{key}"),
                    lambda: bob.delete(f"./../alice/ab/{key}"),
                    lambda: bob.put(f"./../alice/ab/{key}", b"bob's"),
                    lambda: bob.get(f"../alice/ab/{key}"),
                    lambda: bob.durable.delete(f"bob/../alice/ab/{key}"),
                    lambda: bob.durable.put(f"bob/../../etc/{key}", Frame((b"x",)))):
        with pytest.raises((InvalidName, ForeignNamespace)):
            attempt()
    assert alice_file.read_bytes()[:4] == b"FLWC"
    assert alice.get(key) == b"alice's"
    assert not (tmp_path / "etc").exists()


def test_the_ledger_keeps_what_redis_refuses_for_now_and_retries_it(own_redis):
    import redis as redis_py

    admin = redis_py.Redis.from_url(own_redis.url)
    admin.config_set("maxmemory-policy", "noeviction")
    ledger = Ledger(RedisBackend(admin), flush_every=3600)
    ledger.wrote("alice", "object", "alice/00/a", 10, None)
    assert ledger.flush()
    admin.config_set("maxmemory", int(admin.info("memory")["used_memory"]) + 100_000)
    filler = 0
    while True:
        try:
            admin.set(f"filler:{filler}", b"x" * 1000)
        except redis_py.exceptions.OutOfMemoryError:
            break
        filler += 1
    for i in range(5):
        ledger.wrote("alice", "object", f"alice/00/{i}", 10, None)
    assert ledger.flush() is False  # refused for now: kept queued, not dropped
    assert ledger.dropped == 0
    admin.config_set("maxmemory", 0)
    assert ledger.flush() is True
    names = [event.name for event in ledger.events("alice")]
    assert names == ["alice/00/a"] + [f"alice/00/{i}" for i in range(5)]  # each once
    ledger.close()
