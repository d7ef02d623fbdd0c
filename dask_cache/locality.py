"""Cache-aware placement, switched on for a cluster: ``enable_locality(client)``.

::

    client.register_plugin(dask_cache.CacheWorkerPlugin(config))   # the node tier
    enable_locality(client)                                         # then this
    dask_cache.compute(graph, client=client)   # loads run where their entry is on local disk

Opt-in, because it changes where Dask runs tasks: a load of an entry that one host's node tier
holds is restricted (loosely) to that host's workers. The scheduler plugin is registered before
the worker plugin, so the first reports find it. See docs/scaling.md ("Many hosts").
"""

from __future__ import annotations

from typing import Any

from dask_cache.locality_scheduler import (
    DEFAULT_MAX_ENTRIES,
    LocalitySchedulerPlugin,
)
from dask_cache.locality_worker import LocalityWorkerPlugin
from flowcache.errors import ConfigError

__all__ = ["disable_locality", "enable_locality", "entry_nodes", "locality_stats",
           "set_placement"]


def enable_locality(client: Any, *, max_entries: int = DEFAULT_MAX_ENTRIES,
                    interval: float = 0.25, place: bool = True) -> None:
    """Register the locality plugins on ``client``'s cluster.

    ``max_entries``: how many entries the scheduler remembers (about 200 bytes each);
    ``interval``: seconds between a worker's reports; ``place=False`` only collects reports
    (see :func:`set_placement`).
    """
    if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
        raise ConfigError(f"enable_locality(max_entries={max_entries!r}): give a positive "
                          f"number of entries, e.g. max_entries={DEFAULT_MAX_ENTRIES}")
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) \
            or not 0 < interval <= 60:
        raise ConfigError(f"enable_locality(interval={interval!r}): give the seconds between "
                          "reports, more than 0 and at most 60, e.g. interval=0.25")
    client.register_plugin(LocalitySchedulerPlugin(max_entries, place=place))
    client.register_plugin(LocalityWorkerPlugin(float(interval)))


def disable_locality(client: Any) -> None:
    """Remove both plugins: workers stop reporting, the scheduler forgets what it knew and
    places tasks as Dask does by itself. Nothing to do if they are not registered."""
    worker_plugins, scheduler_plugins = client.run_on_scheduler(_registered)
    if LocalityWorkerPlugin.name in worker_plugins:
        client.unregister_worker_plugin(LocalityWorkerPlugin.name)
    if LocalitySchedulerPlugin.name in scheduler_plugins:
        client.unregister_scheduler_plugin(LocalitySchedulerPlugin.name)


def _registered(dask_scheduler: Any) -> tuple[list[str], list[str]]:
    return list(dask_scheduler.worker_plugins), list(dask_scheduler.plugins)


def _set_placement(dask_scheduler: Any, place: bool) -> bool:
    plugin = dask_scheduler.plugins.get(LocalitySchedulerPlugin.name)
    if plugin is None:
        return False
    plugin.place = place
    return True


def set_placement(client: Any, place: bool) -> None:
    """Place tasks by locality (True) or only keep collecting reports (False)."""
    if not client.run_on_scheduler(_set_placement, place=bool(place)):
        raise ConfigError("set_placement: the scheduler has no locality plugin; call "
                          "dask_cache.locality.enable_locality(client) first")


def _stats(dask_scheduler: Any) -> dict[str, Any]:
    plugin = dask_scheduler.plugins.get(LocalitySchedulerPlugin.name)
    return plugin.stats() if plugin is not None else {}


def locality_stats(client: Any) -> dict[str, Any]:
    """What the scheduler knows: entries per node, tasks placed, entries forgotten."""
    return client.run_on_scheduler(_stats)


def _entry_nodes(dask_scheduler: Any, keys: list[str]) -> dict[str, list[str]]:
    plugin = dask_scheduler.plugins.get(LocalitySchedulerPlugin.name)
    return plugin.nodes_of(keys) if plugin is not None else {}


def entry_nodes(client: Any, keys: list[str]) -> dict[str, list[str]]:
    """The nodes (``host:node directory``) whose node tier holds each of ``keys``, as the
    scheduler knows them (a key it does not know maps to an empty list)."""
    return client.run_on_scheduler(_entry_nodes, keys=list(keys))
