"""The evaluation's replay: the oracle reproduces the published perfect-forecast figures."""

import numpy as np
import pytest

from flowcache.carbon.forecasting.seasonal import HourOfDayMean, PerfectForesight
from flowcache.carbon.providers.emcsv import ElectricityMapsCSV
from flowcache.carbon.replay import defer_hourly, defer_multi_region, forecasts, nightly


@pytest.mark.parametrize(("zone", "delay", "expected"), [
    ("DE", 4, 6.4), ("DE", 8, 11.7), ("DE", 24, 23.3), ("GB", 8, 12.0), ("FR", 8, 9.8),
    ("NL", 8, 11.5), ("CA-QC", 8, 1.9)])
def test_oracle_reproduces_the_reference_savings(zone, delay, expected):
    v = ElectricityMapsCSV().load(zone).values
    origins = np.arange(0, v.size - delay)
    f = PerfectForesight().predict_block(v, origins, delay + 1, 24)
    assert 100 * defer_hourly(v, origins, f, delay).saving == pytest.approx(expected, abs=0.1)


def test_forecast_methods_and_scenarios_run_on_a_month():
    v = ElectricityMapsCSV().load("DE").values[: 24 * 40]
    origins = np.arange(24 * 8, v.size - 25)
    fc = forecasts(v, origins, 25, {"mean7": HourOfDayMean(), "oracle": PerfectForesight()})
    mean7 = defer_hourly(v, origins, fc["mean7"], 8).saving
    oracle = defer_hourly(v, origins, fc["oracle"], 8).saving
    assert 0 < mean7 < oracle
    both = defer_multi_region([v, v * 0.5], 0, origins, [fc["oracle"], fc["oracle"] * 0.5], 8)
    assert both.saving > oracle
    decision = np.arange(24 * 8, v.size - 30, 24)
    night = nightly(v, PerfectForesight().predict_block(v, decision, 6, 24), decision, 2)
    assert night.saving >= 0
