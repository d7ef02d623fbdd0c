"""The exceptions the carbon core raises: each says what happened and what to do about it.

One hierarchy, like httpx's: catch :class:`ProviderError` to handle any failure of an intensity
source (the planner's :func:`~flowcache.carbon.planner.run_now_at_home` turns one into a decision),
or a subclass to handle one cause. Parsers never let a ``KeyError`` or ``TypeError`` escape: a
payload that is not the documented shape is a :class:`MalformedResponse` naming the field.
"""

from __future__ import annotations

from flowcache.errors import ConfigError, FlowcacheError


class CarbonError(FlowcacheError):
    """Base class of every error the carbon core raises on purpose."""


class ProviderError(CarbonError):
    """An intensity provider could not give the data asked for."""

    def __init__(self, provider: str, message: str) -> None:
        self.provider = provider
        super().__init__(f"{provider}: {message}")


class ProviderAuthError(ProviderError):
    """The provider refused the credentials (HTTP 401 or 403)."""


class RegionNotFound(ProviderError):
    """The provider does not know the region (HTTP 404, or a zone missing from a file)."""


class ProviderUnavailable(ProviderError):
    """The provider could not be reached or kept failing (timeouts, 429, 5xx) after retries."""


class MalformedResponse(ProviderError):
    """The provider answered, but not with the documented shape."""


class ForecastNotSupported(ProviderError):
    """The provider has no forecast for this region; forecast from its history instead."""


class UnknownRegion(CarbonError, ConfigError):
    """A region name is in no region map and cannot be used as a provider zone either."""

    def __init__(self, name: str, known: list[str] | None = None) -> None:
        self.name = name
        hint = ""
        if known:
            hint = f" Known regions include {', '.join(sorted(known)[:8])}..."
        super().__init__(
            f"unknown region {name!r}.{hint} Use a cloud region (e.g. 'aws:eu-central-1'), an "
            "Electricity Maps zone (e.g. 'DE'), or add it with RegionMap.with_overrides()."
        )


class NoIntensityData(CarbonError, ValueError):
    """A series does not cover the interval a computation needs."""


class InvalidJob(CarbonError, ValueError):
    """A job description is inconsistent (e.g. neither power nor energy, negative duration)."""


__all__ = [
    "CarbonError", "ConfigError", "ForecastNotSupported", "InvalidJob", "MalformedResponse",
    "NoIntensityData", "ProviderAuthError", "ProviderError", "ProviderUnavailable",
    "RegionNotFound", "UnknownRegion",
]
