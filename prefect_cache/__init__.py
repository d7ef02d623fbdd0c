"""Prefect glue for flowcache: task options (``cache``, ``carbon``, ``files``), the carbon-aware
task runner, result storage, cache policy and flow hooks.

Importing it sends flowcache's warnings raised inside a Prefect run to that run's logs (see
:mod:`prefect_cache.run_logs`)."""

from flowcache.version import __version__
from prefect_cache.carbon_option import carbon
from prefect_cache.carbon_runner import CarbonAwareTaskRunner
from prefect_cache.files import files
from prefect_cache.hooks import cache_hooks, purge_intermediates, report_cache_stats
from prefect_cache.options import cache
from prefect_cache.policy import CONTENT, ContentKey
from prefect_cache.run_logs import install as _install_run_logs
from prefect_cache.storage import FlowcacheStorage

_install_run_logs()

__all__ = ["CONTENT", "CarbonAwareTaskRunner", "ContentKey", "FlowcacheStorage", "__version__",
           "cache", "cache_hooks", "carbon", "files", "purge_intermediates", "report_cache_stats"]
