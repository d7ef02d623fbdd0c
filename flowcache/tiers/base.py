"""The tier protocol: the five primitives every storage tier implements, and nothing else.

A tier stores opaque frames under names (``"alice/ab/ab12..."``); it knows nothing of keys, users
or serialization: the store composes tiers. Adding a backend means one module that implements
``get``, ``put``, ``exists``, ``delete`` and ``scan`` (``head`` and ``close`` have defaults).

Errors: a tier raises :class:`~flowcache.errors.TierUnavailable` when its backend cannot be
reached (the store then carries on without a hot tier), and lets other errors propagate.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from flowcache.entry import Frame


@runtime_checkable
class Tier(Protocol):
    #: short name used in logs, stats and the ledger ("memory", "redis", "object")
    name: str
    #: the source of truth: writes here are confirmed, and it is never skipped
    durable: bool
    #: frames here never left this process, so their MAC need not be re-checked
    trusted: bool
    #: frames larger than this are not stored (None: no limit)
    max_item_bytes: int | None

    def get(self, name: str) -> Frame | None:
        """The frame stored under ``name``, or ``None``."""

    def put(self, name: str, frame: Frame, *, ttl: float | None = None,
            exclusive: bool = False) -> None:
        """Store ``frame``; with ``exclusive``, raise ``FileExistsError`` if ``name`` exists."""

    def exists(self, name: str) -> bool: ...

    def delete(self, name: str) -> bool:
        """Remove ``name``; True if something was removed."""

    def scan(self, prefix: str = "") -> Iterator[str]:
        """Names stored under ``prefix``."""

    def head(self, name: str, nbytes: int) -> bytes | None:
        """The first ``nbytes`` of a frame (its header), without reading the whole frame."""

    def close(self) -> None: ...


class BaseTier:
    """Defaults for the optional primitives."""

    name = "tier"
    durable = False
    trusted = False
    max_item_bytes: int | None = None

    def get(self, name: str) -> Frame | None:
        raise NotImplementedError

    def get_into(self, name: str, into: memoryview | None) -> Frame | None:
        """Like ``get``, but a tier that can reads the payload straight into ``into`` (a
        writable buffer of the payload's expected size); others return their frame as it is
        and the caller copies."""
        return self.get(name)

    def head(self, name: str, nbytes: int) -> bytes | None:
        frame = self.get(name)
        return None if frame is None else bytes(frame.read(0, min(nbytes, frame.nbytes)))

    def accepts(self, nbytes: int) -> bool:
        return self.max_item_bytes is None or nbytes <= self.max_item_bytes

    def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"

    def describe(self) -> str:
        return self.name
