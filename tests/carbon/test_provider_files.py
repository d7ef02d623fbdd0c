"""File providers: Electricity Maps hourly CSV (shipped and user files) and SDK emissions JSON."""

import gzip
import json

import numpy as np
import pytest

from flowcache.carbon.providers import get_provider
from flowcache.carbon.providers.emcsv import ElectricityMapsCSV, parse_csv, shipped_dir
from flowcache.carbon.providers.sdkjson import CarbonAwareJSON, parse_emissions
from flowcache.carbon.timestamps import to_epoch
from flowcache.errors import ForecastNotSupported, MalformedResponse, RegionNotFound

HEADER = ("Datetime (UTC),Country,Zone Name,Zone Id,Carbon Intensity gCO₂eq/kWh (direct),"
          "Carbon Intensity gCO₂eq/kWh (LCA),Low Carbon Percentage,Renewable Percentage,"
          "Data Source,Data Estimated,Data Estimation Method")


def csv_text(rows):
    lines = [HEADER] + [f"{t},Germany,Germany,DE,{d},{lca},50,40,entsoe.eu,{est},"
                        for t, d, lca, est in rows]
    return "\n".join(lines) + "\n"


def test_shipped_data_is_the_full_2022_year_for_eight_zones():
    names = sorted(p.name for p in shipped_dir().glob("*.csv.gz"))
    assert [n.split("_")[0] for n in names] == ["BE", "CA-QC", "CH", "DE", "FI", "FR", "GB", "NL"]
    assert (shipped_dir() / "NOTICE.md").read_text().count("ODbL") >= 2
    full = ElectricityMapsCSV().load("DE")
    assert len(full) == 8760
    assert full.start == to_epoch("2022-01-01T00:00Z")
    assert full.values[:2].tolist() == [212.91, 217.14]  # the LCA column
    assert np.nanmean(full.values) == pytest.approx(474.3, abs=0.1)  # the NOTICE's figure


def test_direct_column_and_estimated_flags():
    direct = get_provider("files", column="direct").history("DE", "2022-01-01", "2022-01-01T02:00Z")
    assert direct.values.tolist() == [162.59, 165.79]
    ch = get_provider("files").history("CH", "2022-01-01", "2022-01-01T02:00Z")
    assert ch.estimated.tolist() == [True, False]


def test_cloud_regions_resolve_to_the_zone_file():
    series = get_provider("files").history("gcp:europe-north1", "2022-06-01", "2022-06-02")
    assert series.region == "gcp:europe-north1"
    assert len(series) == 24
    assert series.meta["zone"] == "FI"


def test_user_directory_plain_and_gzip_files_with_gaps(tmp_path):
    text = csv_text([("2022-01-01 00:00:00", 1, 10, "false"),
                     ("2022-01-01 01:00:00", 2, "", "true"),
                     ("2022-01-01 03:00:00", 4, 40, "false")])
    (tmp_path / "DE_2022_hourly.csv").write_text(text, encoding="utf-8")
    (tmp_path / "XX_test.csv.gz").write_bytes(gzip.compress(text.encode()))
    provider = ElectricityMapsCSV(tmp_path)
    for zone in ("DE", "XX"):
        series = provider.history(zone, "2022-01-01", "2022-01-01T04:00Z")
        assert series.values[0] == 10
        assert np.isnan(series.values[1:3]).all()
        assert series.values[3] == 40


def test_forecasts_are_not_supported_by_files():
    with pytest.raises(ForecastNotSupported, match="forecast_for"):
        get_provider("files").forecast("DE", "2022-06-01", "2022-06-02")


def test_missing_zone_and_bad_files(tmp_path):
    with pytest.raises(RegionNotFound, match="no CSV for zone 'PL'"):
        ElectricityMapsCSV(tmp_path).history("PL", "2022-01-01", "2022-01-02")
    with pytest.raises(MalformedResponse, match="not an Electricity Maps CSV"):
        parse_csv("Time,Carbon Intensity\n2020-01-01 00:00:00,1\n")
    with pytest.raises(MalformedResponse, match="line 2"):
        parse_csv(HEADER + "\nnot-a-date,x,x,DE,1,2,3,4,x,false,\n")
    with pytest.raises(MalformedResponse, match="no rows"):
        parse_csv(HEADER + "\n")
    (tmp_path / "DE.csv.gz").write_bytes(b"not gzip")
    with pytest.raises(MalformedResponse, match="cannot read"):
        ElectricityMapsCSV(tmp_path).history("DE", "2022-01-01", "2022-01-02")


def test_sdk_json_both_shapes_from_the_shipped_samples():
    data = shipped_dir().parent / "carbon-aware-sdk"
    legacy = CarbonAwareJSON(data / "test-data-aws-emissions.json")
    series = legacy.history("aws:us-east-1", "2021-10-25T14:50Z", "2021-10-25T17:50Z")
    assert series.values.tolist() == [90, 57, 19]
    assert series.resolution == 3600
    sample = parse_emissions(json.loads((data / "sample-emissions-data.json").read_text(
        encoding="utf-8-sig")))
    assert sample["sydney"].values[0] == pytest.approx(0.6)  # numeric strings accepted
    assert set(sample) == {"sydney", "melbourne", "us-east", "auckland"}


def test_sdk_json_errors(tmp_path):
    path = tmp_path / "e.json"
    path.write_text(json.dumps({"Emissions": [{"Location": "a", "Time": "2021-01-01T00:00Z",
                                               "Rating": None}]}))
    assert np.isnan(CarbonAwareJSON(path).history("a", "2021-01-01", "2021-01-01T01:00Z").values[0])
    with pytest.raises(RegionNotFound, match="no location 'b'"):
        CarbonAwareJSON(path).history("b", "2021-01-01", "2021-01-02")
    path.write_text('{"Emissions": [{"Location": "a", "Rating": 1}]}')
    with pytest.raises(MalformedResponse, match="missing field 'Time'"):
        CarbonAwareJSON(path).history("a", "2021-01-01", "2021-01-02")
    path.write_text("{oops")
    with pytest.raises(MalformedResponse, match="not JSON"):
        CarbonAwareJSON(path).history("a", "2021-01-01", "2021-01-02")
