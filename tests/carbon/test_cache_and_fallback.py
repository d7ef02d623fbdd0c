"""Response caching (time buckets, TTL, the flowcache store) and fallback on provider failure."""

import logging

import httpx
import numpy as np
import pytest

from flowcache.carbon.cache import CachedProvider, MemoryResponseCache, StoreResponseCache
from flowcache.carbon.fallback import FallbackProvider, StaticProfile
from flowcache.carbon.providers.electricitymaps import ElectricityMaps
from flowcache.carbon.timestamps import to_epoch
from flowcache.errors import ProviderUnavailable, RegionNotFound
from tests.carbon.fakes import hourly

NOW = to_epoch("2022-06-01T12:00Z")
H = 3600.0


class Counting:
    name = "counting"
    signal = "average"

    def __init__(self):
        self.calls = []
        self.fail = False

    def cache_identity(self):
        return "counting:v1"

    def history(self, region, start, end):
        if self.fail:
            raise ProviderUnavailable("counting", "down")
        self.calls.append(("history", start, end))
        n = int(np.ceil((end - start) / H))
        return hourly([100.0 + i for i in range(n)], start=start, region=region)

    def forecast(self, region, start, end):
        if self.fail:
            raise ProviderUnavailable("counting", "down")
        self.calls.append(("forecast", start, end))
        n = int(np.ceil((end - start) / H))
        return hourly([50.0] * n, start=start, region=region, kind="forecast")


def test_requests_in_one_time_bucket_share_one_call():
    inner = Counting()
    cached = CachedProvider(inner, bucket=900, clock=lambda: NOW)
    a = cached.forecast("DE", NOW + 7 * 60, NOW + 7 * 60 + 4 * H)
    b = cached.forecast("DE", NOW + 11 * 60, NOW + 11 * 60 + 4 * H)
    assert len(inner.calls) == 1
    assert (cached.hits, cached.misses) == (1, 1)
    assert inner.calls[0][1] == NOW  # widened down to the bucket
    assert a.covers(NOW + 7 * 60, NOW + 7 * 60 + 4 * H)
    assert b.values.tolist() == a.values.tolist()
    cached.forecast("FR", NOW, NOW + H)
    assert len(inner.calls) == 2  # another region is another key


def test_entries_expire_after_their_ttl():
    clock = [0.0]
    cache = MemoryResponseCache(clock=lambda: clock[0])
    cache.put("k", b"v", ttl=10)
    assert cache.get("k") == b"v"
    clock[0] = 10.5
    assert cache.get("k") is None


def test_the_flowcache_store_backs_the_cache_across_instances(tmp_path):
    from flowcache.identity import Identity
    from flowcache.store import TieredStore
    from flowcache.tiers.objects import ObjectTier

    store = TieredStore([ObjectTier(str(tmp_path))], identity=Identity("tester", b"k" * 32))
    inner = Counting()
    first = CachedProvider(inner, StoreResponseCache(store), clock=lambda: NOW)
    first.history("DE", NOW - 30 * 86400, NOW - 29 * 86400)
    second = CachedProvider(inner, StoreResponseCache(store), clock=lambda: NOW)
    again = second.history("DE", NOW - 30 * 86400, NOW - 29 * 86400)
    assert len(inner.calls) == 1
    assert len(again) == 24
    key = StoreResponseCache(store).key("anything")
    assert len(key) == 64
    assert all(c in "0123456789abcdef" for c in key)


def test_cached_real_provider_saves_http_calls(sleeps):
    calls = []

    def handler(request):
        calls.append(request)
        return httpx.Response(200, json={"zone": "DE", "forecast": [
            {"datetime": "2022-06-01T12:00:00Z", "carbonIntensity": 300},
            {"datetime": "2022-06-01T13:00:00Z", "carbonIntensity": 280}]})

    em = ElectricityMaps("t", client=httpx.Client(transport=httpx.MockTransport(handler)),
                         sleep=sleeps.append, clock=lambda: NOW)
    cached = CachedProvider(em, clock=lambda: NOW)
    for minute in (1, 5, 9):
        cached.forecast("DE", NOW + minute * 60, NOW + 3600)
    assert len(calls) == 1


def test_fallback_to_last_known_data_with_a_warning_and_a_flag(caplog):
    inner = Counting()
    safe = FallbackProvider(inner, clock=lambda: NOW)
    live = safe.history("DE", NOW - 6 * H, NOW)
    assert live.fallback is None
    inner.fail = True
    with caplog.at_level(logging.WARNING, logger="flowcache.carbon.fallback"):
        stale = safe.history("DE", NOW - 3 * H, NOW)
    assert stale.fallback is not None
    assert "last known data" in stale.fallback
    assert stale.values.tolist() == live.values[3:].tolist()
    assert "using the fallback" in caplog.text
    later = safe.forecast("DE", NOW + 24 * H, NOW + 26 * H)  # not covered: hour-of-day profile
    assert "hour-of-day profile" in later.fallback
    assert later.kind == "forecast"


def test_fallback_to_a_static_profile_and_errors_that_are_not_masked():
    inner = Counting()
    inner.fail = True
    profile = StaticProfile(tuple(float(h) for h in range(24)))
    safe = FallbackProvider(inner, default_profile=profile)
    series = safe.forecast("DE", NOW, NOW + 2 * H)
    assert series.values.tolist() == [12.0, 13.0]
    assert "static profile" in series.fallback
    with pytest.raises(ProviderUnavailable):
        FallbackProvider(inner).forecast("DE", NOW, NOW + H)

    class Unknown(Counting):
        def forecast(self, region, start, end):
            raise RegionNotFound("x", "no such zone")

    with pytest.raises(RegionNotFound):  # a wrong region is a configuration error, not an outage
        FallbackProvider(Unknown(), default_profile=profile).forecast("XX", NOW, NOW + H)
