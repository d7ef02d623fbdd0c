"""``dask_cache.compute``: ``dask.compute`` with graph-level caching.

::

    total = dask_cache.compute(pipeline)             # like dask.compute(pipeline)
    total, plan = dask_cache.compute(pipeline, return_plan=True)
    print(plan.summary())   # "12 tasks loaded from the cache, 3 computed, 480 pruned"

Works with anything ``dask.compute`` takes (delayed, bag, array, dataframe, several at once):
the collections are turned into one optimised graph the way Dask does it, the graph is rewritten
by :func:`dask_cache.graph.plan`, and the result runs on the given client (a distributed
cluster) or on Dask's default scheduler.
"""

from __future__ import annotations

import os
from typing import Any

import dask
from dask._expr import FinalizeCompute
from dask._task_spec import convert_legacy_graph
from dask.base import collections_to_expr, get_scheduler, unpack_collections
from dask.core import flatten

from dask_cache.graph import GraphPlan, plan
from dask_cache.scheduler import session_run_id
from dask_cache.settings import DaskCacheSettings
from dask_cache.tasks import LOCAL_STORES
from flowcache.config import default_store
from flowcache.lifetimes import FlowScoped, Lifetime, parse_lifetime
from flowcache.store import TieredStore


def graph_of(*collections: Any, optimize_graph: bool = True) -> tuple[dict, list]:
    """The task-spec graph and output keys Dask would compute for ``collections``."""
    expr = FinalizeCompute(collections_to_expr(list(collections), optimize_graph)).optimize()
    dsk = convert_legacy_graph(dict(expr.__dask_graph__()))
    return dsk, list(flatten(expr.__dask_keys__()))


def compute(*args: Any, store: TieredStore | None = None, client: Any = None,
            scheduler: str | None = None, optimize_graph: bool = True,
            lifetime: Lifetime | str | None = None, return_plan: bool = False,
            settings: DaskCacheSettings | None = None) -> Any:
    """Compute dask collections, loading what is cached and storing what was worth storing.

    ``lifetime="flow"`` (with a ``client``) makes the stored results intermediates of the
    client's session: :class:`~dask_cache.scheduler.CacheSchedulerPlugin` purges them when the
    client disconnects.
    """
    collections, repack = unpack_collections(*args)
    if not collections:
        return (args, None) if return_plan else args
    dsk, keys = graph_of(*collections, optimize_graph=optimize_graph)
    store = store if store is not None else default_store()
    chosen = parse_lifetime(lifetime)
    if isinstance(chosen, FlowScoped):
        if client is None:
            raise ValueError("lifetime='flow' needs a client: its session is the flow")
        chosen = FlowScoped(session_run_id(client.id), chosen.max_age)
    token = f"{os.getpid()}-{id(store)}"
    LOCAL_STORES[token] = store
    rewritten = plan(dsk, keys, store, settings=settings, lifetime=chosen, token=token)
    with dask.annotate(flowcache=True, flowcache_owner=store.namespace):
        results = _run(rewritten, client, scheduler, collections)
    packed = repack(results)
    return (packed, rewritten) if return_plan else packed


def _run(rewritten: GraphPlan, client: Any, scheduler: str | None, collections: list) -> Any:
    if client is not None:
        return client.get(rewritten.graph, rewritten.outputs, sync=True)
    schedule = get_scheduler(scheduler=scheduler, collections=collections)
    return schedule(rewritten.graph, rewritten.outputs)
