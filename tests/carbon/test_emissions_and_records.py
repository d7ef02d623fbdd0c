"""Energy, time-weighted emissions, SCI, savings, and decision records as JSON."""

import pytest

from flowcache.carbon.decision import Job
from flowcache.carbon.emissions import (
    PowerModel,
    embodied_g,
    emissions_g,
    energy_kwh,
    intervals_emissions_g,
    savings,
    sci,
)
from flowcache.carbon.planner import Planner
from flowcache.carbon.records import DecisionRecord, record_outcome, uptake
from flowcache.errors import NoIntensityData
from tests.carbon.fakes import hourly

T0 = 1_654_041_600.0
H = 3600.0


def test_power_model_defaults_follow_cloud_carbon_footprint():
    model = PowerModel(cores=4, utilisation=0.5, memory_gb=16)
    per_core = 0.74 + 0.5 * (3.5 - 0.74)
    assert model.watts == pytest.approx((4 * per_core + 16 * 0.392) * 1.135)
    assert PowerModel.for_cloud("gcp").pue == 1.1
    assert energy_kwh(7200, 500.0) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="utilisation"):
        PowerModel(utilisation=1.5)


def test_emissions_integrate_power_times_intensity_over_partial_slots():
    series = hourly([100, 300])
    # 1000 W from 00:30 to 01:30: 0.5 kWh at 100 + 0.5 kWh at 300
    assert emissions_g(series, T0 + 0.5 * H, T0 + 1.5 * H, power_w=1000) == pytest.approx(200)
    assert emissions_g(series, T0, T0 + 2 * H, energy=2.0) == pytest.approx(400)
    pieces = [(T0, T0 + 0.5 * H), (T0 + H, T0 + 1.5 * H)]
    assert intervals_emissions_g(series, pieces, energy=1.0) == pytest.approx(200)
    with pytest.raises(NoIntensityData, match="no complete data"):
        emissions_g(series, T0, T0 + 3 * H, power_w=1)
    with pytest.raises(NoIntensityData):
        emissions_g(hourly([1, None]), T0, T0 + 2 * H, power_w=1)


def test_sci_and_savings():
    assert sci(300.0, embodied_g=100.0, functional_units=4) == 100.0
    assert embodied_g(1000, 4, 4 * 365.25 * 86400 / 1000) == pytest.approx(1000)
    s = savings(actual_g=75, baseline_g=100)
    assert (s.saved_g, s.saved_pct) == (25, 25.0)


def test_record_of_what_actually_ran_with_three_counterfactuals():
    history = {"a": hourly([100, 50, 10, 10]), "b": hourly([20, 20, 20, 20])}
    job = Job(duration=H, earliest=T0, home="a", energy_kwh=1.0, max_delay=3 * H,
              regions=("b",))
    decision = Planner(history).plan(job)
    assert (decision.region, decision.start) == ("a", T0 + 2 * H)
    record = record_outcome(decision, submitted=T0, actual_start=T0 + H, actual_end=T0 + 2 * H,
                            actual_region="b", history=history)
    assert not record.followed
    assert record.realised_g == pytest.approx(20)
    assert record.now_home_g == pytest.approx(100)
    assert record.now_there_g == pytest.approx(20)
    assert record.then_home_g == pytest.approx(50)
    assert record.saving_vs("then_home") == pytest.approx(30)
    again = DecisionRecord.from_json(record.to_json())
    assert again == record
    followed = record_outcome(decision, submitted=T0, actual_start=decision.start,
                              actual_end=decision.end, actual_region="a", history=history)
    assert followed.followed
    summary = uptake([record, followed])
    assert summary["followed"] == 1
    assert summary["saved_g"] == pytest.approx(200 - 30)


def test_missing_history_leaves_counterfactuals_empty():
    decision = Planner({"a": hourly([1, 1])}).plan(Job(duration=H, earliest=T0, home="a",
                                                       power_w=1000, max_delay=H))
    record = record_outcome(decision, submitted=T0, actual_start=T0 + 5 * H,
                            actual_end=T0 + 6 * H, actual_region="a",
                            history={"a": hourly([1, 1])}, power_w=1000)
    assert record.realised_g is None
    assert record.now_home_g == pytest.approx(1.0)
    assert DecisionRecord.from_json(record.to_json()).realised_g is None
