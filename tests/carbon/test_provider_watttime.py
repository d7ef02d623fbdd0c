"""WattTime v3 against recorded-shape responses.

Shapes relied on: ``GET /login`` (basic auth) -> ``{"token"}``; ``/v3/forecast`` and
``/v3/historical`` -> ``{"data": [{"point_time", "value"}], "meta": {"region", "signal_type",
"units": "lbs_co2_per_mwh", "data_point_period_seconds": 300, "generated_at"?, "model"}}``;
``/v3/region-from-loc`` -> ``{"region", "region_full_name", "signal_type"}``.
"""

import base64

import httpx
import numpy as np
import pytest

from flowcache.carbon.providers.watttime import LBS_PER_MWH_TO_G_PER_KWH, WattTime
from flowcache.carbon.timestamps import to_epoch
from flowcache.errors import MalformedResponse, ProviderAuthError, ProviderUnavailable
from tests.carbon.fakes import raw, timeout

NOW = to_epoch("2022-06-01T12:00Z")


def data(values, start="2022-06-01T12:00:00+00:00", generated=True, units="lbs_co2_per_mwh"):
    t0 = to_epoch(start)
    meta = {"region": "CAISO_NORTH", "signal_type": "co2_moer", "units": units,
            "data_point_period_seconds": 300, "model": {"date": "2023-03-01"}}
    if generated:
        meta["generated_at"] = "2022-06-01T11:55:00+00:00"
    return {"data": [{"point_time": f"{np.datetime64(int(t0 + 300 * i), 's')}+00:00",
                      "value": v} for i, v in enumerate(values)], "meta": meta}


def provider(http_options, **kw):
    return WattTime("user", "pw", clock=lambda: NOW, **http_options, **kw)


def test_login_then_forecast_converts_lbs_per_mwh_to_g_per_kwh(api, http_options):
    api.on("/login", {"token": "tok"}).on("/v3/forecast", data([1000.0, 500.0, None, 800.0]))
    series = provider(http_options).forecast("us-west-1", NOW, NOW + 1200)
    login, call = api.requests
    assert login.headers["authorization"] == "Basic " + base64.b64encode(b"user:pw").decode()
    assert call.headers["authorization"] == "Bearer tok"
    assert call.url.params["region"] == "CAISO_NORTH"
    assert call.url.params["signal_type"] == "co2_moer"
    assert series.resolution == 300
    assert series.signal == "marginal"
    assert series.values[0] == pytest.approx(1000 * 0.45359237)
    assert series.values[1] == pytest.approx(500 * LBS_PER_MWH_TO_G_PER_KWH)
    assert np.isnan(series.values[2])  # null value: a gap
    assert series.issued_at == to_epoch("2022-06-01T11:55Z")


def test_token_is_reused_and_renewed_after_a_401(api, http_options):
    api.on("/login", {"token": "a"}, {"token": "b"})
    api.on("/v3/forecast", data([100.0]), httpx.Response(401), data([200.0]))
    wt = provider(http_options)
    wt.forecast("CAISO_NORTH", NOW, NOW + 300)
    second = wt.forecast("CAISO_NORTH", NOW, NOW + 300)
    assert api.paths() == ["/login", "/v3/forecast", "/v3/forecast", "/login", "/v3/forecast"]
    assert api.requests[-1].headers["authorization"] == "Bearer b"
    assert second.values[0] == pytest.approx(200 * LBS_PER_MWH_TO_G_PER_KWH)


def test_bad_credentials_are_an_auth_error(api, http_options):
    api.on("/login", httpx.Response(401, text="invalid"))
    with pytest.raises(ProviderAuthError, match="WATTTIME_USERNAME"):
        provider(http_options).forecast("CAISO_NORTH", NOW, NOW + 300)


def test_no_credentials_at_all(http_options):
    with pytest.raises(ProviderAuthError, match="no credentials"):
        WattTime(**http_options).history("CAISO_NORTH", NOW - 600, NOW)


def test_region_from_location_when_the_map_has_only_coordinates(api, http_options):
    api.on("/login", {"token": "t"})
    api.on("/v3/region-from-loc", {"region": "PJM_DC", "region_full_name": "PJM DC",
                                   "signal_type": "co2_moer"})
    api.on("/v3/historical", data([900.0, 910.0], start="2022-06-01T11:50:00+00:00"))
    wt = provider(http_options)
    series = wt.history("aws:us-east-1", NOW - 600, NOW)
    wt.history("aws:us-east-1", NOW - 600, NOW)
    assert api.paths().count("/v3/region-from-loc") == 1  # remembered
    params = api.requests[1].url.params
    assert (params["latitude"], params["longitude"]) == ("38.9", "-77.4")
    assert api.requests[2].url.params["region"] == "PJM_DC"
    assert len(series) == 2


def test_429_then_success_and_timeouts(api, http_options, sleeps):
    api.on("/login", {"token": "t"})
    api.on("/v3/forecast", httpx.Response(429), data([100.0]))
    assert len(provider(http_options).forecast("CAISO_NORTH", NOW, NOW + 300)) == 1
    assert sleeps == [1.0]
    api.on("/v3/forecast", timeout)
    with pytest.raises(ProviderUnavailable):
        provider(http_options).forecast("CAISO_NORTH", NOW, NOW + 300)


@pytest.mark.parametrize("body", [
    raw("]["), {"data": []}, {"meta": {}, "data": [{"value": 1}]},
    {"meta": {}, "data": [{"point_time": "2022-06-01T12:00Z", "value": [1]}]},
    data([1.0], units="usd_per_mwh"), {"meta": [], "data": []},
])
def test_malformed_payloads(api, http_options, body):
    api.on("/login", {"token": "t"}).on("/v3/forecast", body)
    with pytest.raises(MalformedResponse, match="watttime"):
        provider(http_options).forecast("CAISO_NORTH", NOW, NOW + 300)
