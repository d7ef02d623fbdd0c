"""The tier contract: every operation the store, the ledger and operators use, with defaults.

A tier stores opaque frames under names (``"alice/ab/ab12..."``); it knows nothing of keys,
users or serialization: the store composes tiers. Like fsspec's ``AbstractFileSystem``, the
contract is complete: :class:`Tier` lists every operation any caller uses, and
:class:`BaseTier` gives a default for each one a backend may leave out, so callers never ask
``hasattr`` and never patch a tier. A new backend is one module: subclass :class:`BaseTier`,
implement ``get``, ``put``, ``exists``, ``delete`` and ``scan`` (and ``from_url`` if its URL
needs more than the options it declares), then ``register_tier("scheme", YourTier)``.

Errors: a tier raises :class:`~flowcache.errors.TierUnavailable` when its backend cannot be
reached (the store then carries on without a hot tier), and lets other errors propagate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable

from flowcache.frames import Frame

log = logging.getLogger("flowcache.tiers")

#: ``listener(name, nbytes, reason)``: a frame left a tier by the tier's own doing
RemovalListener = Callable[[str, int, str], None]


@runtime_checkable
class Tier(Protocol):
    #: short name used in logs, stats and the ledger ("memory", "redis", "object")
    name: str
    #: the source of truth: writes here are confirmed, and it is never skipped
    durable: bool
    #: frames here never left this process, so their MAC need not be re-checked
    trusted: bool
    #: copies here live and die with this process (the ledger bills them per process)
    process_local: bool
    #: frames larger than this are not stored (None: no limit)
    max_item_bytes: int | None

    def get(self, name: str) -> Frame | None:
        """The frame stored under ``name``, or ``None``."""

    def get_into(self, name: str, into: memoryview | None) -> Frame | None:
        """Like ``get``; a tier that can reads the payload straight into ``into``."""

    def put(self, name: str, frame: Frame, *, ttl: float | None = None,
            exclusive: bool = False) -> None:
        """Store ``frame``; with ``exclusive``, raise ``FileExistsError`` if ``name`` exists."""

    def exists(self, name: str) -> bool: ...

    def delete(self, name: str) -> bool:
        """Remove ``name``; True if something was removed."""

    def scan(self, prefix: str = "") -> Iterator[str]:
        """Names stored under ``prefix``."""

    def scan_sizes(self, prefix: str = "") -> Iterator[tuple[str, int | None]]:
        """``(name, size)`` under ``prefix``, from one listing where the backend gives sizes
        (None where it does not)."""

    def head(self, name: str, nbytes: int) -> bytes | None:
        """The first ``nbytes`` of a frame (its header), without reading the whole frame."""

    def size(self, name: str) -> int | None:
        """The stored frame's size in bytes, or None if there is no such frame."""

    def accepts(self, nbytes: int) -> bool:
        """Whether a frame of ``nbytes`` may be stored here at all."""

    def purge_namespace(self, namespace: str) -> list[str]:
        """Remove everything stored for ``namespace``; return the names removed."""

    def sweep_debris(self, namespace: str, older_than: float) -> int:
        """Remove what interrupted writes of ``namespace`` left behind (temporary files,
        parts without their entry), untouched for ``older_than`` seconds; return how many."""

    def add_removal_listener(self, listener: RemovalListener) -> None:
        """Call ``listener(name, nbytes, reason)`` when the tier drops a frame by itself
        (an eviction, an expiry): never for a ``delete`` a caller asked for."""

    def health(self) -> list[str]:
        """Ask the backend whether it can serve: raise if not (unreachable, no such bucket),
        else return what an operator should know (warnings; empty when all is well)."""

    def describe(self) -> str: ...

    def close(self) -> None: ...

    @classmethod
    def check_url(cls, url: str) -> None: ...

    @classmethod
    def from_url(cls, url: str, *, storage_options: Mapping[str, Mapping[str, Any]]
                 | None = None, **options: Any) -> Tier: ...


class BaseTier:
    """Defaults for everything a backend may leave out."""

    name = "tier"
    durable = False
    trusted = False
    process_local = False
    max_item_bytes: int | None = None
    #: options a tier URL's query may set, and their kinds (``size``, ``bool``, ``str``,
    #: ``int``, ``float``): :mod:`flowcache.config` parses them and rejects any other
    url_options: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def check_url(cls, url: str) -> None:
        """Refuse, with a :class:`~flowcache.errors.ConfigError` saying how to write it, a URL
        (query removed) this tier could not use: checked at configuration time, before
        anything connects."""

    @classmethod
    def from_url(cls, url: str, *, storage_options: Mapping[str, Mapping[str, Any]]
                 | None = None, **options: Any) -> BaseTier:
        """Build the tier a store URL names; ``options`` are its parsed ``url_options``."""
        return cls(**options)

    # -- the primitives ----------------------------------------------------------------------
    def get(self, name: str) -> Frame | None:
        raise NotImplementedError

    def put(self, name: str, frame: Frame, *, ttl: float | None = None,
            exclusive: bool = False) -> None:
        raise NotImplementedError

    def exists(self, name: str) -> bool:
        raise NotImplementedError

    def delete(self, name: str) -> bool:
        raise NotImplementedError

    def scan(self, prefix: str = "") -> Iterator[str]:
        raise NotImplementedError

    # -- optional, with defaults -------------------------------------------------------------
    def get_into(self, name: str, into: memoryview | None) -> Frame | None:
        """Like ``get``, but a tier that can reads the payload straight into ``into`` (a
        writable buffer of the payload's expected size); this default returns the frame as
        it is and the caller copies."""
        return self.get(name)

    def scan_sizes(self, prefix: str = "") -> Iterator[tuple[str, int | None]]:
        for name in self.scan(prefix):
            yield name, None

    def head(self, name: str, nbytes: int) -> bytes | None:
        frame = self.get(name)
        return None if frame is None else bytes(frame.read(0, min(nbytes, frame.nbytes)))

    def size(self, name: str) -> int | None:
        frame = self.get(name)
        return None if frame is None else frame.nbytes

    def accepts(self, nbytes: int) -> bool:
        return self.max_item_bytes is None or nbytes <= self.max_item_bytes

    def purge_namespace(self, namespace: str) -> list[str]:
        """Delete each name listed under ``<namespace>/`` (a backend with more per-namespace
        state, like Redis' leases and index, overrides this)."""
        return [name for name in list(self.scan(f"{namespace}/")) if self.delete(name)]

    def sweep_debris(self, namespace: str, older_than: float) -> int:
        """This default has nothing to sweep: its writes leave nothing behind."""
        return 0

    def add_removal_listener(self, listener: RemovalListener) -> None:
        listeners = self.removal_listeners
        if listener not in listeners:
            listeners.append(listener)

    def notify_removed(self, name: str, nbytes: int, reason: str) -> None:
        """Tell the removal listeners that the tier dropped ``name`` by itself."""
        for listener in list(self.removal_listeners):
            try:
                listener(name, nbytes, reason)
            except Exception:  # accounting must never break the tier
                log.exception("a removal listener of %s failed", self.describe())

    @property
    def removal_listeners(self) -> list[RemovalListener]:
        """Made on first use, so a subclass need not call ``BaseTier.__init__``."""
        return self.__dict__.setdefault("_removal_listeners", [])

    def health(self) -> list[str]:
        """This default asks whether a probe name exists: a round trip to the backend."""
        self.exists("flowcache-health/00/probe")
        return []

    def close(self) -> None:
        return None

    def describe(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"
