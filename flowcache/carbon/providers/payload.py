"""Defensive readers for provider payloads: every shape error becomes :class:`MalformedResponse`.

Parsers walk JSON through these few functions instead of indexing it directly, so a missing key,
a string where a number belongs or an unparseable timestamp is reported with the provider's name
and the path of the bad field, never as a bare ``KeyError`` from deep inside a parser.
"""

from __future__ import annotations

import math
from typing import Any

from flowcache.carbon.timestamps import to_epoch
from flowcache.errors import ConfigError, MalformedResponse


class Reader:
    """Typed access to one provider's JSON, with the provider named in every error."""

    def __init__(self, provider: str) -> None:
        self.provider = provider

    def fail(self, where: str, what: str) -> MalformedResponse:
        return MalformedResponse(self.provider, f"unexpected response shape at {where}: {what}")

    def obj(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected an object, got {type(value).__name__}")
        return value

    def array(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(where, f"expected an array, got {type(value).__name__}")
        return value

    def field(self, obj: dict[str, Any], key: str, where: str) -> Any:
        if key not in obj:
            raise self.fail(where, f"missing field {key!r} (fields: {sorted(obj)[:8]})")
        return obj[key]

    def number(self, value: Any, where: str, *, nullable: bool = True) -> float | None:
        """A finite float; ``None`` (and NaN) stays None when nullable: that is a gap."""
        if value is None:
            if nullable:
                return None
            raise self.fail(where, "null where a number is required")
        if isinstance(value, bool):
            raise self.fail(where, f"expected a number, got {value!r}")
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise self.fail(where, f"expected a number, got {value!r}") from None
        if not isinstance(value, (int, float)):
            raise self.fail(where, f"expected a number, got {type(value).__name__}")
        result = float(value)
        if math.isnan(result):
            return None if nullable else self._nan(where)
        if math.isinf(result):
            raise self.fail(where, "infinite value")
        return result

    def _nan(self, where: str) -> float:
        raise self.fail(where, "NaN where a number is required")

    def time(self, value: Any, where: str) -> float:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise self.fail(where, f"expected a timestamp, got {type(value).__name__}")
        try:
            return to_epoch(value)
        except ConfigError:
            raise self.fail(where, f"cannot read {value!r} as a timestamp") from None

    def boolean(self, value: Any, where: str, default: bool = False) -> bool:
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise self.fail(where, f"expected true/false, got {value!r}")

    def minutes(self, value: Any, where: str) -> float:
        """A duration given as minutes (number) or ``"hh:mm[:ss]"`` (the SDK's TimeSpan)."""
        if isinstance(value, str) and ":" in value:
            parts = value.split(":")
            try:
                days, _, hours = parts[0].rpartition(".")
                total = float(days or 0) * 1440 + float(hours) * 60 + float(parts[1])
                if len(parts) > 2:
                    total += float(parts[2]) / 60
            except (ValueError, IndexError):
                raise self.fail(where, f"cannot read duration {value!r}") from None
            return total
        number = self.number(value, where, nullable=False)
        assert number is not None
        return number
