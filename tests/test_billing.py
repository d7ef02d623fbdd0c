"""Billing: byte-seconds from the ledger agree with the test's own timeline, including copies
that Redis evicted under maxmemory; the billing command; the flow-end report."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections import defaultdict
from typing import ClassVar

import pytest
import redis
from typer.testing import CliRunner

from flowcache.accounts import billing
from flowcache.accounts.evictions import watch_evictions
from flowcache.accounts.ledger import Ledger, RedisBackend, SQLiteBackend
from flowcache.cli import app, parse_when
from flowcache.errors import ConfigError
from flowcache.identity import Identity, new_key
from flowcache.tiers.memory import MemoryTier
from flowcache.tiers.objects import ObjectTier
from flowcache.tiers.redis import RedisTier

PAYLOAD = 100_000
TIERS = ("memory", "redis", "object")


def key(i: int) -> str:
    return f"{i:064x}"


class Timeline:
    """When each copy was seen to appear and disappear, by the test's own observation."""

    def __init__(self, clock) -> None:
        self.clock = clock
        self.spans: dict[tuple[str, str], list[list]] = defaultdict(list)
        self.sizes: dict[str, int] = {}

    def see(self, tier: str, present: set[str]) -> None:
        now = self.clock()
        for name in self.sizes:
            spans = self.spans[tier, name]
            held = bool(spans) and spans[-1][1] is None
            if name in present and not held:
                spans.append([now, None])
            elif name not in present and held:
                spans[-1][1] = now

    def byte_seconds(self, tier: str, since: float, until: float) -> float:
        total = 0.0
        for (span_tier, name), spans in self.spans.items():
            if span_tier != tier:
                continue
            for start, end in spans:
                end = until if end is None else min(end, until)
                total += self.sizes[name] * max(0.0, end - max(start, since))
        return total

    def evicted(self) -> list[tuple[str, float]]:
        """Redis copies that went while the durable copy stayed: (name, when)."""
        gone = []
        for (tier, name), spans in self.spans.items():
            if tier != "redis":
                continue
            durable_end = self.spans["object", name][-1][1]
            gone += [(name, end) for _, end in spans
                     if end is not None and (durable_end is None or end < durable_end)]
        return gone


@pytest.fixture(params=["sqlite", "redis"])
def ledger(request, tmp_path, clock):
    if request.param == "sqlite":
        backend = SQLiteBackend(tmp_path / "ledger.sqlite3")
    else:  # on another server than the one that evicts
        backend = RedisBackend(redis.Redis.from_url(request.getfixturevalue("redis_url")),
                               prefix="billing-test:")
    ledger = Ledger(backend, clock=clock)
    yield ledger
    ledger.close()


@pytest.fixture
def evicting(own_redis, make_store, tmp_path, ledger):
    """A store over memory (3 frames), a Redis that evicts (allkeys-lru, ~1 MB of room) and a
    local bucket; every copy observed by a Timeline after each step."""
    admin = redis.Redis.from_url(own_redis.url)
    admin.config_set("maxmemory-policy", "allkeys-lru")
    memory = MemoryTier(max_bytes=3 * PAYLOAD + 3000)
    redis_tier = RedisTier.from_url(own_redis.url)
    durable = ObjectTier(str(tmp_path / "bucket"))
    store = make_store(memory, redis_tier, durable, who=Identity("alice", new_key()))
    ledger.attach(store)
    redis_tier.client.ping()
    admin.config_set("maxmemory", int(admin.info("memory")["used_memory"]) + 1_000_000)
    yield store, admin
    admin.close()


def settle(store, admin, timeline, watcher=None) -> None:
    """Let Redis finish evicting, then look at every tier (the clock does not move here)."""
    admin.ping()  # any command makes Redis evict down to maxmemory first
    names = list(timeline.sizes)
    timeline.see("memory", set(store.tiers[0].scan("")))
    timeline.see("redis", {n for n in names if admin.exists("flowcache:{" + n + "}")})
    timeline.see("object", {n for n in names if os.path.exists(store.durable._path(n))})
    if watcher is not None:
        watcher.sync()


def run_workload(store, admin, clock, timeline, watcher=None, *, steps: int = 24) -> list[int]:
    """Writes of 100 kB frames, some reads (hits, promotions) and deletes, at uneven times."""
    hits = []
    for i in range(steps):
        clock.advance(5 + (i % 7) * 3)
        store.put(key(i), os.urandom(PAYLOAD), meta={
            "compute_seconds": 1.0 + i, "run": f"run-{i % 2}", "flow": "odd" if i % 2 else
            "even", "task": "make"})
        timeline.sizes[store.name_for(key(i))] = os.path.getsize(
            store.durable._path(store.name_for(key(i))))
        settle(store, admin, timeline, watcher)
        if i % 5 == 4:
            clock.advance(4)
            assert store.get(key(i - 3)) is not None
            hits.append(i - 3)
            settle(store, admin, timeline, watcher)
        if i % 8 == 7:
            clock.advance(2)
            store.delete(key(i - 6), reason="purged")
            settle(store, admin, timeline, watcher)
    return hits


def test_billing_matches_bytes_times_seconds_including_redis_evictions(evicting, ledger, clock):
    store, admin = evicting
    watcher = watch_evictions(admin, ledger)
    watcher.configure()
    watcher.start()
    timeline = Timeline(clock)
    start = clock()
    hits = run_workload(store, admin, clock, timeline, watcher)
    clock.advance(50)
    end = clock()
    watcher.stop()

    evicted = timeline.evicted()
    assert len(evicted) >= 5, "the workload must make Redis evict"
    assert watcher.reported >= len(evicted)
    events = ledger.events("alice")
    assert sum(e.reason == "evicted" for e in events if e.tier == "memory") >= 5
    for since, until in [(start, end), (start + 100, start + 300), (start + 250, end + 1000)]:
        report = billing.usage(events, user="alice", since=since, until=until)
        for tier in TIERS:
            expected = timeline.byte_seconds(tier, since, until)
            assert expected > 0
            assert report.byte_seconds(tier) == pytest.approx(expected, rel=0.01), tier
    report = billing.usage(events, user="alice", since=start, until=end)
    assert report.total("hits") == len(hits) == 4
    assert report.total("saved_seconds") == pytest.approx(sum(1.0 + i for i in hits))
    assert report.misses == 0
    written = {row.tier: row.bytes_written for row in report.rows}
    assert written["object"] == sum(timeline.sizes.values())
    by_flow = billing.usage(events, user="alice", since=start, until=end, by="flow")
    assert {row.group for row in by_flow.rows} == {"even", "odd"}
    assert sum(r.byte_seconds for r in by_flow.rows) == pytest.approx(report.byte_seconds())


def test_without_the_watcher_reconciliation_bounds_the_overcharge(evicting, ledger, clock):
    store, admin = evicting
    timeline = Timeline(clock)
    start = clock()
    run_workload(store, admin, clock, timeline, steps=14)
    evicted = timeline.evicted()
    assert len(evicted) >= 3
    clock.advance(120)
    reconciled_at = clock()
    ended = ledger.reconcile(store)
    still_gone = {name for name, _ in evicted
                  if timeline.spans["redis", name][-1][1] is not None}
    assert {r.name for r in ended if r.tier == "redis"} == still_gone
    clock.advance(30)
    end = clock()
    report = billing.usage(ledger.events("alice"), user="alice", since=start, until=end)
    true_cost = timeline.byte_seconds("redis", start, end)
    # what the accuracy statement says: a silently evicted copy is billed until the ledger
    # learns it is gone, which is the reconciliation, or sooner, a new copy of the same entry
    # written to Redis (a read that promoted it back), no later
    overcharge = 0.0
    for name, when in evicted:
        rewritten = [s for s, _ in timeline.spans["redis", name] if s >= when]
        overcharge += timeline.sizes[name] * (min([reconciled_at, *rewritten]) - when)
    assert report.byte_seconds("redis") == pytest.approx(true_cost + overcharge, rel=0.01)
    assert report.byte_seconds("redis") >= true_cost
    for tier in ("memory", "object"):
        assert report.byte_seconds(tier) == pytest.approx(
            timeline.byte_seconds(tier, start, end), rel=0.01)


def test_the_billing_command_reports_per_tier_and_per_flow(tmp_path, clock):
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger(SQLiteBackend(path), clock=clock)
    start = clock()
    ledger.wrote("alice", "object", "alice/00/a", 3600, None)
    ledger.record(*[])
    clock.advance(3600)
    ledger.wrote("alice", "redis", "alice/00/a", 3600, None)
    clock.advance(1800)
    ledger.removed("alice", "redis", "alice/00/a", "evicted")
    ledger.wrote("bob", "object", "bob/00/b", 10**9, None)
    ledger.close()
    env = {"FLOWCACHE_LEDGER": str(path), "FLOWCACHE_USER": "operator",
           "FLOWCACHE_STORE": str(tmp_path / "d")}
    since = dt.datetime.fromtimestamp(start, dt.UTC).isoformat()
    until = dt.datetime.fromtimestamp(start + 7200, dt.UTC).isoformat()
    runner = CliRunner()
    result = runner.invoke(app, ["billing", "--user", "alice", "--since", since, "--until", until,
                                 "--json"], env=env)
    assert result.exit_code == 0, result.output
    rows = {row["tier"]: row for row in json.loads(result.output)["rows"]}
    assert rows["object"]["byte_hours"] == pytest.approx(3600 * 2)  # 3600 B for 2 h
    assert rows["redis"]["byte_hours"] == pytest.approx(3600 * 0.5)
    assert rows["redis"]["entries"] == 1
    table = runner.invoke(app, ["billing", "--user", "alice", "--since", since, "--until", until,
                                "--by", "flow"], env=env)
    assert table.exit_code == 0
    assert "byte-hours" in table.output
    assert "9,000.000" in table.output  # TOTAL: 7200 + 1800 byte-hours
    wrong = runner.invoke(app, ["billing", "--since", "yesterday-ish"], env=env)
    assert wrong.exit_code == 2
    assert "cannot read 'yesterday-ish' as a time" in wrong.output
    backwards = runner.invoke(app, ["billing", "--since", until, "--until", since], env=env)
    assert backwards.exit_code == 2


def test_times_are_read_as_dates_or_durations_ago():
    assert parse_when("2026-11-01") == dt.datetime(2026, 11, 1, tzinfo=dt.UTC).timestamp()
    assert parse_when("2026-11-01T12:00+01:00") == dt.datetime(
        2026, 11, 1, 11, tzinfo=dt.UTC).timestamp()
    assert parse_when("7d", now=1_000_000.0) == 1_000_000.0 - 7 * 86400
    with pytest.raises(ConfigError):
        parse_when("soon")


@pytest.mark.usefixtures("prefect_api")
def test_the_flow_end_report_adds_byte_hours_and_the_bytes_the_run_added(
        make_store, tmp_path, default_store_of):
    from prefect import flow, task

    from flowcache.units import format_size, parse_size
    from prefect_cache import cache, cache_hooks
    from tests.prefect_helpers import stats_artifact, table_rows

    class Bucket(ObjectTier):
        """Notes the size of every entry written to it (the test's own account)."""

        written: ClassVar[dict[str, int]] = {}

        def put(self, name, frame, **options):
            super().put(name, frame, **options)
            if "/_runs/" not in name:
                self.written[name] = frame.nbytes

    store = default_store_of(make_store(MemoryTier(), Bucket(str(tmp_path / "d"))))
    Ledger(SQLiteBackend(tmp_path / "ledger.sqlite3")).attach(store)

    @cache(keep=True)
    @task
    def blob(i: int) -> bytes:
        return bytes([i]) * 4_000_000  # large enough to be held for whole byte-hours

    @cache(lifetime="flow")
    @task
    def scratch(i: int) -> bytes:
        return bytes([i]) * 2_000_000

    @flow(**cache_hooks())
    def produce() -> int:
        return sum(len(blob(i)) + len(scratch(i)) for i in range(3))

    state = produce(return_state=True)
    flow_run_id = state.state_details.flow_run_id
    artifact = stats_artifact(flow_run_id)
    rows = {row["task"]: row for row in table_rows(artifact)}
    assert len(Bucket.written) == 6
    assert len(list(store.scan())) == 3  # the intermediates were purged
    assert rows["TOTAL"]["added to the cache"] == format_size(sum(Bucket.written.values()))
    held, rounding = {}, 0.0
    for task_name in ("TOTAL", "blob", "scratch"):  # sizes held for hours, never nothing
        text = rows[task_name]["held (byte-hours)"]
        assert text.endswith(" x h"), text
        assert not text.startswith("0 B"), text
        number, unit = text.removesuffix(" x h").split()
        held[task_name] = parse_size(number + unit)
        # what the table's rounding may hide: half of the last digit shown (whole bytes, or
        # one decimal of KiB, MiB, ...)
        rounding += (0.05 if "." in number else 0.5) * parse_size("1" + unit)
    # the total is the sum of the tasks' byte-hours, to the table's rounding
    assert abs(held["TOTAL"] - (held["blob"] + held["scratch"])) <= rounding, (held, rounding)
    assert "so far" in artifact.description
