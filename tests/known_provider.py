"""A carbon-intensity provider with fixed, known hourly values, for runner and placer tests."""

from __future__ import annotations

import numpy as np

from flowcache.carbon.series import IntensitySeries
from flowcache.carbon.timestamps import to_epoch
from flowcache.errors import ProviderUnavailable

T0 = to_epoch("2024-03-01T00:00:00Z")
HOUR = 3600.0
# hourly gCO2eq/kWh: home is dirty except hours 3-4; north is middling all day
HOME = [400.0] * 3 + [100.0] * 2 + [400.0] * 43
NORTH = [300.0] * 48


class KnownProvider:
    """Serves fixed hourly intensities; its forecast is the truth."""

    name = "known"
    signal = "average"

    def __init__(self, series: dict[str, list[float]], *, failing: bool = False) -> None:
        self.series = {region: IntensitySeries(T0, HOUR, np.array(values), region=region,
                                               source="known")
                       for region, values in series.items()}
        self.failing = failing

    def history(self, region, start, end):
        return self._get(region, start, end)

    def forecast(self, region, start, end):
        return self._get(region, start, end).with_(kind="forecast", issued_at=start)

    def _get(self, region, start, end):
        if self.failing:
            raise ProviderUnavailable(self.name, "the intensity API is down (test)")
        return self.series[region].slice(to_epoch(start), to_epoch(end))
