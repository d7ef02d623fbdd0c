"""What a user sees of the cache in a Prefect run: the flow-end line and warnings in the run's
logs (read back from the API), and the statistics artifact, however the run ended."""

from __future__ import annotations

import io
import logging

import pytest
from prefect import flow, task

from flowcache.tiers.memory import MemoryTier
from flowcache.tiers.objects import ObjectTier
from flowcache.tiers.redis import RedisTier
from flowcache.units import format_size
from prefect_cache import cache, cache_hooks
from tests.prefect_helpers import log_matching, run_logs, stats_artifact, table_rows

pytestmark = pytest.mark.usefixtures("prefect_api")


class Boom(BaseException):
    """Not an Exception: Prefect reports the run as Crashed, not Failed."""


@pytest.fixture
def store(tmp_path, make_store, default_store_of):
    return default_store_of(make_store(MemoryTier(), ObjectTier(str(tmp_path / "durable"))))


def test_the_totals_line_and_a_degraded_tier_warning_reach_the_run_logs(
        own_redis, tmp_path, make_store, default_store_of):
    redis_tier = RedisTier.from_url(own_redis.url, max_item_bytes=None)
    default_store_of(make_store(MemoryTier(), redis_tier, ObjectTier(str(tmp_path / "d"))))
    own_redis.stop()  # the hot tier is down for the whole run

    @cache(lifetime="flow")
    @task
    def double(i: int) -> int:
        return 2 * i

    @flow(name="reports-degraded", **cache_hooks())
    def run() -> int:
        return sum(double(i) for i in range(3))

    state = run(return_state=True)
    assert state.result() == 6
    run_id = state.state_details.flow_run_id
    totals = log_matching(run_id, "flowcache:", "3 misses")
    assert totals is not None, [r.message for r in run_logs(run_id)]
    assert "purged 3 intermediates" in totals.message
    warning = log_matching(run_id, "unavailable", "durable tier")
    assert warning is not None, [r.message for r in run_logs(run_id)]
    assert warning.level == logging.WARNING


def test_a_crashed_run_still_logs_the_totals_line(store):
    @cache(lifetime="flow")
    @task
    def step(i: int) -> bytes:
        return bytes([i]) * 100

    @flow(name="reports-crashed", **cache_hooks())
    def run() -> None:
        step(1)
        step(2)
        raise Boom("the process is going down")

    with pytest.raises(Boom):
        run()
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        (flow_run,) = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["reports-crashed"])),
            sort=FlowRunSort.START_TIME_DESC, limit=1)
    assert flow_run.state.is_crashed(), flow_run.state
    totals = log_matching(flow_run.id, "flowcache:", "2 misses", "purged 2 intermediates")
    assert totals is not None, [r.message for r in run_logs(flow_run.id)]
    assert list(store.scan()) == []  # and the purge happened


def test_the_artifact_is_keyed_by_flow_and_reads_like_a_person_wrote_it(store):
    @cache(keep=True)
    @task
    def blob(i: int) -> bytes:
        return bytes([i]) * 300_000

    @flow(name="Reports_Artifact Flow", **cache_hooks())
    def run() -> int:
        return sum(len(blob(i)) for i in range(2))

    state = run(return_state=True)
    artifact = stats_artifact(state.state_details.flow_run_id)
    assert artifact.key == "flowcache-stats-reports-artifact-flow"
    rows = {row["task"]: row for row in table_rows(artifact)}
    written = sum(h.size for _, h in store.headers())
    assert rows["TOTAL"]["written"] == format_size(written)
    assert rows["blob"]["misses"] == 2


def test_a_ledger_key_in_a_warning_is_not_drawn_as_an_emoji(store):
    """Rich (Prefect's console) turns ':ledger:' into an emoji; the forwarded text must not."""
    from prefect.logging.handlers import PrefectConsoleHandler

    @flow(name="reports-emoji")
    def run() -> None:
        logging.getLogger("flowcache.accounts.ledger").warning(
            "the ledger (%s) cannot record events", "redis stream flowcache:ledger:{alice}")

    state = run(return_state=True)
    record = log_matching(state.state_details.flow_run_id, "cannot record events")
    assert record is not None
    out = io.StringIO()
    console = PrefectConsoleHandler(stream=out)
    console.emit(logging.LogRecord("prefect.flow_runs", logging.WARNING, __file__, 1,
                                   record.message, None, None))
    shown = out.getvalue()
    assert "ledger:{alice}" in shown, shown
    assert "\N{LEDGER}" not in shown


def test_byte_hours_never_read_as_nothing_when_something_was_held():
    from prefect_cache.reports import byte_hours

    assert byte_hours(0) == "0 B x h"
    assert byte_hours(0.2) == "< 1 B x h"  # held briefly: not "0 B x h"
    assert byte_hours(5.3e6) == "5.1 MiB x h"
