"""Lifetimes: how long an entry may live, as values carried in every frame's header.

Every entry has exactly one lifetime (DESIGN invariant 5): ``FLOW`` (purged when the flow run that
wrote it ends), a ``TTL`` or ``KEEP``. They are values, not strings parsed later; ``parse_lifetime``
is the one place user spellings (``"flow"``, ``"2h"``, ``3600``, ``"keep"``) become them
(durations as :mod:`flowcache.units` reads them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flowcache.errors import ConfigError
from flowcache.units import parse_duration


@dataclass(frozen=True)
class Keep:
    """Kept until cleared explicitly (``flowcache clear``)."""

    def to_header(self, now: float) -> dict[str, Any]:
        return {"kind": "keep"}

    def ttl_seconds(self, now: float) -> float | None:
        return None


@dataclass(frozen=True)
class TTL:
    """Expires ``seconds`` after it was written, in every tier."""

    seconds: float

    def __post_init__(self) -> None:
        if self.seconds <= 0:
            raise ConfigError(f"a TTL must be positive, got {self.seconds}")

    def to_header(self, now: float) -> dict[str, Any]:
        return {"kind": "ttl", "expires_at": now + self.seconds}

    def ttl_seconds(self, now: float) -> float | None:
        return self.seconds


@dataclass(frozen=True)
class FlowScoped:
    """An intermediate of one flow run: purged when that run ends.

    ``run_id`` is filled in by the engine glue when the entry is written; ``max_age`` bounds how
    long ``gc`` lets it live if no hook ever purges it (a killed flow process).
    """

    run_id: str | None = None
    max_age: float = 7 * 24 * 3600.0

    def to_header(self, now: float) -> dict[str, Any]:
        return {"kind": "flow", "run": self.run_id, "expires_at": now + self.max_age}

    def ttl_seconds(self, now: float) -> float | None:
        return self.max_age


Lifetime = Keep | TTL | FlowScoped
KEEP = Keep()
FLOW = FlowScoped()

def parse_lifetime(value: Lifetime | str | float | timedelta | None,
                   setting: str = "lifetime") -> Lifetime:
    """The one place user spellings become lifetime values (``None`` means keep)."""
    if isinstance(value, (Keep, TTL, FlowScoped)):
        return value
    if value is None or (isinstance(value, str) and value.strip().lower() == "keep"):
        return KEEP
    if isinstance(value, str) and value.strip().lower() == "flow":
        return FLOW
    seconds = parse_duration(value, setting)
    if seconds <= 0:
        raise ConfigError(f"{setting}={value!r}: a lifetime must be positive; use 'flow', "
                          "'keep' or a duration such as '2h'")
    return TTL(seconds)


def lifetime_from_header(data: dict[str, Any]) -> Lifetime:
    kind = data.get("kind")
    if kind == "ttl":
        return TTL(max(1e-9, float(data["expires_at"]) - time.time()))
    if kind == "flow":
        return FlowScoped(data.get("run"))
    return KEEP


def expires_at(header_lifetime: dict[str, Any]) -> float | None:
    """The wall-clock expiry recorded in a frame header, if any."""
    value = header_lifetime.get("expires_at")
    return float(value) if value is not None else None
