"""GSF Carbon Aware SDK WebAPI against recorded-shape responses.

Shapes relied on: ``GET /emissions/bylocations?location=..`` -> ``[{"location", "time", "rating",
"duration": "01:00:00"}]`` (204 when there is no data); ``GET /emissions/forecasts/current`` ->
``[{"requestedAt", "generatedAt", "location", "dataStartAt", "dataEndAt", "windowSize",
"optimalDataPoints": [...], "forecastData": [{"location", "timestamp", "duration", "value"}]}]``.
"""

import httpx
import numpy as np
import pytest

from flowcache.carbon.providers.carbonaware import CarbonAwareSDK
from flowcache.carbon.timestamps import to_epoch
from flowcache.errors import (
    MalformedResponse,
    ProviderAuthError,
    ProviderUnavailable,
    RegionNotFound,
)
from tests.carbon.fakes import raw, timeout

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


def test_forecast_parses_forecast_data_with_minute_durations(api, http_options):
    api.on("/emissions/forecasts/current", forecast_body([532.0, 448.4, None, 500.0]))
    series = provider(http_options).forecast("azure:northeurope", NOW, NOW + 1200)
    params = api.requests[0].url.params
    assert params.get_list("location") == ["northeurope"]
    assert params["dataStartAt"] == "2022-07-19T14:00:00Z"
    assert series.resolution == 300
    assert series.signal == "marginal"
    assert series.values[:2].tolist() == [532.0, 448.4]
    assert np.isnan(series.values[2])
    assert series.issued_at == to_epoch("2022-07-19T13:35Z")


def test_bylocations_history_with_timespan_durations_and_gaps(api, http_options):
    api.on("/emissions/bylocations", [
        {"location": "eastus", "time": "2022-07-19T10:00:00+00:00", "rating": 70,
         "duration": "01:00:00"},
        {"location": "eastus", "time": "2022-07-19T11:00:00+00:00", "rating": 64.5,
         "duration": "01:00:00"},
        {"location": "eastus", "time": "2022-07-19T13:00:00+00:00", "rating": 60,
         "duration": "01:00:00"}])
    series = provider(http_options).history("eastus", NOW - 4 * 3600, NOW)
    assert series.resolution == 3600
    assert series.values[[0, 1, 3]].tolist() == [70, 64.5, 60]
    assert np.isnan(series.values[2])


def test_no_content_is_region_not_found(api, http_options):
    api.on("/emissions/bylocations", httpx.Response(204))
    with pytest.raises(RegionNotFound, match="204"):
        provider(http_options).history("eastus", NOW - 3600, NOW)


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
