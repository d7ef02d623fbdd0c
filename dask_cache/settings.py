"""dask_cache's configuration: defaults from ``dask_cache.yaml``, read through ``dask.config``.

Parsed once into a typed value (:class:`DaskCacheSettings`) at the edge, like the rest of
flowcache's configuration; ``DASK_CACHE__*`` environment variables override the defaults the
usual Dask way (``DASK_CACHE__NODE_BYTES=8GiB`` sets ``cache.node-bytes``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dask.config
import yaml

from flowcache.units import parse_size

_DEFAULTS = Path(__file__).with_name("dask_cache.yaml")


def load_defaults() -> None:
    """Register the defaults with dask.config (idempotent; called on import)."""
    with open(_DEFAULTS) as handle:
        defaults = yaml.safe_load(handle)
    dask.config.update_defaults(defaults)
    dask.config.refresh()


@dataclass(frozen=True)
class DaskCacheSettings:
    node_dir: str | None
    node_bytes: int
    min_compute_seconds: float
    load_bandwidth: int
    load_latency: float
    files: bool

    @classmethod
    def current(cls) -> DaskCacheSettings:
        get = dask.config.get
        return cls(node_dir=get("cache.node-dir", None),
                   node_bytes=parse_size(str(get("cache.node-bytes", "2GiB"))),
                   min_compute_seconds=float(get("cache.min-compute-seconds", 0.001)),
                   load_bandwidth=parse_size(str(get("cache.load-bandwidth", "500MB"))),
                   load_latency=float(get("cache.load-latency", 0.002)),
                   files=bool(get("cache.files", True)))
