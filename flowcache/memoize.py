"""Memoizing calls through the store: the engine-neutral half of the ``cache()`` task option.

``Memoizer`` turns one call of a function into a content key (function identity + bound,
canonicalised arguments), then reads the store or computes, writes durably and returns. Engine
glue (Prefect, Dask) supplies a :class:`CallContext` (task name, run id) and decides how to
present a hit; everything else, including per-run statistics, flow-scoped markers and chain
hashing, happens here once for every engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from flowcache.accounts.runstats import RUN_STATS, RunStats
from flowcache.config import default_store
from flowcache.frames import Header
from flowcache.keys.canonical import PROVENANCE
from flowcache.keys.fingerprints import Fingerprinter
from flowcache.keys.recipe import CACHE_REMEDY, KeyRecipe, bind_arguments
from flowcache.lifetimes import KEEP, FlowScoped, Lifetime, parse_lifetime
from flowcache.manifest import OutputCall
from flowcache.purge import tracker_for
from flowcache.store import TieredStore


@dataclass(frozen=True)
class CacheOptions:
    """What ``cache(...)`` was given, parsed once at decoration time: the key recipe, and
    where and for how long results are kept."""

    recipe: KeyRecipe = field(default_factory=KeyRecipe)
    lifetime: Lifetime = KEEP
    refresh: bool = False
    store: TieredStore | None = None
    serializer: str | None = None

    @classmethod
    def parse(cls, *, lifetime: Lifetime | str | float | timedelta | None = None,
              keep: bool | None = None, exclude: Iterable[str] = (),
              key_fn: Callable[..., Any] | None = None, refresh: bool = False,
              store: TieredStore | None = None, version: str | None = None,
              serializer: str | None = None, files: Iterable[str] = (),
              fingerprinter: Fingerprinter | None = None,
              outputs: Iterable[str] = (), remedy: str = CACHE_REMEDY) -> CacheOptions:
        if keep and lifetime is not None:
            raise TypeError("give either keep=True or lifetime=..., not both")
        recipe = KeyRecipe.parse(exclude=exclude, files=files, outputs=outputs, key_fn=key_fn,
                                 version=version, fingerprinter=fingerprinter, remedy=remedy)
        return cls(recipe=recipe, lifetime=KEEP if keep else parse_lifetime(lifetime),
                   refresh=refresh, store=store, serializer=serializer)

    def resolve_store(self) -> TieredStore:
        return self.store if self.store is not None else default_store()


@dataclass(frozen=True)
class CallContext:
    """What the engine knows about one call: names for the key's errors and the stats."""

    task_name: str
    run_id: str | None = None
    flow_name: str | None = None


@dataclass(frozen=True)
class CallResult:
    value: Any
    hit: bool
    key: str
    tier: str | None
    header: Header
    seconds: float


@dataclass
class Memoizer:
    """Caches calls of ``fn`` in a store under content keys (made by the options' recipe)."""

    fn: Callable[..., Any]
    options: CacheOptions

    def __post_init__(self) -> None:
        self.options.recipe.check(self.fn)

    def arguments(self, args: tuple, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        return bind_arguments(self.fn, args, kwargs)

    def key_for(self, args: tuple, kwargs: Mapping[str, Any], context: CallContext,
                store: TieredStore) -> str:
        return self._key(self.arguments(args, kwargs), context, store)

    def _key(self, arguments: Mapping[str, Any], context: CallContext,
             store: TieredStore) -> str:
        return self.options.recipe.key(self.fn, arguments, namespace=store.namespace,
                                       fingerprinter=store.fingerprinter, task=context.task_name)

    def call(self, args: tuple, kwargs: Mapping[str, Any], context: CallContext,
             compute: Callable[[], Any] | None = None) -> CallResult:
        """Return the cached result of ``fn(*args, **kwargs)``, computing it on a miss."""
        store = self.options.resolve_store()
        started = time.perf_counter()
        arguments = self.arguments(args, kwargs)
        key = self._key(arguments, context, store)
        lifetime = self.options.lifetime
        if isinstance(lifetime, FlowScoped):
            lifetime = FlowScoped(context.run_id, lifetime.max_age)
        meta = {"task": context.task_name}
        if context.flow_name:
            meta["flow"] = context.flow_name
        if context.run_id:
            meta["run"] = context.run_id

        def before_write() -> None:
            if isinstance(lifetime, FlowScoped) and lifetime.run_id:
                tracker_for(store).record(lifetime.run_id, key)

        compute = compute or (lambda: self.fn(*args, **kwargs))
        outputs = None
        recipe = self.options.recipe
        if recipe.outputs:
            outputs = OutputCall.begin(recipe, arguments,
                                       fingerprinter=recipe.fingerprinter or store.fingerprinter)
            compute = outputs.timed(compute)
        outcome = store.get_or_compute(
            key, compute, lifetime=lifetime, meta=meta,
            serializer=self.options.serializer, refresh=self.options.refresh,
            before_write=before_write)
        if outputs is not None and not outcome.hit:
            outputs.finish(outcome.value, key=key, nbytes=outcome.header.size,
                           workflow=context.flow_name or context.task_name,
                           task=context.task_name, run_id=context.run_id)
        seconds = time.perf_counter() - started
        PROVENANCE.remember(outcome.value, key)
        stats = self._stats(context)
        if stats is not None:
            if outcome.hit:
                stats.record_hit(context.task_name, hit_seconds=seconds,
                                 compute_seconds=float(outcome.header.meta.get("compute_seconds",
                                                                                0.0)))
            else:
                stats.record_miss(context.task_name, nbytes=outcome.header.size,
                                  compute_seconds=float(outcome.header.meta.get(
                                      "compute_seconds", seconds)))
        return CallResult(outcome.value, outcome.hit, key, outcome.tier, outcome.header, seconds)

    @staticmethod
    def _stats(context: CallContext) -> RunStats | None:
        return RUN_STATS.for_run(context.run_id) if context.run_id else None
