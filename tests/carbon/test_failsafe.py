"""Carbon awareness may save emissions; it may never fail or stall a flow.

Short history, a provider that hangs or throws, capacity that leaves only worse windows, savings
within the forecast's uncertainty: each becomes "run now at home" with the reason, at once.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from typer.testing import CliRunner

from flowcache.carbon.advisor import CarbonAdvisor
from flowcache.carbon.clocks import ManualClock
from flowcache.carbon.decision import Job
from flowcache.carbon.forecasting.intervals import bounds, conformal_offsets
from flowcache.carbon.forecasting.methods import forecast_for
from flowcache.carbon.guard import GuardedProvider
from flowcache.carbon.options import CarbonOptions
from flowcache.carbon.planner import Planner
from flowcache.carbon.plot import WINDOW_COLOUR, draw_plan
from flowcache.carbon.records import record_outcome
from flowcache.carbon.report import summary_line
from flowcache.carbon.series import IntensitySeries
from flowcache.cli.carbon import carbon_app
from flowcache.errors import ForecastNotSupported, ProviderUnavailable
from tests.carbon.fakes import Hanging

T0 = 1_654_041_600.0  # 2022-06-01T00:00Z
H = 3600.0
DAY = 86400.0


class HistoryOnly:
    """A provider with no forecasts and ``hours`` of hourly history before ``T0``."""

    name = "history-only"
    signal = "average"

    def __init__(self, values: np.ndarray) -> None:
        self.series = IntensitySeries(T0 - values.size * H, H, values, source="short")

    def forecast(self, region, start, end):
        raise ForecastNotSupported(self.name, "none")

    def history(self, region, start, end):
        return self.series.slice(max(start, self.series.start), min(end, self.series.end))


def daily(days: float, *, dip: float = 200.0, noise: float = 0.0, seed: int = 1) -> np.ndarray:
    hours = np.arange(int(days * 24))
    values = 400.0 - dip * ((hours % 24) == 3)
    return values + np.random.default_rng(seed).normal(0, noise, hours.size) if noise else values


OPTIONS = CarbonOptions(max_delay=12 * H, duration=H, power_w=1000.0)


# -- short history ----------------------------------------------------------------------------
@pytest.mark.parametrize("hours", [1, 24, 7 * 24])
def test_a_short_history_falls_back_to_a_simpler_forecast(hours):
    provider = HistoryOnly(daily(hours / 24))
    series = forecast_for(provider, "x", T0, 48 * H)  # the ensemble wants 28 days
    assert series.covers(T0, T0 + 48 * H)
    assert np.isfinite(series.values).all()
    assert series.meta["method"] == "mean7"
    assert "ensemble needs 28 days" in series.meta["fallback"]


@pytest.mark.parametrize("hours", [1, 24, 7 * 24])
def test_a_short_history_never_fails_a_decision(hours):
    advisor = CarbonAdvisor(HistoryOnly(daily(hours / 24)), home="x", clock=ManualClock(T0))
    placement = advisor.place(OPTIONS, "job")
    assert placement.decision.source.endswith("mean7") or not placement.decision.planned
    assert placement.start >= T0


def test_the_forecast_command_on_the_first_day_of_the_shipped_data():
    """It crashed with IndexError: the shipped files start on 2022-01-01."""
    result = CliRunner().invoke(carbon_app, ["forecast", "DE", "--at", "2022-01-02T00:00Z"])
    assert result.exit_code == 0, result.output
    assert "made by mean7 from 1.0 days of history" in result.output


def test_any_error_while_deciding_runs_now_at_home_with_the_reason():
    class Broken(HistoryOnly):
        def history(self, region, start, end):
            raise IndexError("index 55 is out of bounds")

    advisor = CarbonAdvisor(Broken(daily(30)), home="x", clock=ManualClock(T0))
    placement = advisor.place(OPTIONS, "job")
    assert not placement.decision.planned
    assert placement.start == T0
    assert "index 55" in placement.decision.reason


# -- a provider that hangs ---------------------------------------------------------------------
def test_a_hanging_provider_costs_the_flow_its_budget_once():
    hanging = Hanging()
    advisor = CarbonAdvisor(hanging, home="x", clock=ManualClock(T0), decision_budget=0.5)
    try:
        placements = [advisor.place(OPTIONS, f"job{i}") for i in range(5)]
    finally:
        hanging.release.set()
    assert hanging.calls == 1  # the breaker: not asked again by every task
    assert all(not p.decision.planned for p in placements)
    assert "no answer within" in placements[0].decision.reason
    assert "not asked again" in placements[1].decision.reason


def test_the_budget_is_for_all_decisions_together():
    class Slow(HistoryOnly):
        calls = 0

        def history(self, region, start, end):
            Slow.calls += 1
            time.sleep(0.2)
            return super().history(region, start, end)

    guarded = GuardedProvider(Slow(daily(30)), budget=0.3, retry_after=0.0)
    refusals = []
    for _ in range(10):
        try:
            guarded.history("x", T0 - DAY, T0)
        except ProviderUnavailable as exc:
            refusals.append(str(exc))
    assert refusals
    assert all("budget" in r or "no answer" in r for r in refusals)
    assert Slow.calls <= 2  # 0.3 s of budget holds at most two 0.2 s calls
    assert guarded.remaining == 0.0
    guarded.renew(60.0)  # the flow-end accounting gets its own
    assert guarded.history("x", T0 - DAY, T0).region in ("", "x")


# -- never a window worse than running now -------------------------------------------------------
def test_capacity_never_pushes_work_into_a_window_worse_than_now():
    values = np.r_[[400.0], [410.0] * 2, [100.0], [410.0] * 44]
    forecast = IntensitySeries(T0, H, values, kind="forecast")

    class Native(HistoryOnly):
        def forecast(self, region, start, end):
            return forecast.slice(start, end)

    advisor = CarbonAdvisor(Native(daily(1)), home="x", clock=ManualClock(T0), capacity=1)
    first, second, third = (advisor.place(OPTIONS, f"job{i}") for i in range(3))
    assert first.start == T0 + 3 * H  # the green hour
    assert second.start == T0  # now is next best
    assert third.start == T0  # the rest are worse than now: it runs now
    assert "not expected to beat running now" in third.decision.reason


# -- honest uncertainty ------------------------------------------------------------------------
def test_conformal_quantiles_cover_new_errors_as_promised():
    rng = np.random.default_rng(7)
    past = rng.normal(0, 10, (500, 3))
    offsets = conformal_offsets(past)
    fresh = rng.normal(0, 10, (20000, 3))
    low, high = offsets[1], offsets[7]  # the 5 % and 95 % levels: a 90 % interval
    covered = ((fresh >= low) & (fresh <= high)).mean(axis=0)
    assert np.all((covered > 0.87) & (covered < 0.93))
    assert np.isnan(conformal_offsets(past[:10])).all()  # too few errors: unknown, not zero


def test_a_forecast_carries_its_interval_and_it_widens_with_noise():
    calm = forecast_for(HistoryOnly(daily(40, noise=5.0)), "x", T0, 24 * H, using="mean7")
    noisy = forecast_for(HistoryOnly(daily(40, noise=60.0)), "x", T0, 24 * H, using="mean7")
    (lo_calm, hi_calm), (lo_noisy, hi_noisy) = bounds(calm), bounds(noisy)
    assert np.all(lo_calm <= calm.values)
    assert np.all(calm.values <= hi_calm)
    assert np.median(hi_noisy - lo_noisy) > 4 * np.median(hi_calm - lo_calm)


@pytest.mark.parametrize(("dip", "risk_aware", "defers"), [
    (15.0, True, False),   # a saving inside the noise: not worth the risk
    (15.0, False, True),   # the same, risk ignored: deferred
    (250.0, True, True),   # a saving far beyond the noise: deferred
])
def test_risk_aware_deferral(dip, risk_aware, defers):
    provider = HistoryOnly(daily(40, dip=dip, noise=25.0))
    advisor = CarbonAdvisor(provider, home="x", clock=ManualClock(T0), using="mean7",
                            risk_aware=risk_aware)
    decision = advisor.place(OPTIONS, "job").decision
    assert (decision.start > T0) == defers, decision.reason
    assert 0.0 <= decision.notes["chance_worse"] <= 1.0
    if risk_aware and not defers:
        assert "within the forecast's uncertainty" in decision.reason


# -- unknown is unknown -------------------------------------------------------------------------
def test_unknown_emissions_print_as_unknown():
    forecast = IntensitySeries(T0, H, np.full(4, 300.0), kind="forecast")
    decision = Planner({"x": forecast}, clock=lambda: T0).plan(
        Job(duration=H, earliest=T0, home="x", power_w=1000.0, name="job"))
    record = record_outcome(decision, submitted=T0, actual_start=T0, actual_end=T0 + H,
                            actual_region="x", history={})
    line = summary_line([record])
    assert "emissions unknown" in line
    assert "0.0 g" not in line


# -- the plot -----------------------------------------------------------------------------------
def test_the_plot_reads_in_utc_from_the_planning_time_with_its_window_and_band():
    pytest.importorskip("matplotlib")
    import matplotlib.dates as mdates

    at = T0 + 18 * H
    forecasts = {r: forecast_for(HistoryOnly(daily(40, noise=20.0)), r, at, 12 * H,
                                 using="mean7") for r in ("DE", "FR")}
    decision = Planner(forecasts, clock=lambda: at).plan(
        Job(duration=2 * H, earliest=at, home="DE", power_w=100.0, max_delay=8 * H,
            regions=("FR",), name="cli"))
    assert decision.planned_at == at  # from --at, not the wall clock
    figure = draw_plan(forecasts, decision)
    axis = figure.axes[0]
    left, right = (mdates.num2date(x).timestamp() for x in axis.get_xlim())
    assert left <= at < at + 12 * H <= right + 1
    lines = [line for line in axis.get_lines() if line.get_label() in forecasts]
    assert max(mdates.num2date(x).timestamp() for x in lines[0].get_xdata(orig=False)) \
        == pytest.approx(forecasts["DE"].end)  # the last slot drawn
    window = [p for p in axis.patches if p.get_label().startswith("chosen window")]
    assert window[0].get_label() == f"chosen window: {decision.region}"
    assert all(line.get_color() != WINDOW_COLOUR for line in lines)
    assert any("90 % interval" in c.get_label() for c in axis.collections)
    assert axis.get_xlabel() == "time (UTC)"
