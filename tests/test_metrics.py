"""Metrics for autoscaling: the store's counters, bytes held, removals and write confirmations
in Prometheus' format, and the ``flowcache metrics`` exporter scraped by a real Prometheus."""

from __future__ import annotations

import functools

import pytest
from prometheus_client import CollectorRegistry

from flowcache.errors import ConfigError
from flowcache.frames import encode
from flowcache.identity import Identity, new_key
from flowcache.listeners import StoreListener
from flowcache.metrics import expose, withdraw
from flowcache.tiers.memory import MemoryTier
from flowcache.tiers.node import NodeTier
from flowcache.tiers.objects import ObjectTier
from flowcache.tiers.redis import RedisTier
from flowcache.usage import OTHER

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
        expose(store, registry=registry, user_limit=0)
