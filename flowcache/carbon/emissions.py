"""Emissions accounting: energy from a power model, grams from intensity, SCI and savings.

Defaults and their sources:

* CPU power per vCPU, linear between idle and full load: AWS 0.74-3.5 W, GCP 0.71-4.26 W, Azure
  0.78-3.76 W (Cloud Carbon Footprint methodology, "compute" coefficients, averaged over each
  cloud's processor families); ``PowerModel()`` uses the AWS pair.
* Average utilisation 50 % when unknown (Cloud Carbon Footprint's default for hyperscale clouds).
* Memory 0.392 W per GB (Cloud Carbon Footprint "memory" coefficient).
* Power usage effectiveness (PUE): AWS 1.135, GCP 1.1, Azure 1.185 (Cloud Carbon Footprint).
* Embodied emissions are not included by default (SCI's ``M`` term): pass them to :func:`sci`.

Operational emissions are the integral of power x intensity over the actual run, time-weighted
over the series' slots (so a run from 10:20 to 11:05 weighs the 10:00 hour by 40 minutes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from flowcache.carbon.series import IntensitySeries
from flowcache.carbon.timestamps import TimeLike, iso, to_epoch
from flowcache.errors import NoIntensityData

CLOUD_COEFFICIENTS = {
    # cloud: (min W/vCPU, max W/vCPU, PUE)  -- Cloud Carbon Footprint
    "aws": (0.74, 3.5, 1.135),
    "gcp": (0.71, 4.26, 1.1),
    "azure": (0.78, 3.76, 1.185),
}
MEMORY_W_PER_GB = 0.392


@dataclass(frozen=True)
class PowerModel:
    """Average power draw of a task: cores at a utilisation, memory, and the data centre's PUE."""

    cores: float = 1.0
    utilisation: float = 0.5
    watts_per_core_idle: float = 0.74
    watts_per_core_max: float = 3.5
    memory_gb: float = 0.0
    watts_per_gb: float = MEMORY_W_PER_GB
    pue: float = 1.135

    def __post_init__(self) -> None:
        if not 0.0 <= self.utilisation <= 1.0:
            raise ValueError(f"utilisation is a fraction in [0, 1], got {self.utilisation}")
        if self.cores < 0 or self.memory_gb < 0 or self.pue < 1.0:
            raise ValueError("cores and memory must be >= 0 and PUE >= 1")

    @classmethod
    def for_cloud(cls, cloud: str, **kw: float) -> PowerModel:
        idle, peak, pue = CLOUD_COEFFICIENTS[cloud]
        return cls(watts_per_core_idle=idle, watts_per_core_max=peak, pue=pue, **kw)

    @property
    def watts(self) -> float:
        per_core = self.watts_per_core_idle + self.utilisation * (
            self.watts_per_core_max - self.watts_per_core_idle)
        return (self.cores * per_core + self.memory_gb * self.watts_per_gb) * self.pue


def energy_kwh(duration_s: float, power: PowerModel | float) -> float:
    """kWh drawn over ``duration_s`` seconds at ``power`` (a model or watts)."""
    watts = power.watts if isinstance(power, PowerModel) else float(power)
    return watts * duration_s / 3.6e6


def emissions_g(series: IntensitySeries, start: TimeLike, end: TimeLike, *,
                power_w: float | None = None, energy: float | None = None) -> float:
    """Grams of CO2eq emitted running from ``start`` to ``end`` in the series' region.

    Give the constant power (W) or the total energy (kWh, spread evenly over the interval).
    Raises :class:`NoIntensityData` when the series does not cover the interval or has a gap.
    """
    a, b = to_epoch(start), to_epoch(end)
    if b <= a:
        return 0.0
    if (power_w is None) == (energy is None):
        raise ValueError("give exactly one of power_w and energy")
    integral = float(series.integral(a, b))  # (g/kWh) * s
    if math.isnan(integral):
        raise NoIntensityData(f"{series.region or 'the series'} has no complete data for "
                              f"{iso(a)}..{iso(b)} (covers {iso(series.start)}..{iso(series.end)})")
    watts = power_w if power_w is not None else float(energy) * 3.6e6 / (b - a)  # type: ignore
    return watts / 1000.0 * integral / 3600.0


def intervals_emissions_g(series: IntensitySeries, intervals: list[tuple[float, float]] |
                          tuple[tuple[float, float], ...], energy: float) -> float:
    """Grams for a run in pieces (interruptible jobs), energy spread evenly over the pieces."""
    total_time = sum(b - a for a, b in intervals)
    if total_time <= 0:
        return 0.0
    starts = np.array([a for a, _ in intervals])
    ends = np.array([b for _, b in intervals])
    integral = series.integral(starts, ends)
    if np.isnan(integral).any():
        raise NoIntensityData(f"{series.region or 'the series'} has gaps during the run")
    return energy * float(integral.sum()) / total_time


def sci(operational_g: float, embodied_g: float = 0.0, functional_units: float = 1.0) -> float:
    """Software Carbon Intensity: (E x I + M) per functional unit R (GSF SCI specification)."""
    if functional_units <= 0:
        raise ValueError("the number of functional units must be positive")
    return (operational_g + embodied_g) / functional_units


def embodied_g(total_embodied_kg: float, lifetime_years: float, reserved_s: float,
               share: float = 1.0) -> float:
    """SCI's M: the hardware's embodied emissions, pro rata of time reserved and share used."""
    lifetime_s = lifetime_years * 365.25 * 86400
    return total_embodied_kg * 1000.0 * (reserved_s / lifetime_s) * share


@dataclass(frozen=True)
class Savings:
    baseline_g: float
    actual_g: float

    @property
    def saved_g(self) -> float:
        return self.baseline_g - self.actual_g

    @property
    def saved_pct(self) -> float:
        return 100.0 * self.saved_g / self.baseline_g if self.baseline_g else 0.0


def savings(actual_g: float, baseline_g: float) -> Savings:
    return Savings(baseline_g=baseline_g, actual_g=actual_g)
