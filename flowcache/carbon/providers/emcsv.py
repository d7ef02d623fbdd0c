"""Files in the Electricity Maps hourly CSV format: offline history (the shipped 2022 data).

Header (UTF-8; the "₂" is why the files must be read as UTF-8)::

    Datetime (UTC),Country,Zone Name,Zone Id,Carbon Intensity gCO₂eq/kWh (direct),
    Carbon Intensity gCO₂eq/kWh (LCA),Low Carbon Percentage,Renewable Percentage,
    Data Source,Data Estimated,Data Estimation Method

Each row is the hour starting at ``Datetime (UTC)``. The ``column`` option picks the LCA
(life-cycle, default: what Electricity Maps' API serves) or the direct (combustion) intensity.
A directory is searched for ``<ZONE>*.csv`` or ``<ZONE>*.csv.gz`` (read transparently); without
one, the shipped copy of the eight 2022 zones is used (ODbL, attribution "Electricity Maps", see
``flowcache/data/carbon/electricitymaps/NOTICE.md``). Files have no forecast: ``forecast()``
raises :class:`ForecastNotSupported` and callers forecast from the history.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from flowcache.carbon.providers.base import BaseProvider
from flowcache.carbon.regions import Region
from flowcache.carbon.series import IntensitySeries
from flowcache.carbon.timestamps import to_epoch
from flowcache.errors import ConfigError, MalformedResponse, RegionNotFound

COLUMNS = {"lca": "(LCA)", "direct": "(direct)"}


def shipped_dir() -> Path:
    """The directory of the shipped Electricity Maps 2022 files."""
    return Path(str(resources.files("flowcache").joinpath("data/carbon/electricitymaps")))


def read_text(path: Path) -> str:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    return raw.decode("utf-8-sig")


def parse_csv(text: str, *, column: Literal["lca", "direct"] = "lca", name: str = "csv",
              source: str = "electricitymaps-csv") -> IntensitySeries:
    """One Electricity Maps CSV document -> a history series (the real parsing path)."""
    if column not in COLUMNS:
        raise ConfigError(f"column must be 'lca' or 'direct', got {column!r}")
    rows = csv.reader(io.StringIO(text))
    try:
        header = next(rows)
    except StopIteration:
        raise MalformedResponse(name, "empty CSV file") from None
    wanted = COLUMNS[column]
    try:
        t_col = next(i for i, h in enumerate(header) if h.strip().startswith("Datetime"))
        v_col = next(i for i, h in enumerate(header) if "Carbon Intensity" in h and wanted in h)
    except StopIteration:
        raise MalformedResponse(name, f"not an Electricity Maps CSV: header {header[:6]!r} has "
                                f"no 'Datetime (UTC)' or 'Carbon Intensity ... {wanted}' column"
                                ) from None
    est_col = next((i for i, h in enumerate(header) if h.strip() == "Data Estimated"), None)
    zone_col = next((i for i, h in enumerate(header) if h.strip() == "Zone Id"), None)
    times, values, flags = [], [], []
    zone = ""
    for line, row in enumerate(rows, start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        try:
            times.append(to_epoch(row[t_col]))
            cell = row[v_col].strip()
            values.append(float(cell) if cell else None)
            flags.append(est_col is not None and row[est_col].strip().lower() == "true")
            zone = zone or (row[zone_col].strip() if zone_col is not None else "")
        except (IndexError, ValueError, ConfigError) as exc:
            raise MalformedResponse(name, f"line {line}: cannot read {row[:6]!r} ({exc})"
                                    ) from None
    if not times:
        raise MalformedResponse(name, "the CSV has a header but no rows")
    return IntensitySeries.from_points(times, values, estimated=flags, signal="average",
                                       source=source, region=zone,
                                       meta={"column": column, "zone": zone})


class ElectricityMapsCSV(BaseProvider):
    """History from Electricity Maps CSV files, by zone (``DE``) or an explicit file per region."""

    name = "emcsv"
    signal = "average"

    def __init__(self, data_dir: str | Path | None = None, *,
                 files: dict[str, str | Path] | None = None,
                 column: Literal["lca", "direct"] = "lca", **base: Any) -> None:
        super().__init__(**base)
        if column not in COLUMNS:
            raise ConfigError(f"column must be 'lca' or 'direct', got {column!r}")
        self.data_dir = Path(data_dir) if data_dir is not None else shipped_dir()
        self.files = {key: Path(path) for key, path in (files or {}).items()}
        self.column = column

    def cache_identity(self) -> str:
        return f"{self.name}:{self.column}:{self.data_dir}"

    def path_for(self, region: Region) -> Path:
        if region.key in self.files:
            return self.files[region.key]
        zone = self.code(region)
        candidates: Iterable[Path] = sorted(self.data_dir.glob(f"{zone}_*.csv*")) or sorted(
            self.data_dir.glob(f"{zone}.csv*"))
        for path in candidates:
            if path.suffix in (".csv", ".gz"):
                return path
        raise RegionNotFound(self.name, f"no CSV for zone {zone!r} in {self.data_dir} "
                             f"(looked for {zone}_*.csv[.gz]); pass data_dir= or files=")

    def load(self, region: str) -> IntensitySeries:
        """The whole file for ``region`` (cached per file and column)."""
        path = self.path_for(self.locate(region))
        stat = path.stat()
        return _load(str(path), stat.st_mtime_ns, stat.st_size, self.column).with_(region=region)

    def _history(self, region: Region, start: float, end: float) -> IntensitySeries:
        path = self.path_for(region)
        stat = path.stat()
        return _load(str(path), stat.st_mtime_ns, stat.st_size, self.column)


@functools.lru_cache(maxsize=64)
def _load(path: str, mtime_ns: int, size: int, column: Literal["lca", "direct"]
          ) -> IntensitySeries:
    try:
        text = read_text(Path(path))
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile) as exc:
        raise MalformedResponse("emcsv", f"cannot read {path}: {exc}") from exc
    return parse_csv(text, column=column, name=f"emcsv {Path(path).name}")
