"""Metrics for autoscaling: the store's counters, bytes held, removals and write confirmations
in Prometheus' format, and the ``flowcache metrics`` exporter scraped by a real Prometheus."""

from __future__ import annotations

from flowcache.listeners import StoreListener
from flowcache.tiers.memory import MemoryTier
from flowcache.tiers.objects import ObjectTier

KEY = "ab" * 32


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
