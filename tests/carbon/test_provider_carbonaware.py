"""GSF Carbon Aware SDK WebAPI: its contract replayed (tests/carbon/sdk_server.py), plus
recorded-shape responses for the HTTP error policy.

Shapes relied on: ``GET /emissions/bylocations?location=..`` -> ``[{"location", "time", "rating",
"duration": "01:00:00"}]`` (204 when there is no data); ``GET /emissions/forecasts/current`` ->
``[{"requestedAt", "generatedAt", "location", "dataStartAt", "dataEndAt", "windowSize",
"optimalDataPoints": [...], "forecastData": [{"location", "timestamp", "duration", "value"}]}]``.
"""

import httpx
import numpy as np
import pytest

from flowcache.carbon.advisor import CarbonAdvisor
from flowcache.carbon.clocks import ManualClock
from flowcache.carbon.forecasting.methods import forecast_for
from flowcache.carbon.options import CarbonOptions
from flowcache.carbon.providers.carbonaware import CarbonAwareSDK
from flowcache.carbon.timestamps import to_epoch
from flowcache.errors import (
    ForecastNotSupported,
    MalformedResponse,
    NoIntensityData,
    ProviderAuthError,
    ProviderUnavailable,
    RegionNotFound,
)
from tests.carbon.fakes import raw, timeout
from tests.carbon.sdk_server import SDKReplay, sdk_test_forecast

NOW = to_epoch("2022-07-19T14:00Z")


def provider(http_options):
    return CarbonAwareSDK(base_url="http://sdk.local", clock=lambda: NOW, **http_options)


def forecast_body(values, start="2022-07-19T14:00:00+00:00", step=5):
    t0 = to_epoch(start)
    points = [{"location": "IE", "timestamp": f"{np.datetime64(int(t0 + step * 60 * i), 's')}"
               "+00:00", "duration": step, "value": v} for i, v in enumerate(values)]
    return [{"requestedAt": "2022-07-19T13:37:49+00:00",
             "generatedAt": "2022-07-19T13:35:00+00:00", "location": "northeurope",
             "dataStartAt": start, "dataEndAt": "2022-07-20T04:38:00Z", "windowSize": 10,
             "optimalDataPoints": [points[0]] if points else [], "forecastData": points}]


def sdk(replay, **options):
    return CarbonAwareSDK(base_url="http://sdk.local", client=replay.client(),
                          clock=lambda: replay.now, sleep=lambda _s: None, **options)


T0 = to_epoch("2022-01-01T00:00Z")


# -- the replay is the SDK: its own tests' cases hold against it ------------------------------
@pytest.mark.parametrize(("start", "end"), [
    ("2021-12-31T00:00:00Z", "2022-01-01T00:20:00Z"),  # early startTime, valid endTime
    ("2022-01-01T00:00:00Z", "2022-01-01T00:30:00Z"),  # valid startTime, late endTime
    ("2021-12-31T00:00:00Z", None),                   # early startTime, default endTime
    (None, "2022-01-01T00:30:00Z"),                   # default startTime, late endTime
    ("2022-01-01T00:20:00Z", "2022-01-01T00:00:00Z"),  # startTime after endTime
])
def test_the_replay_refuses_what_the_sdk_refuses(start, end):
    replay = SDKReplay(regions={"westus": "CAISO_NORTH"},
                       forecasts={"westus": (T0, sdk_test_forecast())})
    params = {"location": "westus", **({"dataStartAt": start} if start else {}),
              **({"dataEndAt": end} if end else {})}
    response = replay.client().get("http://sdk.local/emissions/forecasts/current",
                                   params=params)
    assert response.status_code == 400
    assert response.json()["title"] == "ArgumentException"


def test_the_replay_filters_like_the_sdk():
    replay = SDKReplay(regions={"westus": "CAISO_NORTH"},
                       forecasts={"westus": (T0, sdk_test_forecast())})
    get = replay.client().get
    url = "http://sdk.local/emissions/forecasts/current"
    whole = get(url, params={"location": "westus"}).json()[0]["forecastData"]
    some = get(url, params={"location": "westus", "dataStartAt": "2022-01-01T00:02:00Z",
                            "dataEndAt": "2022-01-01T00:12:00Z"}).json()[0]["forecastData"]
    # GetCurrentForecastDataAsync_FiltersDate
    assert [p["value"] for p in whole] == [10, 20, 30, 40]
    assert len(some) == 3
    assert {p["location"] for p in some} == {"CAISO_NORTH"}


# -- flowcache's provider against it ----------------------------------------------------------
def test_a_forecast_is_asked_without_bounds_and_trimmed_locally():
    """Asking up to now + horizon past the SDK's forecast is its 400 "late endTime": the
    provider asks for the whole forecast and uses what it covers."""
    replay = SDKReplay(regions={"westus": "CAISO_NORTH"}, now=T0,
                       forecasts={"westus": (T0 - 60, sdk_test_forecast())})
    series = sdk(replay).forecast("azure:westus", T0, T0 + 1800)
    params = replay.requests[-1].url.params
    assert "dataStartAt" not in params
    assert "dataEndAt" not in params
    assert params.get_list("location") == ["westus"]
    assert series.resolution == 300
    assert series.values.tolist() == [10, 20, 30, 40]
    assert series.end == T0 + 1200  # what the forecast covers, not what was asked for
    assert series.issued_at == T0 - 60
    assert series.signal == "marginal"


def test_watttime_rows_carry_the_balancing_authority_and_are_kept():
    rows = [(T0 + 300 * i, 400.0 + i, 300.0) for i in range(12)]
    replay = SDKReplay(regions={"westus": "CAISO_NORTH"}, history={"westus": rows})
    series = sdk(replay).history("westus", T0, T0 + 3600)
    assert series.values.tolist() == [400.0 + i for i in range(12)]
    assert series.meta["sdk_locations"] == ["CAISO_NORTH"]


def test_electricitymaps_missing_values_are_gaps_not_minus_one():
    rows = [(T0, 200.0, 3600.0), (T0 + 3600, None, 3600.0), (T0 + 7200, 220.0, 3600.0)]
    replay = SDKReplay(source="electricitymaps", regions={"northeurope": "IE"},
                       history={"northeurope": rows})
    series = sdk(replay, signal="average").history("northeurope", T0, T0 + 3 * 3600)
    assert series.values[0] == 200.0
    assert np.isnan(series.values[1])


def test_a_lone_point_of_zero_duration_covers_no_time():
    """WattTime's "fewer than 2 data points, frequency null": duration zero. The SDK drops it
    at the window's start (204) and returns it inside the window; either way, no data."""
    replay = SDKReplay(regions={"westus": "CAISO_NORTH"},
                       history={"westus": [(T0 + 600, 300.0, 0.0)]})
    with pytest.raises(NoIntensityData, match="zero duration"):
        sdk(replay).history("westus", T0, T0 + 3600)
    with pytest.raises(NoIntensityData, match="204"):
        sdk(replay).history("westus", T0 + 600, T0 + 3600)


def test_points_off_the_grid_are_weighted_by_time_not_snapped():
    """Rows of 10 minutes every 5 (the SDK's rolling means): each slot is the time-weighted
    mean of what covers it, and no row disappears."""
    rows = [(T0, 15.0, 600.0), (T0 + 300, 25.0, 600.0), (T0 + 600, 35.0, 600.0)]
    replay = SDKReplay(regions={"westus": "CAISO_NORTH"}, history={"westus": rows})
    series = sdk(replay).history("westus", T0, T0 + 1200)
    assert series.resolution == 600
    assert series.values.tolist() == pytest.approx([(15 * 600 + 25 * 300) / 900,
                                                    (25 * 300 + 35 * 600) / 900])


def test_no_data_is_no_data_and_an_unknown_location_is_not_found():
    replay = SDKReplay(regions={"westus": "CAISO_NORTH"}, history={"westus": []})
    with pytest.raises(NoIntensityData, match="204"):
        sdk(replay).history("westus", T0, T0 + 3600)
    with pytest.raises(RegionNotFound, match="Unknown Location"):
        sdk(replay).history("azure:eastus", T0, T0 + 3600)


def test_an_sdk_without_forecasts_means_forecasting_from_history():
    hours = 35 * 24
    rows = [(T0 + 3600 * i, 300.0 + 100 * (i % 24 >= 12), 3600.0) for i in range(hours)]
    replay = SDKReplay(source="json", regions={"westus": "westus"}, history={"westus": rows},
                       now=T0 + hours * 3600)
    provider = sdk(replay)
    with pytest.raises(ForecastNotSupported, match="not configured"):
        provider.forecast("westus", replay.now, replay.now + 3600)
    made = forecast_for(provider, "westus", replay.now, 24 * 3600, history_days=34)
    assert made.kind == "forecast"
    assert made.covers(replay.now, replay.now + 24 * 3600)


def test_a_day_of_sdk_forecast_serves_a_two_day_horizon():
    """The advisor asks 48 h ahead: the SDK's 24 h forecast is used for its day and history
    forecasts the rest, so carbon-aware work is planned, not sent to run-now."""
    now = T0 + 40 * 86400
    history = [(T0 + 300 * i, 300.0 + 200 * ((i // 12) % 24 < 8), 300.0)
               for i in range(40 * 288)]
    forecast = [(now + 300 * i, 500.0 - 300 * (i >= 60), 300.0) for i in range(288)]
    replay = SDKReplay(regions={"westus": "CAISO_NORTH"}, history={"westus": history},
                       forecasts={"westus": (now - 120, forecast)}, now=now)
    advisor = CarbonAdvisor(sdk(replay), home="westus", clock=ManualClock(now))
    placement = advisor.place(CarbonOptions(max_delay=12 * 3600, duration=3600, power_w=1000.0),
                              "job")
    assert placement.decision.planned, placement.decision.reason
    assert placement.start >= now + 5 * 3600  # the forecast's cheap hours, from 05:00 on
    assert all("dataEndAt" not in r.url.params for r in replay.requests)


def test_401_429_timeout(api, http_options, sleeps):
    api.on("/emissions/forecasts/current", httpx.Response(401))
    with pytest.raises(ProviderAuthError):
        provider(http_options).forecast("eastus", NOW, NOW + 600)
    api.on("/emissions/forecasts/current", httpx.Response(429), forecast_body([1.0, 2.0]))
    assert provider(http_options).forecast("eastus", NOW, NOW + 600).values.tolist() == [1, 2]
    api.on("/emissions/forecasts/current", timeout)
    with pytest.raises(ProviderUnavailable):
        provider(http_options).forecast("eastus", NOW, NOW + 600)


@pytest.mark.parametrize("body", [
    raw("{"), {"forecastData": []}, [{"location": "x"}], [{"forecastData": [{"value": 3}]}],
    [{"forecastData": [{"timestamp": "2022-07-19T14:00Z", "value": 1, "duration": "x:y"}]}],
])
def test_malformed_payloads(api, http_options, body):
    api.on("/emissions/forecasts/current", body)
    with pytest.raises(MalformedResponse, match="carbonaware"):
        provider(http_options).forecast("eastus", NOW, NOW + 600)
