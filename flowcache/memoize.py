"""Memoizing calls through the store: the engine-neutral half of the ``cache()`` task option.

``Memoizer`` turns one call of a function into a content key (function identity + bound,
canonicalised arguments), then reads the store or computes, writes durably and returns. Engine
glue (Prefect, Dask) supplies a :class:`CallContext` (task name, run id) and decides how to
present a hit; everything else, including per-run statistics, flow-scoped markers and chain
hashing, happens here once for every engine.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from flowcache.accounts.runstats import RUN_STATS, RunStats
from flowcache.config import default_fingerprinter, default_store
from flowcache.errors import UnhashableInput
from flowcache.frames import Header
from flowcache.keys.canonical import PROVENANCE, content_key, hash_inputs
from flowcache.keys.code import function_identity
from flowcache.keys.fingerprints import FileRef, Fingerprinter
from flowcache.lifetimes import KEEP, FlowScoped, Lifetime, parse_lifetime
from flowcache.manifest import RETURN, OutputCall, output_location
from flowcache.purge import tracker_for
from flowcache.store import TieredStore


@dataclass(frozen=True)
class CacheOptions:
    """What ``cache(...)`` was given, parsed once at decoration time."""

    lifetime: Lifetime = KEEP
    exclude: frozenset[str] = frozenset()
    key_fn: Callable[..., Any] | None = None
    refresh: bool = False
    store: TieredStore | None = None
    version: str | None = None
    serializer: str | None = None
    files: frozenset[str] = frozenset()
    fingerprinter: Fingerprinter | None = None
    outputs: frozenset[str] = frozenset()  # parameters (or "return") naming files it writes

    @classmethod
    def parse(cls, *, lifetime: Lifetime | str | float | timedelta | None = None,
              keep: bool | None = None, exclude: Iterable[str] = (),
              key_fn: Callable[..., Any] | None = None, refresh: bool = False,
              store: TieredStore | None = None, version: str | None = None,
              serializer: str | None = None, files: Iterable[str] = (),
              fingerprinter: Fingerprinter | None = None,
              outputs: Iterable[str] = ()) -> CacheOptions:
        if keep and lifetime is not None:
            raise TypeError("give either keep=True or lifetime=..., not both")
        if isinstance(exclude, str) or isinstance(files, str) or isinstance(outputs, str):
            raise TypeError("exclude=, files= and outputs= take a list of parameter names")
        if set(files) & set(outputs):
            raise TypeError("a parameter is an input file (files=) or an output (outputs=), "
                            f"not both: {', '.join(sorted(set(files) & set(outputs)))}")
        return cls(lifetime=KEEP if keep else parse_lifetime(lifetime),
                   exclude=frozenset(exclude), key_fn=key_fn, refresh=refresh, store=store,
                   version=version, serializer=serializer, files=frozenset(files),
                   fingerprinter=fingerprinter, outputs=frozenset(outputs))

    def resolve_store(self) -> TieredStore:
        return self.store if self.store is not None else default_store()

    def resolve_fingerprinter(self) -> Fingerprinter:
        return self.fingerprinter or default_fingerprinter()


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
    """Caches calls of ``fn`` in a store under content keys."""

    fn: Callable[..., Any]
    options: CacheOptions
    _signature: inspect.Signature | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._signature = inspect.signature(self.fn)
        unknown = (self.options.exclude | self.options.files
                   | (self.options.outputs - {RETURN})) - set(self._signature.parameters)
        if unknown:
            raise TypeError(f"{getattr(self.fn, '__qualname__', self.fn)} has no parameter(s) "
                            f"{', '.join(sorted(unknown))} (named in exclude=, files= or "
                            "outputs=)")

    def arguments(self, args: tuple, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        for name, param in self._signature.parameters.items():
            if param.kind is inspect.Parameter.VAR_KEYWORD and name in arguments:
                arguments.update({f"**{k}": v for k, v in arguments.pop(name).items()})
        return arguments

    def key_for(self, args: tuple, kwargs: Mapping[str, Any], context: CallContext,
                store: TieredStore) -> str:
        options = self.options
        arguments = self.arguments(args, kwargs)
        try:
            if options.key_fn is not None:
                inputs = {"key_fn": options.key_fn(**arguments)}
            else:
                inputs = {name: (FileRef(value) if name in options.files
                                 and isinstance(value, str) else value)
                          for name, value in arguments.items() if name not in options.exclude}
                for name in options.outputs & inputs.keys():  # where it writes, not what is there
                    inputs[name] = output_location(inputs[name])
            digest = hash_inputs(inputs, fingerprinter=options.resolve_fingerprinter())
        except UnhashableInput as exc:
            raise UnhashableInput(exc.param, exc.value_type, task=context.task_name,
                                  reason=exc.reason) from None
        return content_key(namespace=store.namespace, identity=function_identity(self.fn),
                           inputs_digest=digest, version=options.version)

    def call(self, args: tuple, kwargs: Mapping[str, Any], context: CallContext,
             compute: Callable[[], Any] | None = None) -> CallResult:
        """Return the cached result of ``fn(*args, **kwargs)``, computing it on a miss."""
        store = self.options.resolve_store()
        started = time.perf_counter()
        key = self.key_for(args, kwargs, context, store)
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
        if self.options.outputs:
            outputs = OutputCall.begin(self.options.outputs, self.arguments(args, kwargs),
                                       files=self.options.files, exclude=self.options.exclude,
                                       fingerprinter=self.options.resolve_fingerprinter())
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
