"""Dask glue for flowcache: worker plugin with a node tier, graph caching, residency billing and
carbon-aware placement.

Importing it adds dask_cache's defaults to Dask's configuration under its own ``flowcache:`` key
(see :mod:`dask_cache.settings`), leaving everything else in Dask's config as it was. Servers
started from the command line install the plugins with ``--preload dask_cache.preload``."""

from dask_cache.settings import load_defaults

load_defaults()

from dask_cache.compute import compute, graph_of  # noqa: E402
from dask_cache.graph import GraphPlan, chain_keys, plan  # noqa: E402
from dask_cache.locality import disable_locality, enable_locality, locality_stats  # noqa: E402
from dask_cache.options import cache, carbon, session  # noqa: E402
from dask_cache.placement import CarbonPlacer, PlacedFuture  # noqa: E402
from dask_cache.plugin import CacheWorkerPlugin, worker_metrics  # noqa: E402
from dask_cache.scheduler import CacheSchedulerPlugin, scheduler_residency  # noqa: E402
from dask_cache.tasks import graph_counters  # noqa: E402
from flowcache.version import __version__  # noqa: E402

__all__ = ["CacheSchedulerPlugin", "CacheWorkerPlugin", "CarbonPlacer", "GraphPlan",
           "PlacedFuture", "__version__", "cache", "carbon", "chain_keys", "compute",
           "disable_locality", "enable_locality", "graph_counters", "graph_of", "locality_stats",
           "plan", "scheduler_residency", "session", "worker_metrics"]
