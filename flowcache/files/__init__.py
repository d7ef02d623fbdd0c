"""Cached file I/O: the ``flowcache::`` fsspec protocol, block cache, localize() and sweeping.

::

    pd.read_parquet("flowcache::s3://bucket/table.parquet")     # served from the tiers
    path = localize("s3://bucket/reference.fa")                  # a node-local copy
    sweep_files(store)                                           # drop copies of gone files

Importing this package registers the ``flowcache`` protocol with fsspec (the distribution's
``fsspec.specs`` entry point does the same without an import).
"""

import fsspec

from flowcache.errors import RemoteChanged, WeakVersion
from flowcache.files.blocks import DEFAULT_BLOCK_SIZE, BlockPolicy, BlockReader
from flowcache.files.consistency import ALWAYS, NEVER, Consistency, Every, parse_consistency
from flowcache.files.protocol import FlowcacheFileSystem, current_run_id, localize, run_scope
from flowcache.files.sweep import FileSweepReport, sweep_files
from flowcache.files.versions import Version

fsspec.register_implementation("flowcache", "flowcache.files.protocol.FlowcacheFileSystem",
                               clobber=True)

__all__ = [
    "ALWAYS", "DEFAULT_BLOCK_SIZE", "NEVER", "BlockPolicy", "BlockReader", "Consistency",
    "Every", "FileSweepReport", "FlowcacheFileSystem", "RemoteChanged", "Version",
    "WeakVersion", "current_run_id", "localize", "parse_consistency", "run_scope",
    "sweep_files",
]
