"""Regions: cloud region names mapped to each provider's zone and to coordinates.

Users speak of ``aws:eu-central-1`` or ``europe-north1``; Electricity Maps wants ``DE``, WattTime
a balancing-authority code, the UK API a region id, and any of them can take latitude/longitude.
The shipped map (``flowcache/data/carbon/regions.json``, sources stated in the file) covers the
main AWS, GCP and Azure regions; :meth:`RegionMap.with_overrides` or :meth:`RegionMap.from_file`
change or add entries. A name in no map is passed to the provider unchanged, so a raw provider
zone such as ``"DE"`` or ``"CAISO_NORTH"`` works everywhere without being listed.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

from flowcache.errors import ConfigError, UnknownRegion

CLOUDS = ("aws", "gcp", "azure")


@dataclass(frozen=True)
class Region:
    """One place a task can run, with the code each provider knows it by."""

    key: str
    cloud: str | None = None
    name: str = ""
    lat: float | None = None
    lon: float | None = None
    electricitymaps: str | None = None
    watttime: str | None = None
    ukgrid: int | None = None

    def code_for(self, provider: str) -> str | int | None:
        return getattr(self, provider, None)

    @property
    def has_coordinates(self) -> bool:
        return self.lat is not None and self.lon is not None

    def describe(self) -> str:
        zone = f" -> {self.electricitymaps}" if self.electricitymaps else ""
        return f"{self.key}{zone}"


_FIELDS = {f.name for f in fields(Region)} - {"key"}


def _region(key: str, data: Mapping[str, Any]) -> Region:
    unknown = set(data) - _FIELDS
    if unknown:
        raise ConfigError(f"region {key!r} has unknown fields {sorted(unknown)}; "
                          f"allowed: {sorted(_FIELDS)}")
    return Region(key=key, **dict(data))


class RegionMap:
    """Name -> :class:`Region`, with aliases and bare cloud names (``eu-west-1``)."""

    def __init__(self, regions: Mapping[str, Region], aliases: Mapping[str, str] | None = None
                 ) -> None:
        self.regions = dict(regions)
        self.aliases = dict(aliases or {})
        self._bare: dict[str, list[str]] = {}
        for key in self.regions:
            self._bare.setdefault(key.partition(":")[2] or key, []).append(key)

    # -- loading ----------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RegionMap:
        try:
            regions = {key: _region(key, value) for key, value in data.get("regions", {}).items()}
        except TypeError as exc:
            raise ConfigError(f"cannot read the region map: {exc}") from exc
        return cls(regions, data.get("aliases", {}))

    @classmethod
    def from_file(cls, path: str | Path) -> RegionMap:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read region map {path}: {exc}") from exc
        return cls.from_dict(data)

    @classmethod
    def shipped(cls) -> RegionMap:
        """The map shipped with flowcache (AWS, GCP and Azure regions)."""
        return _shipped()

    def with_overrides(self, overrides: Mapping[str, Mapping[str, Any] | Region] | RegionMap,
                       aliases: Mapping[str, str] | None = None) -> RegionMap:
        """A new map where ``overrides`` replace or extend entries field by field."""
        if isinstance(overrides, RegionMap):
            aliases = {**overrides.aliases, **(aliases or {})}
            overrides = overrides.regions
        regions = dict(self.regions)
        for key, value in overrides.items():
            if isinstance(value, Region):
                regions[key] = value
                continue
            base = regions.get(key) or self._maybe(key)
            merged = replace(base, **dict(value)) if base else _region(key, value)
            regions[key] = replace(merged, key=key)
        return RegionMap(regions, {**self.aliases, **(aliases or {})})

    # -- lookup -----------------------------------------------------------------------------------
    def _maybe(self, name: str) -> Region | None:
        key = self.aliases.get(name, name)
        if key in self.regions:
            return self.regions[key]
        matches = self._bare.get(key, [])
        if len(matches) == 1:
            return self.regions[matches[0]]
        if len(matches) > 1:
            raise UnknownRegion(f"{name} (ambiguous: {', '.join(sorted(matches))})")
        return None

    def get(self, name: str) -> Region | None:
        """The region called ``name`` (key, alias or bare cloud name), or None."""
        return self._maybe(name.strip())

    def resolve(self, name: str) -> Region:
        """The region for ``name``; a name in no map becomes a raw zone for every provider."""
        found = self.get(name)
        if found is not None:
            return found
        raw = name.strip()
        if not raw:
            raise UnknownRegion(name, list(self.regions))
        uk = int(raw) if raw.isdigit() else None
        return Region(key=raw, electricitymaps=raw, watttime=raw, ukgrid=uk)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __len__(self) -> int:
        return len(self.regions)

    def names(self) -> list[str]:
        return sorted(self.regions) + sorted(self.aliases)


@functools.cache
def _shipped() -> RegionMap:
    text = resources.files("flowcache").joinpath("data/carbon/regions.json").read_text(
        encoding="utf-8")
    return RegionMap.from_dict(json.loads(text))
