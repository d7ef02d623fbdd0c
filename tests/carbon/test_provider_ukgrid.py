"""UK Carbon Intensity API against recorded-shape responses.

Shapes relied on: national ``/intensity/{from}/{to}`` and ``/intensity/{from}/fw48h`` ->
``{"data": [{"from", "to", "intensity": {"forecast", "actual", "index"}}]}``; regional
``/regional/intensity/{from}/{to}/regionid/{id}`` -> ``{"data": {"regionid", "dnoregion",
"shortname", "data": [{"from", "to", "intensity": {"forecast", "index"}, "generationmix"}]}}``
(also seen wrapped in a one-element list).
"""

import httpx
import numpy as np
import pytest

from flowcache.carbon.providers.ukgrid import UKCarbonIntensity
from flowcache.carbon.timestamps import iso, to_epoch
from flowcache.errors import (
    MalformedResponse,
    ProviderAuthError,
    ProviderUnavailable,
    RegionNotFound,
)
from tests.carbon.fakes import raw, timeout

NOW = to_epoch("2022-06-01T12:00Z")


def period(start, forecast, actual="absent", minutes=30):
    t = to_epoch(start)
    intensity = {"forecast": forecast, "index": "moderate"}
    if actual != "absent":
        intensity["actual"] = actual
    return {"from": iso(t, seconds=False), "to": iso(t + minutes * 60, seconds=False),
            "intensity": intensity}


def provider(http_options):
    return UKCarbonIntensity(clock=lambda: NOW, **http_options)


def half_hours(n, start="2022-06-01T10:00Z", actual=True):
    t = to_epoch(start)
    return [period(f"{np.datetime64(int(t + 1800 * i), 's')}Z", 200 + i,
                   (190 + i) if actual else None) for i in range(n)]


def test_national_history_prefers_actual_and_flags_forecast_stand_ins(api, http_options):
    rows = half_hours(4)
    rows[3]["intensity"]["actual"] = None
    api.on("/intensity/*", {"data": rows})
    series = provider(http_options).history("GB", "2022-06-01T10:00Z", "2022-06-01T12:00Z")
    assert api.paths() == ["/intensity/2022-06-01T10:00Z/2022-06-01T12:00Z"]
    assert series.resolution == 1800
    assert series.values.tolist() == [190, 191, 192, 203]
    assert series.estimated.tolist() == [False, False, False, True]


def test_forecast_uses_the_forecast_field_and_fw48h(api, http_options):
    api.on("/intensity/*", {"data": half_hours(3, start="2022-06-01T12:00Z", actual=False)})
    series = provider(http_options).forecast("GB", NOW, NOW + 5400)
    assert api.paths() == ["/intensity/2022-06-01T12:00Z/fw48h"]
    assert series.values.tolist() == [200, 201, 202]
    assert series.estimated.all()


@pytest.mark.parametrize("wrapped", [False, True])
def test_regional_by_cloud_region(api, http_options, wrapped):
    block = {"regionid": 13, "dnoregion": "UKPN London", "shortname": "London",
             "data": [period("2022-06-01T12:00Z", 150), period("2022-06-01T12:30Z", None),
                      period("2022-06-01T13:00Z", 170)]}
    api.on("/regional/*", {"data": [block] if wrapped else block})
    series = provider(http_options).forecast("aws:eu-west-2", NOW, NOW + 3 * 1800)
    assert api.paths() == ["/regional/intensity/2022-06-01T12:00Z/fw48h/regionid/13"]
    assert series.values[0] == 150
    assert np.isnan(series.values[1])
    assert series.values[2] == 170


def test_history_longer_than_two_weeks_is_chunked(api, http_options):
    api.on("/intensity/*", lambda request: httpx.Response(200, json={"data": half_hours(
        2, start=request.url.path.split("/")[2])}))
    provider(http_options).history("GB", "2022-05-01T00:00Z", "2022-05-31T00:00Z")
    assert len(api.requests) == 3


def test_a_region_outside_britain_is_refused(http_options):
    with pytest.raises(RegionNotFound, match="not in Great Britain"):
        provider(http_options).forecast("aws:eu-central-1", NOW, NOW + 1800)


def test_401_429_timeout(api, http_options, sleeps):
    api.on("/intensity/*", httpx.Response(401))
    with pytest.raises(ProviderAuthError):
        provider(http_options).forecast("GB", NOW, NOW + 1800)
    api.on("/intensity/*", httpx.Response(429), {"data": half_hours(1, "2022-06-01T12:00Z")})
    assert len(provider(http_options).forecast("GB", NOW, NOW + 1800)) == 1
    api.on("/intensity/*", timeout)
    with pytest.raises(ProviderUnavailable):
        provider(http_options).forecast("GB", NOW, NOW + 1800)


@pytest.mark.parametrize("body", [
    raw("null"), raw("<xml/>"), {"data": {"from": 1}}, {"data": [{"from": "2022-06-01T12:00Z"}]},
    {"data": [{"from": "2022-06-01T12:00Z", "to": "2022-06-01T12:30Z", "intensity": 5}]},
])
def test_malformed_payloads(api, http_options, body):
    api.on("/intensity/*", body)
    with pytest.raises(MalformedResponse, match="ukgrid"):
        provider(http_options).forecast("GB", NOW, NOW + 1800)
