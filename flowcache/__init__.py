"""flowcache: a tiered, content-addressed cache for task outputs, and carbon-aware scheduling.

The engine-neutral core. Prefect glue lives in ``prefect_cache``, Dask glue in ``dask_cache``;
this package imports neither.
"""

from flowcache import moved
from flowcache.config import StoreConfig, default_store, set_default_store
from flowcache.errors import (
    ConfigError,
    CorruptEntry,
    DurableWriteError,
    FlowcacheError,
    ForeignEntry,
    TierUnavailable,
    UnhashableInput,
    UnserializableResult,
)
from flowcache.frames import Entry, Frame, Header
from flowcache.identity import Identity
from flowcache.keys import FileRef, content_key, hash_inputs, register_hasher
from flowcache.lifetimes import FLOW, KEEP, TTL, FlowScoped, Keep, parse_lifetime
from flowcache.store import Outcome, TieredStore
from flowcache.tiers import register_tier
from flowcache.version import __version__

moved.install()  # the module paths of 0.1 that moved keep importing, with a warning

__all__ = [
    "FLOW", "KEEP", "TTL", "ConfigError", "CorruptEntry", "DurableWriteError", "Entry",
    "FileRef", "FlowScoped", "FlowcacheError", "ForeignEntry", "Frame", "Header", "Identity",
    "Keep", "Outcome", "StoreConfig", "TierUnavailable", "TieredStore", "UnhashableInput",
    "UnserializableResult", "__version__", "content_key", "default_store", "hash_inputs",
    "parse_lifetime", "register_hasher", "register_tier", "set_default_store",
]
