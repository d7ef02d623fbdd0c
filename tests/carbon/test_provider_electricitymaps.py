"""Electricity Maps v3 against recorded-shape responses.

Shapes relied on (v3): ``/history`` -> ``{"zone", "history": [point]}``, ``/past-range`` ->
``{"zone", "data": [point]}``, ``/forecast`` -> ``{"zone", "forecast": [point], "updatedAt"}``,
point = ``{"zone", "carbonIntensity" (number|null), "datetime", "updatedAt", "createdAt",
"emissionFactorType", "isEstimated", "estimationMethod"}``. Token in header ``auth-token``.
"""

import httpx
import numpy as np
import pytest

from flowcache.carbon.providers.electricitymaps import ElectricityMaps
from flowcache.carbon.timestamps import to_epoch
from flowcache.errors import (
    MalformedResponse,
    ProviderAuthError,
    ProviderUnavailable,
    RegionNotFound,
)
from tests.carbon.fakes import raw, timeout

NOW = to_epoch("2022-06-01T12:00Z")


def point(when, value, estimated=False):
    return {"zone": "DE", "carbonIntensity": value, "datetime": when,
            "updatedAt": "2022-06-01T12:05:00.000Z", "createdAt": "2022-05-29T12:00:00.000Z",
            "emissionFactorType": "lifecycle", "isEstimated": estimated,
            "estimationMethod": "TIME_SLICER_AVERAGE" if estimated else None}


def provider(http_options, **kw):
    return ElectricityMaps("secret", clock=lambda: NOW, **http_options, **kw)


def test_recent_history_uses_history_endpoint_with_token_and_zone(api, http_options):
    api.on("/v3/carbon-intensity/history", {"zone": "DE", "history": [
        point("2022-06-01T09:00:00.000Z", 300), point("2022-06-01T10:00:00.000Z", 310, True),
        point("2022-06-01T11:00:00.000Z", 320)]})
    series = provider(http_options).history("aws:eu-central-1", "2022-06-01T09:00Z",
                                            "2022-06-01T12:00Z")
    request = api.requests[0]
    assert request.headers["auth-token"] == "secret"
    assert request.url.params["zone"] == "DE"
    assert request.url.params["emissionFactorType"] == "lifecycle"
    assert series.values.tolist() == [300, 310, 320]
    assert series.estimated.tolist() == [False, True, False]
    assert (series.resolution, series.signal, series.source) == (3600, "average",
                                                                 "electricitymaps")
    assert series.region == "aws:eu-central-1"


def test_null_intensity_is_a_gap_and_a_missing_hour_too(api, http_options):
    api.on("/v3/carbon-intensity/history", {"zone": "DE", "history": [
        point("2022-06-01T08:00:00.000Z", 300), point("2022-06-01T09:00:00.000Z", None),
        point("2022-06-01T11:00:00.000Z", 320)]})
    series = provider(http_options).history("DE", "2022-06-01T08:00Z", "2022-06-01T12:00Z")
    assert np.isnan(series.values[1])
    assert np.isnan(series.values[2])
    assert series.values[[0, 3]].tolist() == [300, 320]
    assert np.isnan(series.mean(series.start, series.end))


def test_long_history_is_fetched_in_ten_day_chunks_from_past_range(api, http_options):
    def reply(request):
        start = to_epoch(request.url.params["start"])
        end = to_epoch(request.url.params["end"])
        hours = np.arange(start, end, 3600)
        return httpx.Response(200, json={"zone": "FR", "data": [
            point(f"{np.datetime64(int(h), 's')}Z", 50.0) for h in hours]})

    api.on("/v3/carbon-intensity/past-range", reply)
    series = provider(http_options).history("FR", "2022-03-01", "2022-03-26")
    assert len(api.requests) == 3
    assert len(series) == 25 * 24
    assert not np.isnan(series.values).any()


def test_coordinates_are_used_when_the_map_has_no_zone(api, http_options):
    from flowcache.carbon.regions import RegionMap
    regions = RegionMap.shipped().with_overrides({"site:lab": {"lat": 48.1, "lon": 11.6}})
    api.on("/v3/carbon-intensity/forecast", {"zone": "DE", "updatedAt":
                                             "2022-06-01T11:55:00Z", "forecast": [
        point("2022-06-01T12:00:00.000Z", 200), point("2022-06-01T13:00:00.000Z", 190)]})
    series = provider(http_options, regions=regions).forecast("site:lab", NOW, NOW + 7200)
    assert api.requests[0].url.params["lat"] == "48.1"
    assert series.kind == "forecast"
    assert series.issued_at == to_epoch("2022-06-01T11:55Z")
    assert series.values.tolist() == [200, 190]


def test_401_is_an_auth_error_that_says_where_the_token_goes(api, http_options):
    api.on("/v3/carbon-intensity/forecast", httpx.Response(401, json={"message": "bad token"}))
    with pytest.raises(ProviderAuthError, match="ELECTRICITYMAPS_TOKEN"):
        provider(http_options).forecast("DE", NOW, NOW + 3600)


def test_404_unknown_zone(api, http_options):
    api.on("/v3/carbon-intensity/forecast", httpx.Response(404, json={"error": "zone"}))
    with pytest.raises(RegionNotFound):
        provider(http_options).forecast("XX", NOW, NOW + 3600)


def test_429_then_success(api, http_options, sleeps):
    api.on("/v3/carbon-intensity/forecast", httpx.Response(429, headers={"retry-after": "2"}),
           {"zone": "DE", "forecast": [point("2022-06-01T12:00:00Z", 100)]})
    series = provider(http_options).forecast("DE", NOW, NOW + 3600)
    assert series.values.tolist() == [100]
    assert sleeps == [2.0]


def test_timeouts_exhaust_retries_into_unavailable(api, http_options):
    api.on("/v3/carbon-intensity/forecast", timeout)
    with pytest.raises(ProviderUnavailable):
        provider(http_options).forecast("DE", NOW, NOW + 3600)
    assert len(api.requests) == 3


@pytest.mark.parametrize("body", [
    raw("{not json"), {"zone": "DE"}, {"zone": "DE", "forecast": {"a": 1}},
    {"zone": "DE", "forecast": [{"carbonIntensity": 1}]},
    {"zone": "DE", "forecast": [{"datetime": "yesterday-ish", "carbonIntensity": 1}]},
    {"zone": "DE", "forecast": [{"datetime": "2022-06-01T12:00Z", "carbonIntensity": "high"}]},
    {"zone": "DE", "forecast": []},
])
def test_malformed_payloads_are_reported_not_crashed_on(api, http_options, body):
    api.on("/v3/carbon-intensity/forecast", body)
    with pytest.raises(MalformedResponse, match="electricitymaps"):
        provider(http_options).forecast("DE", NOW, NOW + 3600)
