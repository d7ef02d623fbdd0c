"""``--preload dask_cache.preload``: flowcache on Dask servers started from the command line.

::

    dask scheduler --preload dask_cache.preload
    dask worker tcp://scheduler:8786 --preload dask_cache.preload

A cluster started by a job script or a deployment has no client to call ``register_plugin``
before its first task, so Dask's preload hook does it as each server starts: a worker gets
:class:`~dask_cache.plugin.CacheWorkerPlugin` (the store with its node tier, before it takes
any task), a scheduler :class:`~dask_cache.scheduler.CacheSchedulerPlugin`. Both read their
configuration from the server's environment, where a job script puts it: ``FLOWCACHE_*`` for
the store (the same user and signing key as the clients) and ``DASK_FLOWCACHE__*`` (or Dask
YAML files) for dask_cache's settings. A configuration error stops the server from starting,
with the error in its log, rather than leaving a worker that caches nothing or caches elsewhere.
A client that later registers its own ``CacheWorkerPlugin`` replaces the preloaded one on the
workers (same name); the scheduler keeps its preloaded ``CacheSchedulerPlugin`` (it is
idempotent: a client's registration of another one is skipped).
"""

from __future__ import annotations

from typing import Any

from distributed import Scheduler, Worker

from dask_cache.plugin import CacheWorkerPlugin
from dask_cache.scheduler import CacheSchedulerPlugin
from dask_cache.settings import DaskCacheSettings
from flowcache.config import StoreConfig
from flowcache.errors import ConfigError


async def dask_setup(server: Any) -> None:
    """Dask's preload hook: install the plugin that fits ``server``."""
    DaskCacheSettings.current()  # a bad setting stops the server here, named
    config = StoreConfig.from_env()
    if isinstance(server, Worker):
        await server.plugin_add(CacheWorkerPlugin(config), catch_errors=False)
    elif isinstance(server, Scheduler):
        plugin = CacheSchedulerPlugin(config)
        await server.register_scheduler_plugin(plugin, plugin.name, idempotent=True)
    else:
        raise ConfigError(f"dask_cache.preload installs flowcache on a worker or a scheduler, "
                          f"not on a {type(server).__name__}: pass it with --preload, not "
                          "--preload-nanny")
