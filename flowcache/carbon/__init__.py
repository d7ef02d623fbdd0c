"""flowcache.carbon: grid carbon intensity, forecasts, carbon-aware planning and emissions.

Engine-neutral (imports neither Prefect nor Dask). The pieces, each in its own module:
providers (``providers/``) return :class:`IntensitySeries`; :func:`forecast_for` gives a forecast
(the provider's, or one made from history); :class:`Planner` turns forecasts and a :class:`Job`
into a :class:`Decision`; :mod:`~flowcache.carbon.emissions` and :mod:`~flowcache.carbon.records`
account for what actually ran; :func:`replan_with_provider` looks at a waiting job again with
fresher data (:mod:`~flowcache.carbon.replan`). See docs/carbon.md.
"""

from flowcache.carbon.cache import (
    CachedProvider,
    MemoryResponseCache,
    ResponseCache,
    StoreResponseCache,
)
from flowcache.carbon.capacity import CapacityLedger
from flowcache.carbon.constraints import Constraint, Ranking
from flowcache.carbon.decision import Decision, Job
from flowcache.carbon.emissions import PowerModel, emissions_g, energy_kwh, savings, sci
from flowcache.carbon.fallback import FallbackProvider, StaticProfile
from flowcache.carbon.forecasting.methods import forecast_for, forecast_from_history
from flowcache.carbon.planner import Planner, RegionPrice, plan_with_provider, run_now_at_home
from flowcache.carbon.providers import IntensityProvider, get_provider, register_provider
from flowcache.carbon.records import DecisionRecord, record_outcome, uptake
from flowcache.carbon.regions import Region, RegionMap
from flowcache.carbon.replan import ReplanStep, replan_step, replan_with_provider
from flowcache.carbon.series import IntensitySeries
from flowcache.errors import (
    CarbonError,
    ForecastNotSupported,
    MalformedResponse,
    NoIntensityData,
    ProviderAuthError,
    ProviderError,
    ProviderUnavailable,
    RegionNotFound,
)

__all__ = [
    "CachedProvider", "CapacityLedger", "CarbonError", "Constraint", "Decision",
    "DecisionRecord", "FallbackProvider", "ForecastNotSupported", "IntensityProvider",
    "IntensitySeries", "Job", "MalformedResponse", "MemoryResponseCache", "NoIntensityData",
    "Planner", "PowerModel", "ProviderAuthError", "ProviderError", "ProviderUnavailable",
    "Ranking", "Region", "RegionMap", "RegionNotFound", "RegionPrice", "ReplanStep",
    "ResponseCache",
    "StaticProfile", "StoreResponseCache", "emissions_g", "energy_kwh", "forecast_for",
    "forecast_from_history", "get_provider", "plan_with_provider", "record_outcome",
    "register_provider", "replan_step", "replan_with_provider", "run_now_at_home", "savings",
    "sci", "uptake",
]
