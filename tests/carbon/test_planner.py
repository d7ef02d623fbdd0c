"""The planner on hand-computed cases: windows, ties, deadlines, constraints, priorities."""

import numpy as np
import pytest

from flowcache.carbon.constraints import Constraint, Ranking
from flowcache.carbon.decision import Decision, Job
from flowcache.carbon.planner import Planner, RegionPrice, plan_with_provider
from flowcache.carbon.windows import candidate_starts, cheapest_slots
from flowcache.errors import InvalidJob, ProviderUnavailable
from tests.carbon.fakes import hourly

T0 = 1_654_041_600.0  # 2022-06-01T00:00Z
H = 3600.0


def job(**kw):
    base = {"duration": H, "earliest": T0, "home": "a", "energy_kwh": 1.0}
    return Job(**{**base, **kw})


def test_one_hour_job_picks_the_cheapest_hour_within_max_delay():
    plan = Planner({"a": hourly([5, 4, 1, 3, 0])}).plan(job(max_delay=3 * H))
    assert plan.start == T0 + 2 * H  # hour 4 (value 0) is beyond the 3 h delay
    assert plan.expected_g == pytest.approx(1.0)
    assert plan.now_home_g == pytest.approx(5.0)
    assert plan.action == "defer"
    assert "wait 2.0 h" in plan.reason
    assert "-80.0 %" in plan.reason


def test_ties_go_to_the_earliest_start():
    plan = Planner({"a": hourly([3, 1, 2, 1, 1])}).plan(job(max_delay=4 * H))
    assert plan.start == T0 + H


def test_partial_slots_are_time_weighted_and_the_optimum_is_off_grid():
    # 90-minute job over [10, 0, 10, 10]: best window starts at 00:30 -> 30 min of 10 + 60 of 0
    series = hourly([10, 0, 10, 10])
    plan = Planner({"a": series}).plan(job(duration=1.5 * H, max_delay=2.5 * H))
    assert plan.start == pytest.approx(T0 + 0.5 * H)
    assert plan.expected_intensity == pytest.approx(10 * 0.5 / 1.5)
    starts = candidate_starts(series, 1.5 * H, T0, T0 + 2.5 * H)
    assert T0 + 0.5 * H in starts


def test_windows_that_do_not_fit_in_the_data_are_not_candidates():
    # the cheap last hour would need data beyond the series for a 2 h job
    plan = Planner({"a": hourly([5, 5, 4, 0])}).plan(job(duration=2 * H, max_delay=5 * H))
    assert plan.start == T0 + 2 * H
    assert plan.end == T0 + 4 * H


def test_a_deadline_that_cannot_be_met_runs_now_at_home_with_a_reason():
    plan = Planner({"a": hourly([5, 1])}).plan(job(duration=2 * H, deadline=T0 + H))
    assert plan.region == "a"
    assert plan.start == T0
    assert not plan.planned
    assert plan.fallback
    assert "deadline cannot be met" in plan.reason


def test_deadline_bounds_the_latest_start():
    plan = Planner({"a": hourly([5, 4, 3, 0])}).plan(job(deadline=T0 + 3 * H, max_delay=10 * H))
    assert plan.start == T0 + 2 * H


def test_no_forecast_covering_the_job_runs_now():
    plan = Planner({"a": hourly([1, 2], start=T0 + 10 * H)}).plan(job(max_delay=H))
    assert not plan.planned
    assert "no forecast covers" in plan.reason


def test_gaps_exclude_windows():
    plan = Planner({"a": hourly([5, None, 4, 6])}).plan(job(duration=2 * H, max_delay=2 * H))
    assert plan.start == T0 + 2 * H


def test_relocation_with_transfer_emissions_at_both_ends():
    forecasts = {"a": hourly([100, 100]), "b": hourly([10, 10])}
    j = job(regions=("b",), data_gb=100.0, max_delay=0.0)
    plan = Planner(forecasts, kwh_per_gb=0.01).plan(j)
    assert plan.region == "b"
    assert plan.action == "relocate"
    assert plan.transfer_g == pytest.approx(100 * 0.01 * (100 + 10) / 2)
    assert plan.expected_g == pytest.approx(10 + 55)
    assert plan.best_now_region == "b"


def test_hard_and_soft_delay_limits_and_relative_carbon():
    forecasts = {"a": hourly([10, 9, 8, 1])}
    hard = Planner(forecasts, ranking=Ranking((Constraint("delay", 2 * H),)))
    assert hard.plan(job(max_delay=3 * H)).start == T0 + 2 * H
    soft = Planner(forecasts, ranking=Ranking((Constraint("delay", H, hard=False),)))
    plan = soft.plan(job(max_delay=3 * H))
    assert plan.start == T0 + H  # the best option within the soft limit beats a cheaper breach
    rel = Planner(forecasts, ranking=Ranking((Constraint("carbon", -0.5, relative=True),)))
    assert rel.plan(job(max_delay=2 * H)).fallback  # nothing saves 50 % within 2 h
    assert "hard constraints" in rel.plan(job(max_delay=2 * H)).reason
    relative_delay = Planner(forecasts, ranking=Ranking((Constraint("delay", 1.0, relative=True),)))
    assert relative_delay.plan(job(max_delay=3 * H)).start == T0 + H  # delay <= 1 x duration


def test_cost_constraints_and_priority_order():
    forecasts = {"a": hourly([10, 10]), "b": hourly([5, 5]), "c": hourly([6, 6])}
    prices = {"a": RegionPrice(1.0), "b": RegionPrice(3.0), "c": RegionPrice(1.5)}
    j = job(regions=("b", "c"))
    assert Planner(forecasts, prices=prices).plan(j).region == "b"
    capped = Planner(forecasts, prices=prices,
                     ranking=Ranking((Constraint("cost", 0.6, relative=True),)))
    assert capped.plan(j).region == "c"  # b costs +200 %, c +50 %
    cost_first = Planner(forecasts, prices=prices, ranking=Ranking(priority=("cost", "carbon")))
    assert cost_first.plan(j).region == "a"
    tolerant = Planner(forecasts, prices=prices, ranking=Ranking(
        priority=("carbon", "cost"), tolerance={"carbon": 2.0}))
    assert tolerant.plan(j).region == "c"  # 5 g and 6 g are a tie at 2 g tolerance: cost decides


def test_interruptible_jobs_take_the_cheapest_slots_before_the_deadline():
    plan = Planner({"a": hourly([5, 1, 7, 2, 9, 1.5])}).plan(
        job(duration=2.5 * H, deadline=T0 + 6 * H, interruptible=True))
    # cheapest first: hour 1 (1), hour 5 (1.5), then half of hour 3 (2)
    assert plan.intervals == ((T0 + H, T0 + 2 * H), (T0 + 3 * H, T0 + 3.5 * H),
                              (T0 + 5 * H, T0 + 6 * H))
    assert plan.expected_intensity == pytest.approx((1 + 1.5 + 0.5 * 2) / 2.5)
    assert "3 pieces" in plan.reason
    assert cheapest_slots(hourly([1, 1]), 3 * H, T0, T0 + 2 * H) == ([], pytest.approx(np.nan,
                                                                                        nan_ok=True))


def test_invalid_jobs_are_rejected_with_the_way_out():
    with pytest.raises(InvalidJob, match="power_w or energy_kwh"):
        Job(duration=H, earliest=T0, home="a")
    with pytest.raises(InvalidJob, match="positive"):
        job(duration=0)
    built = Job.build(duration="90m", earliest="2022-06-01T00:00Z", home="a", max_delay="2h",
                      power_w=100)
    assert built.duration == 5400
    assert built.latest_start == T0 + 2 * H
    assert built.energy == pytest.approx(0.15)


def test_decisions_round_trip_through_json_dicts():
    plan = Planner({"a": hourly([2, 1])}).plan(job(max_delay=H, name="t"))
    again = Decision.from_dict(plan.to_dict())
    assert again == plan
    assert plan.to_dict()["action"] == "defer"


class Broken:
    name = "broken"
    signal = "average"

    def forecast(self, region, start, end):
        raise ProviderUnavailable("broken", "down")

    history = forecast


def test_provider_failure_at_plan_time_runs_now_at_home():
    plan = plan_with_provider(job(max_delay=4 * H), Broken())
    assert plan.region == "a"
    assert plan.start == T0
    assert plan.fallback
    assert "carbon data unavailable" in plan.reason
    assert "down" in plan.reason
