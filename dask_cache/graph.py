"""Graph-level caching: chain-hashed keys for every task of a Dask graph, and the rewrite.

Every task's content key is a hash of its function (code, including project helpers), its
literal arguments (file paths by their version) and its dependencies' content keys: graphchain's
idea, on flowcache keys. A key is therefore known before anything runs, and never needs the
dependencies' *values*: large intermediates are not re-hashed.

The rewrite walks the graph from the requested outputs down: a task whose key is stored
becomes a load and its subtree is not visited, so upstream work that nothing else needs is
pruned; every other task is wrapped so that it stores its result (durably, confirmed) when
computing it took longer than loading it would (the requested results are always stored).
"""

from __future__ import annotations

import functools
import os
import re
import time
from collections import ChainMap
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import blake3
from dask._task_spec import (
    Alias,
    DataNode,
    GraphNode,
    NestedContainer,
    Task,
    TaskRef,
    _execute_subgraph,
)

from dask_cache.settings import DaskCacheSettings
from dask_cache.tasks import ALWAYS, LoadPolicy, compute_and_store, load
from flowcache.keys.canonical import KeyBuilder, content_key
from flowcache.keys.fingerprints import FileRef
from flowcache.lifetimes import KEEP, Lifetime
from flowcache.store import TieredStore

_URL = re.compile(r"^(s3|s3a|gs|gcs|file)://", re.IGNORECASE)


@dataclass
class GraphPlan:
    """What the rewrite decided: which keys load, which compute (and store), and the keys."""

    graph: dict[Hashable, GraphNode]
    outputs: list[Hashable]
    chain: dict[Hashable, str]
    loads: set[Hashable] = field(default_factory=set)
    computes: set[Hashable] = field(default_factory=set)
    pruned: int = 0
    keying_seconds: float = 0.0

    def summary(self) -> str:
        return (f"flowcache graph: {len(self.loads)} tasks loaded from the cache, "
                f"{len(self.computes)} computed, {self.pruned} pruned; keyed "
                f"{len(self.chain)} tasks in {self.keying_seconds * 1000:.1f} ms")


def chain_keys(dsk: Mapping[Hashable, GraphNode], *, namespace: str,
               files: bool = True, builder: KeyBuilder | None = None) -> dict[Hashable, str]:
    """The content key of every node, dependencies first."""
    keys: dict[Hashable, str] = {}
    for key in _topological(dsk):
        node = dsk[key]
        hasher = blake3.blake3()
        _feed_node(hasher, node, keys, files, builder or KeyBuilder())
        keys[key] = content_key(namespace=namespace, identity=b"dask-task",
                                inputs_digest=hasher.digest())
    return keys


def plan(dsk: Mapping[Hashable, GraphNode], outputs: Iterable[Hashable], store: TieredStore,
         *, settings: DaskCacheSettings | None = None, lifetime: Lifetime = KEEP,
         token: str | None = None) -> GraphPlan:
    """Rewrite ``dsk`` so that stored results load and the rest computes and stores."""
    settings = settings or DaskCacheSettings.current()
    outputs = list(outputs)
    started = time.perf_counter()
    chain = chain_keys(dsk, namespace=store.namespace, files=settings.files)
    keyed = time.perf_counter() - started
    policy = LoadPolicy(settings.min_compute_seconds, settings.load_bandwidth,
                        settings.load_latency)
    result = GraphPlan(graph={}, outputs=outputs, chain=chain, keying_seconds=keyed)
    visited: set[Hashable] = set()
    wanted = set(outputs)
    stack = list(reversed(outputs))
    while stack:
        key = stack.pop()
        if key in visited:
            continue
        visited.add(key)
        node = dsk[key]
        if _cacheable(node) and store.exists(chain[key]):
            result.loads.add(key)
            result.graph[key] = Task(key, load, chain[key], _label(node), token)
            continue
        if _cacheable(node):
            result.computes.add(key)
            # the requested results are always kept: they are what a re-run asks for first
            chosen = ALWAYS if key in wanted else policy
            result.graph[key] = Task(key, functools.partial(
                compute_and_store, node.func, chain[key], chosen, _label(node), lifetime,
                token),
                *node.args, **node.kwargs)
        else:
            result.graph[key] = node
            if key in wanted:  # an alias or container of results: what it holds is wanted
                wanted.update(node.dependencies)
        stack.extend(node.dependencies)
    result.pruned = len(dsk) - len(visited)
    return result


def _cacheable(node: GraphNode) -> bool:
    return isinstance(node, Task) and not isinstance(node, NestedContainer)


def _label(node: GraphNode) -> str:
    key = node.key
    name = key[0] if isinstance(key, tuple) and key else key
    return str(name)[:80]


def _topological(dsk: Mapping[Hashable, GraphNode]) -> list[Hashable]:
    order: list[Hashable] = []
    state: dict[Hashable, int] = {}
    for root in dsk:
        if root in state:
            continue
        stack = [(root, iter(dsk[root].dependencies))]
        state[root] = 1
        while stack:
            key, deps = stack[-1]
            for dep in deps:
                if dep in dsk and dep not in state:
                    state[dep] = 1
                    stack.append((dep, iter(dsk[dep].dependencies)))
                    break
            else:
                stack.pop()
                state[key] = 2
                order.append(key)
    return order


def _feed_node(hasher: Any, node: Any, keys: Mapping[Hashable, str], files: bool,
               builder: KeyBuilder) -> None:
    """Canonical bytes of a node: dependencies by their content keys, literals by value."""
    if isinstance(node, TaskRef):
        hasher.update(b"ref:" + _dependency(keys, node.key))
    elif isinstance(node, Alias):
        hasher.update(b"alias:" + _dependency(keys, node.target))
    elif isinstance(node, DataNode):
        hasher.update(b"data:" + builder.value_digest(_literal(node.value, files), "data"))
    elif isinstance(node, Task) and node.func is _execute_subgraph:
        hasher.update(b"subgraph:" + _subgraph_key(node, keys, files, builder).encode())
    elif isinstance(node, Task):
        hasher.update(b"task:" + type(node).__name__.encode())
        if not isinstance(node, NestedContainer):
            hasher.update(builder.value_digest(node.func, "func"))
        for arg in node.args:
            _feed_arg(hasher, arg, keys, files, builder)
        for name in sorted(node.kwargs):
            hasher.update(b"kw:" + name.encode())
            _feed_arg(hasher, node.kwargs[name], keys, files, builder)
    else:
        hasher.update(b"value:" + builder.value_digest(_literal(node, files), "value"))


def _subgraph_key(node: Task, keys: Mapping[Hashable, str], files: bool,
                  builder: KeyBuilder) -> str:
    """A fused task's content is its inner graph's output: key it like a graph of its own, so
    the (random, per-call) names of the fused keys do not leak into the content key."""
    inner, outkey = node.args[0], node.args[1]
    local: ChainMap[Hashable, str] = ChainMap({}, keys)
    for key in _topological(inner):
        hasher = blake3.blake3()
        _feed_node(hasher, inner[key], local, files, builder)
        local.maps[0][key] = hasher.hexdigest()
    return local[outkey]


def _dependency(keys: Mapping[Hashable, str], key: Hashable) -> bytes:
    # a key outside the graph (a future already on the cluster) has no content key: its name
    # is all we know, so results depending on it are only reused for that very future
    return keys[key].encode() if key in keys else repr(key).encode()


def _feed_arg(hasher: Any, arg: Any, keys: Mapping[Hashable, str], files: bool,
              builder: KeyBuilder) -> None:
    if isinstance(arg, (GraphNode, TaskRef)):
        _feed_node(hasher, arg, keys, files, builder)
    elif isinstance(arg, dict):
        hasher.update(b"dict:" + str(len(arg)).encode())
        for name in sorted(arg, key=repr):
            hasher.update(builder.value_digest(name, "key"))
            _feed_arg(hasher, arg[name], keys, files, builder)
    elif isinstance(arg, (list, tuple)):
        hasher.update(f"{type(arg).__name__}:{len(arg)}".encode())
        for item in arg:
            _feed_arg(hasher, item, keys, files, builder)
    else:
        hasher.update(b"lit:" + builder.value_digest(_literal(arg, files), "argument"))


def _literal(value: Any, files: bool) -> Any:
    """A string naming an existing file (or a remote URL) is keyed by the file's version."""
    if files and isinstance(value, str) and 0 < len(value) < 4096:
        if _URL.match(value):
            return FileRef(value)
        if (os.sep in value or "." in value) and os.path.isfile(value):
            return FileRef(value)
    return value
