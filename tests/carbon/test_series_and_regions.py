"""The intensity series (grids, gaps, time-weighted means) and the cloud region map."""

import numpy as np
import pytest

from flowcache.carbon.regions import RegionMap
from flowcache.carbon.series import IntensitySeries
from flowcache.carbon.timestamps import iso, to_epoch
from flowcache.errors import UnknownRegion
from tests.carbon.fakes import hourly

T0 = 1_654_041_600.0
H = 3600.0


def test_points_go_on_a_grid_missing_points_become_gaps():
    s = IntensitySeries.from_points([T0, T0 + H, T0 + 3 * H], [1.0, None, 3.0])
    assert s.resolution == H
    assert len(s) == 4
    assert np.isnan(s.values[1:3]).all()
    assert s.gaps == 2
    # mostly half-hourly with one quarter-hour step (Let's Wait Awhile's GB data looks like this)
    mixed = IntensitySeries.from_points([T0, T0 + 1800, T0 + 3600, T0 + 5400, T0 + 6300],
                                        [1.0, 2.0, 3.0, 4.0, 5.0])
    assert mixed.resolution == 900
    assert mixed.values.tolist() == [1, 1, 2, 2, 3, 3, 4, 5, 5]


def test_time_weighted_means_until_and_resample():
    s = hourly([10, 20, 30])
    assert s.mean(T0 + 0.5 * H, T0 + 1.5 * H) == pytest.approx(15)
    assert np.isnan(s.mean(T0, T0 + 4 * H))
    assert len(s.until(T0 + 1.5 * H)) == 1
    assert s.resample(2 * H).values[0] == pytest.approx(15)
    assert s.resample(1800).values.tolist() == [10, 10, 20, 20, 30, 30]
    filled = hourly([1, None, 3]).fill_gaps()
    assert filled.values.tolist() == [1, 2, 3]
    assert filled.estimated.tolist() == [False, True, False]


def test_combine_and_serialise():
    a = hourly([1, None])
    b = hourly([9, 2, 3])
    both = a.combine(b)
    assert both.values.tolist() == [1, 2, 3]
    back = IntensitySeries.from_bytes(hourly([1, None], fallback="why").to_bytes())
    assert np.isnan(back.values[1])
    assert back.fallback == "why"


def test_timestamps():
    assert to_epoch("2022-06-01T00:00Z") == T0
    assert to_epoch("2022-06-01 00:00:00") == T0
    assert to_epoch(np.datetime64("2022-06-01T00:00")) == T0
    assert iso(T0) == "2022-06-01T00:00:00Z"


def test_shipped_region_map_resolves_clouds_aliases_and_raw_zones():
    regions = RegionMap.shipped()
    assert regions.resolve("aws:eu-central-1").electricitymaps == "DE"
    assert regions.resolve("europe-north1").electricitymaps == "FI"
    assert regions.resolve("westeurope").electricitymaps == "NL"
    assert regions.resolve("eu-north").key == "gcp:europe-north1"
    assert regions.resolve("azure:uksouth").ukgrid == 13
    assert regions.resolve("azure:eastus").lat == pytest.approx(37.3719)
    raw = regions.resolve("PL")
    assert (raw.electricitymaps, raw.watttime) == ("PL", "PL")
    assert len(regions) > 80


def test_overrides_and_files(tmp_path):
    regions = RegionMap.shipped().with_overrides(
        {"aws:eu-central-1": {"electricitymaps": "DE-X"}, "lab": {"lat": 1.0, "lon": 2.0}},
        aliases={"home": "lab"})
    assert regions.resolve("aws:eu-central-1").electricitymaps == "DE-X"
    assert regions.resolve("aws:eu-central-1").lat == pytest.approx(50.1)
    assert regions.resolve("home").lat == 1.0
    path = tmp_path / "r.json"
    path.write_text('{"regions": {"x:y": {"electricitymaps": "FR"}}, "aliases": {"z": "x:y"}}')
    assert RegionMap.from_file(path).resolve("z").electricitymaps == "FR"
    path.write_text('{"regions": {"x:y": {"zone": "FR"}}}')
    with pytest.raises(Exception, match="unknown fields"):
        RegionMap.from_file(path)
    with pytest.raises(UnknownRegion):
        RegionMap.shipped().resolve("  ")
