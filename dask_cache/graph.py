"""Graph-level caching: chain-hashed keys for every task of a Dask graph, and the rewrite.

Every task's content key is a hash of its function (code, including project helpers), its
literal arguments (file paths and URLs by their version) and its dependencies' content keys:
graphchain's idea, on flowcache keys. A key is therefore known before anything runs, and never
needs the dependencies' *values*: large intermediates are not re-hashed.

A task that calls a plain Python function is keyed by flowcache's one key recipe
(:class:`~flowcache.keys.recipe.KeyRecipe`), its arguments bound to the function's parameters
and each dependency standing in as its key: the same call has the same key here as through
``cache()`` or the ``CONTENT`` policy. Strings that are URLs or existing files are keyed by
version (the ``files`` setting), with the store's storage options. Other nodes (Dask's own
array and dataframe functions, fused subgraphs) are keyed by their structure.

The rewrite walks the graph from the requested outputs down: a task whose key is stored
becomes a load and its subtree is not visited, so upstream work that nothing else needs is
pruned; every other task is wrapped so that it stores its result (durably, confirmed) when
computing it took longer than loading it would (the requested results are always stored).
"""

from __future__ import annotations

import functools
import inspect
import time
import types
from collections import ChainMap
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import blake3
from dask._task_spec import (
    Alias,
    DataNode,
    Dict,
    GraphNode,
    List,
    NestedContainer,
    Set,
    Task,
    TaskRef,
    Tuple,
    _execute_subgraph,
)

from dask_cache.settings import DaskCacheSettings
from dask_cache.tasks import ALWAYS, LoadPolicy, compute_and_store, load
from flowcache.keys.canonical import KeyBuilder, content_key
from flowcache.keys.fingerprints import Fingerprinter
from flowcache.keys.provenance import Upstream
from flowcache.keys.recipe import KeyRecipe, detect_file, signature_of
from flowcache.lifetimes import KEEP, Lifetime
from flowcache.store import TieredStore

#: what an unhashable argument's error advises on this path (no per-task options here)
GRAPH_REMEDY = ("give its type a __flowcache_key__ method, pass it through a cached task, or "
                "compute that part of the graph with dask.compute")
GRAPH_RECIPE = KeyRecipe(detect_files=True, remedy=GRAPH_REMEDY)
_CONTAINERS = {List: list, Tuple: tuple, Set: set}


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
    #: the whole rewrite on the client: keying, existence checks, wrapping
    planning_seconds: float = 0.0

    def summary(self) -> str:
        return (f"flowcache graph: {len(self.loads)} tasks loaded from the cache, "
                f"{len(self.computes)} computed, {self.pruned} pruned; keyed "
                f"{len(self.chain)} tasks in {self.keying_seconds * 1000:.1f} ms")


def chain_keys(dsk: Mapping[Hashable, GraphNode], *, namespace: str, files: bool = True,
               fingerprinter: Fingerprinter | None = None) -> dict[Hashable, str]:
    """The content key of every node, dependencies first.

    ``fingerprinter`` reads the versions of file and URL arguments (the store's, with its
    storage options); ``files=False`` keys such strings by their text.
    """
    recipe = GRAPH_RECIPE if files else replace(GRAPH_RECIPE, detect_files=False)
    builder = KeyBuilder(fingerprinter=fingerprinter)
    keys: dict[Hashable, str] = {}
    for key in _topological(dsk):
        node = dsk[key]
        call = _plain_call(node, keys)
        if call is not None:
            func, arguments = call
            keys[key] = recipe.key(func, arguments, namespace=namespace,
                                   fingerprinter=fingerprinter, task=_label(node))
            continue
        hasher = blake3.blake3()
        _feed_node(hasher, node, keys, files, builder)
        keys[key] = content_key(namespace=namespace, identity=b"dask-task",
                                inputs_digest=hasher.digest())
    return keys


class _NotPlain(Exception):
    """A node's arguments hold something only the graph can compute (an inline task)."""


def _plain_call(node: GraphNode, keys: Mapping[Hashable, str]
                ) -> tuple[Callable[..., Any], dict[str, Any]] | None:
    """``(function, bound arguments)`` of a task calling a plain Python function, with each
    dependency as its :class:`Upstream` key; None for any other node."""
    if not isinstance(node, Task) or isinstance(node, NestedContainer) \
            or not isinstance(inspect.unwrap(node.func), types.FunctionType):
        return None
    try:
        args = [_argument(arg, keys) for arg in node.args]
        kwargs = {name: _argument(arg, keys) for name, arg in node.kwargs.items()}
        bound = signature_of(node.func).bind(*args, **kwargs)
    except (_NotPlain, TypeError, ValueError):
        return None
    bound.apply_defaults()
    return node.func, dict(bound.arguments)


def _argument(arg: Any, keys: Mapping[Hashable, str]) -> Any:
    """An argument as the value the call will see, dependencies as their keys."""
    if isinstance(arg, TaskRef):
        if arg.key not in keys:
            raise _NotPlain  # a future already on the cluster: no content key
        return Upstream(keys[arg.key])
    if isinstance(arg, DataNode):
        return _argument(arg.value, keys)
    if isinstance(arg, Dict):
        pairs = [_argument(item, keys) for item in arg.args]
        return dict(zip(pairs[::2], pairs[1::2], strict=True))
    if type(arg) in _CONTAINERS:
        return _CONTAINERS[type(arg)](_argument(item, keys) for item in arg.args)
    if isinstance(arg, (GraphNode, TaskRef)):
        raise _NotPlain
    if type(arg) in (list, tuple):
        return type(arg)(_argument(item, keys) for item in arg)
    if type(arg) is dict:
        return {name: _argument(value, keys) for name, value in arg.items()}
    return arg


def plan(dsk: Mapping[Hashable, GraphNode], outputs: Iterable[Hashable], store: TieredStore,
         *, settings: DaskCacheSettings | None = None, lifetime: Lifetime = KEEP,
         token: str | None = None) -> GraphPlan:
    """Rewrite ``dsk`` so that stored results load and the rest computes and stores."""
    settings = settings or DaskCacheSettings.current()
    outputs = list(outputs)
    started = time.perf_counter()
    chain = chain_keys(dsk, namespace=store.namespace, files=settings.files,
                       fingerprinter=store.fingerprinter)
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
    # in the graph's own order (the walk went outputs first): Dask breaks ties by it
    result.graph = {key: result.graph[key] for key in dsk if key in result.graph}
    result.planning_seconds = time.perf_counter() - started
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
    return detect_file(value) if files else value
