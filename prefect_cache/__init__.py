"""Prefect glue for flowcache: task options (``cache``, ``carbon``, ``files``), the carbon-aware
task runner, result storage, cache policy and flow hooks."""

from prefect_cache.carbon_option import carbon
from prefect_cache.carbon_runner import CarbonAwareTaskRunner
from prefect_cache.files import files
from prefect_cache.hooks import cache_hooks, purge_intermediates, report_cache_stats
from prefect_cache.options import cache
from prefect_cache.policy import CONTENT, ContentKey
from prefect_cache.storage import FlowcacheStorage

__all__ = ["CONTENT", "CarbonAwareTaskRunner", "ContentKey", "FlowcacheStorage", "cache",
           "cache_hooks", "carbon", "files", "purge_intermediates", "report_cache_stats"]
