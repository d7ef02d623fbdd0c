"""Forecasting: no method ever sees data after its origin; provider forecasts come first."""

import numpy as np
import pytest

from flowcache.carbon.forecasting.blend import Blend, daytype_profile, weekend
from flowcache.carbon.forecasting.ensemble import ALL_MEMBERS, Ensemble, decision_scores
from flowcache.carbon.forecasting.holtwinters import HoltWinters
from flowcache.carbon.forecasting.methods import forecast_for, forecast_from_history, method
from flowcache.carbon.forecasting.seasonal import (
    HourOfDayMean,
    PerfectForesight,
    clip_spikes,
    predict,
)
from flowcache.carbon.providers.emcsv import ElectricityMapsCSV
from flowcache.carbon.series import IntensitySeries
from flowcache.errors import ConfigError, ForecastNotSupported, NoIntensityData
from tests.carbon.fakes import hourly

T0 = 1_654_041_600.0
H = 3600.0


START = 1_640_995_200.0  # 2022-01-01T00:00Z, a Saturday: the start of the shipped data


@pytest.fixture(scope="module")
def de():
    return ElectricityMapsCSV().load("DE").values[: 24 * 60].copy()


@pytest.mark.parametrize("forecaster", [
    HourOfDayMean(), HoltWinters(), Blend(), Ensemble(),
    Ensemble(members=ALL_MEMBERS, weighting="equal"),
    Ensemble(members=ALL_MEMBERS, window_days=7, eta=5.0),
    Ensemble(spike_mads=2.0)],
    ids=["mean7", "holtwinters", "blend", "ensemble", "ensemble-all-equal", "ensemble-all-7d",
         "ensemble-clip-hard"])
def test_forecasts_never_see_data_after_the_origin(de, forecaster):
    origins = np.array([24 * 20 + 5, 24 * 35 + 13, 24 * 50])
    full = predict(forecaster, de, origins, 25, 24, start=START)
    for i, origin in enumerate(origins):
        poisoned = de.copy()
        poisoned[origin:] = 1e6  # anything after the origin must not matter
        again = predict(forecaster, poisoned, origins[i:i + 1], 25, 24, start=START)[0]
        np.testing.assert_allclose(again, full[i], rtol=1e-9)
    assert not forecaster.sees_future


def test_the_calendar_tells_weekends_apart():
    days = np.arange(7) * 24  # hour 0 of 2022-01-01 (Sat) .. 2022-01-07 (Fri)
    assert weekend(START, 3600.0, days).tolist() == [True, True] + [False] * 5


def test_the_day_type_profile_does_not_carry_weekdays_into_the_weekend():
    day = np.arange(24 * 35) // 24
    values = np.where(weekend(START, 3600.0, np.arange(day.size)), 50.0, 100.0)
    friday_20h = 24 * 27 + 20  # 2022-01-28 was a Friday
    got = daytype_profile(values, np.array([friday_20h]), 8, 24, start=START)[0]
    np.testing.assert_allclose(got, [100.0] * 4 + [50.0] * 4)
    plain = Blend().parts(values, np.array([friday_20h]), 8, 24)["profile"][0]
    assert plain[4:].min() > 60.0  # the plain profile mixes the two kinds of day


def test_recent_weighting_follows_the_member_that_decided_well():
    rng = np.random.default_rng(3)
    v = 100 + 30 * np.sin(np.arange(24 * 40) * 2 * np.pi / 24) + rng.normal(0, 2, 24 * 40)
    scored = np.arange(24 * 8, 24 * 39)
    truth = v[scored[:, None] + np.arange(9)[None, :]]
    good, bad = truth + rng.normal(0, 1, truth.shape), truth[:, ::-1].copy()
    scores = decision_scores(v, scored, [good, bad], scored[-5:], 8, 7 * 24, 24)
    assert (scores[:, 0] > 0.8).all()
    assert (scores[:, 1] < 0).all()
    model = Ensemble(members=("profile", "mean7"), eta=20.0)
    combined = model.combine(v, scored, {"profile": good, "mean7": bad}, scored[-5:], 24)
    np.testing.assert_allclose(combined, good[-5:], atol=0.05 * np.abs(bad - good).max())
    equal = Ensemble(members=("profile", "mean7"), weighting="equal")
    np.testing.assert_allclose(equal.combine(v, scored, {"profile": good, "mean7": bad},
                                             scored[-5:], 24), (good[-5:] + bad[-5:]) / 2)


def daily_cycle(days: int, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hours = np.arange(24 * days)
    return 100 + 30 * np.sin(hours * 2 * np.pi / 24) + rng.normal(0, 3, hours.size)


def test_clipping_glitches_uses_only_the_past_and_spares_ordinary_data(de):
    assert np.array_equal(clip_spikes(de, 24), de)  # two months of real DE data: untouched
    glitched = de.copy()
    glitched[24 * 30 + 7] = 20 * de.max()
    clipped = clip_spikes(glitched, 24)
    assert np.flatnonzero(clipped != glitched).tolist() == [24 * 30 + 7]
    assert clipped[24 * 30 + 7] < 3 * de.max()  # DE swings widely: a wide bound
    for i in (24 * 30 + 7, 24 * 45):  # a value's bound comes from the values before it
        assert clip_spikes(glitched[: i + 1], 24)[i] == clipped[i]
    flat = 28.0 + 0.1 * (np.arange(24 * 20) % 3)  # no spread: the floor keeps it as it is
    assert np.array_equal(clip_spikes(flat, 24), flat)
    gappy = flat.copy()
    gappy[100:110] = np.nan
    gappy[300] = 1e4
    out = clip_spikes(gappy, 24)
    assert np.isnan(out[100:110]).all()
    assert out[300] < 30.0


def test_a_glitch_in_the_history_does_not_become_tomorrows_forecast():
    clean = daily_cycle(60)
    glitched = clean.copy()
    glitched[24 * 50 + 10: 24 * 50 + 13] = 1000.0  # three bad hours from the provider
    origin = np.array([24 * 51 + 2])
    moved = {}
    for mads in (6.0, None):
        model = Ensemble(spike_mads=mads)
        base = predict(model, clean, origin, 24, 24, start=START)[0]
        moved[mads] = np.abs(predict(model, glitched, origin, 24, 24, start=START)[0] - base)
    assert moved[None].max() > 50.0  # unclipped, the members expect the glitch again
    assert moved[6.0].max() < moved[None].max() / 4
    with pytest.raises(ValueError, match="spike_mads"):
        Ensemble(spike_mads=0.0)


def test_the_ensemble_is_the_default_and_asks_for_the_history_it_needs():
    assert isinstance(method("default"), Ensemble)
    assert method("ensemble").name == "ensemble"
    stub = Forecasting(None)
    fc = forecast_for(stub, "x", T0, 4 * H)
    assert fc.meta["method"] == "ensemble"
    assert stub.history_starts == [T0 - Ensemble().history_days * 86400]
    with pytest.raises(ValueError, match="members"):
        Ensemble(members=("nope",))


def test_the_oracle_is_marked_and_refused_outside_evaluation(de):
    oracle = PerfectForesight()
    assert oracle.sees_future
    np.testing.assert_array_equal(oracle.predict_block(de, np.array([10]), 3, 24)[0], de[10:13])
    with pytest.raises(ConfigError, match="evaluation only"):
        method("oracle")


def test_hour_of_day_mean_is_the_mean_of_the_same_hour_over_seven_days():
    values = np.tile(np.arange(24.0), 8)
    values[24 * 7 + 3] = 99.0
    got = HourOfDayMean().predict_block(values, np.array([24 * 8]), 24, 24)[0]
    expected = np.arange(24.0)
    expected[3] = (6 * 3 + 99) / 7
    np.testing.assert_allclose(got, expected)


def test_holt_winters_recovers_a_clean_daily_cycle():
    t = np.arange(24 * 9)
    values = 300 + 50 * np.sin(2 * np.pi * t / 24)
    got = HoltWinters().predict_block(values, np.array([24 * 8]), 24, 24)[0]
    np.testing.assert_allclose(got, values[24 * 8:24 * 9], atol=5.0)


def test_forecast_from_history_handles_lag_and_sub_hourly_data():
    values = np.tile(np.r_[np.full(12, 400.0), np.full(12, 100.0)], 10)
    history = hourly(list(values), region="x")
    start = history.end + 2.5 * H  # the provider's data lags 2.5 hours behind "now"
    fc = forecast_from_history(history, start, 6 * H, "mean7")
    assert fc.kind == "forecast"
    assert fc.issued_at == start
    assert fc.start <= start
    assert fc.covers(start, start + 6 * H)
    assert fc.estimated.all()
    fine = IntensitySeries(history.start, 300.0, np.repeat(values, 12), region="x")
    fc2 = forecast_from_history(fine, history.end, 3 * H, "mean7")
    assert fc2.resolution == H
    np.testing.assert_allclose(fc2.values, values[:3])
    with pytest.raises(NoIntensityData):
        forecast_from_history(history, history.start, H)


class Forecasting:
    name = "stub"
    signal = "average"

    def __init__(self, native):
        self.native = native
        self.history_calls = 0
        self.history_starts = []

    def forecast(self, region, start, end):
        if self.native is None:
            raise ForecastNotSupported("stub", "none")
        return self.native

    def history(self, region, start, end):
        self.history_calls += 1
        self.history_starts.append(start)
        return hourly([100.0, 200.0] * 12 * 30, start=T0 - 30 * 86400)  # enough for any method


def test_provider_forecast_is_used_when_it_covers_the_horizon():
    native = hourly([1.0] * 6, kind="forecast")
    stub = Forecasting(native)
    assert forecast_for(stub, "x", T0, 6 * H) is native
    assert stub.history_calls == 0


def test_without_a_provider_forecast_history_is_used_and_short_ones_are_extended():
    stub = Forecasting(None)
    fc = forecast_for(stub, "x", T0, 4 * H, using="mean7")
    assert fc.values.tolist() == [100.0, 200.0, 100.0, 200.0]
    short = Forecasting(hourly([7.0, 7.0], kind="forecast"))
    extended = forecast_for(short, "x", T0, 4 * H, using="mean7")
    assert extended.values.tolist() == [7.0, 7.0, 100.0, 200.0]
