"""Prefect glue for flowcache: the ``cache()`` task option, result storage, cache policy, hooks."""

from prefect_cache.hooks import cache_hooks, purge_intermediates, report_cache_stats
from prefect_cache.options import cache
from prefect_cache.policy import CONTENT, ContentKey
from prefect_cache.storage import FlowcacheStorage

__all__ = ["CONTENT", "ContentKey", "FlowcacheStorage", "cache", "cache_hooks",
           "purge_intermediates", "report_cache_stats"]
