"""Batch planning: the vectorised path agrees with the one-job planner, and capacity holds."""

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowcache.carbon.capacity import CapacityLedger
from flowcache.carbon.constraints import Constraint, Ranking
from flowcache.carbon.decision import Job
from flowcache.carbon.planner import Planner
from flowcache.carbon.series import IntensitySeries
from tests.carbon.fakes import hourly

T0 = 1_654_041_600.0
H = 3600.0


def load(decisions, slot=H):
    counts = Counter()
    for d in decisions:
        if d.planned:
            for s in range(int(d.start // slot), int(np.ceil(d.end / slot - 1e-9))):
                counts[(d.region, s)] += 1
    return counts


def test_capacity_spreads_deferred_work_over_the_cheap_hours():
    forecasts = {"a": hourly([9, 1, 2, 3, 9, 9])}
    jobs = [Job(duration=H, earliest=T0, home="a", energy_kwh=1, max_delay=4 * H, name=str(i))
            for i in range(5)]
    plans = Planner(forecasts).plan_many(jobs, capacity=2)
    starts = sorted((d.start - T0) / H for d in plans)
    assert starts == [1, 1, 2, 2, 3]
    assert max(load(plans).values()) == 2
    unlimited = Planner(forecasts).plan_many(jobs)
    assert {d.start for d in unlimited} == {T0 + H}


def test_when_capacity_runs_out_jobs_run_now_at_home_with_a_reason():
    forecasts = {"a": hourly([9, 1, 9])}
    jobs = [Job(duration=H, earliest=T0, home="a", energy_kwh=1, max_delay=H) for _ in range(3)]
    plans = Planner(forecasts).plan_many(jobs, capacity=1)
    assert sorted(d.start for d in plans) == [T0, T0, T0 + H]
    fallbacks = [d for d in plans if not d.planned]
    assert len(fallbacks) == 1
    assert "no capacity left" in fallbacks[0].reason


def test_a_kept_ledger_respects_earlier_reservations():
    ledger = CapacityLedger({"a": 1})
    forecasts = {"a": hourly([9, 1, 2])}
    first = Planner(forecasts).plan_many([Job(duration=H, earliest=T0, home="a", energy_kwh=1,
                                              max_delay=2 * H)], ledger=ledger)
    second = Planner(forecasts).plan_many([Job(duration=H, earliest=T0, home="a", energy_kwh=1,
                                               max_delay=2 * H)], ledger=ledger)
    assert first[0].start == T0 + H
    assert second[0].start == T0 + 2 * H


def test_ten_thousand_jobs_five_regions_five_minute_data():
    rng = np.random.default_rng(7)
    regions = [f"r{i}" for i in range(5)]
    forecasts = {r: IntensitySeries(T0, 300.0, rng.uniform(100, 500, 576) + 80 * np.sin(
        np.arange(576) / 40 + i), region=r) for i, r in enumerate(regions)}
    jobs = [Job(duration=float(rng.choice([1800, 3600, 5400, 2700])),
                earliest=T0 + float(rng.integers(0, 144)) * 300, home=regions[i % 5],
                power_w=200.0, max_delay=float(rng.choice([4, 8, 12])) * H,
                regions=tuple(regions), data_gb=float(rng.choice([0, 5])), name=str(i))
            for i in range(10_000)]
    planner = Planner(forecasts)
    plans = planner.plan_many(jobs)
    assert len(plans) == 10_000
    assert all(d.planned for d in plans)
    sample = rng.choice(10_000, 150, replace=False)
    for i in sample:
        ref = planner.plan(jobs[i])
        assert (plans[i].region, plans[i].start) == (ref.region, pytest.approx(ref.start))
        assert plans[i].expected_g == pytest.approx(ref.expected_g)
    assert sum(d.expected_g for d in plans) < sum(d.now_home_g for d in plans)
    capped = planner.plan_many(jobs, capacity=80)
    assert max(load(capped).values()) <= 80


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.lists(st.integers(0, 20), min_size=6, max_size=6), min_size=1,
                       max_size=3),
       specs=st.lists(st.tuples(st.sampled_from([0.5, 1.0, 1.5, 2.0]), st.integers(0, 6),
                                st.integers(0, 4), st.integers(0, 2)), min_size=1, max_size=6),
       soft=st.booleans())
def test_vectorised_path_equals_the_reference_planner(values, specs, soft):
    forecasts = {f"r{i}": hourly([float(x) for x in v]) for i, v in enumerate(values)}
    names = list(forecasts)
    ranking = Ranking((Constraint("delay", H, hard=False),)) if soft else Ranking()
    planner = Planner(forecasts, ranking=ranking)
    jobs = [Job(duration=dur * H, earliest=T0 + off * 1800.0, home=names[home % len(names)],
                energy_kwh=1.0, max_delay=delay * H, regions=tuple(names))
            for dur, off, delay, home in specs]
    batch = planner.plan_many(jobs)
    for j, got in zip(jobs, batch, strict=True):
        ref = planner.plan(j)
        assert (got.region, got.planned) == (ref.region, ref.planned)
        assert got.start == pytest.approx(ref.start)
        if ref.planned:
            assert got.expected_g == pytest.approx(ref.expected_g)
