"""Carbon options of a unit of work: how long it runs, what it draws, how long it may wait,
where it may go, and what the runner should do (advise, defer, relocate).

Engine-neutral values; the Prefect ``carbon()`` task option and the Dask ``carbon()`` function
option both build them with :func:`carbon_options` and attach them to the task or function.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flowcache.carbon.emissions import PowerModel
from flowcache.carbon.timestamps import to_epoch
from flowcache.errors import ConfigError
from flowcache.units import parse_duration

MODES = ("advise", "defer", "relocate", "defer+relocate")


@dataclass(frozen=True)
class CarbonOptions:
    mode: str = "defer"
    max_delay: float | None = None
    deadline: float | None = None
    duration: float | None = None  # None: learned from past runs where the engine can
    power: PowerModel | None = None
    power_w: float | None = None
    energy_kwh: float | None = None
    regions: tuple[str, ...] = ()
    interruptible: bool = False
    data_gb: float = 0.0

    @property
    def defers(self) -> bool:
        return self.mode in ("defer", "defer+relocate")

    @property
    def relocates(self) -> bool:
        return self.mode in ("relocate", "defer+relocate")

    def watts(self, default: PowerModel) -> float:
        if self.power_w is not None:
            return self.power_w
        return (self.power or default).watts


def carbon_options(*, max_delay: str | float | timedelta | None = None,
                   deadline: str | float | datetime | None = None,
                   duration: str | float | timedelta | None = None,
                   power: PowerModel | float | None = None, energy_kwh: float | None = None,
                   regions: Iterable[str] = (), interruptible: bool = False,
                   data_gb: float = 0.0, mode: str = "defer") -> CarbonOptions:
    """Parse user spellings (``"8h"``, ISO times, watts) into :class:`CarbonOptions`."""
    chosen = "defer+relocate" if mode == "both" else mode
    if chosen not in MODES:
        raise ConfigError(f"carbon(mode={mode!r}): use one of {', '.join(MODES)} or 'both'")
    if isinstance(regions, str):
        raise ConfigError("carbon(regions=...) takes a list of region names")
    options = CarbonOptions(
        mode=chosen,
        max_delay=None if max_delay is None else parse_duration(max_delay, "max_delay"),
        deadline=None if deadline is None else to_epoch(deadline),
        duration=None if duration is None else parse_duration(duration, "duration"),
        power=power if isinstance(power, PowerModel) else None,
        power_w=float(power) if isinstance(power, (int, float)) else None,
        energy_kwh=energy_kwh, regions=tuple(regions), interruptible=interruptible,
        data_gb=float(data_gb))
    if options.duration is not None and options.duration <= 0:
        raise ConfigError("carbon(duration=...) must be positive")
    return options


def options_of(obj: Any) -> CarbonOptions | None:
    """The carbon options attached to a task or function, if any."""
    return getattr(obj, "flowcache_carbon", None)
