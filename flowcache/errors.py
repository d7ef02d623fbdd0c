"""Every exception flowcache raises, in one hierarchy under :class:`FlowcacheError`.

Like httpx's: catch :class:`FlowcacheError` for anything flowcache refused or could not do, or a
subclass for one cause. Each also subclasses the builtin a caller would expect (``ValueError``
for bad values, ``OSError`` for storage, ``TimeoutError`` for waits), so code written against
the builtins keeps working. Each message says what happened and what to do about it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FlowcacheError(Exception):
    """Base class of every error flowcache raises on purpose."""


def suggestion(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'memory'?)`` when ``word`` looks like a typo of one of ``choices``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class UnhashableInput(FlowcacheError, TypeError):
    """An input cannot be turned into a content key.

    A silent cache miss (or worse, a key that ignores the input) would hide the problem, so the
    error names the parameter and the ways out on the caller's path (``remedy``, a sentence
    with ``{param!r}`` where the parameter's name goes: ``cache(exclude=[...])`` for the task
    option, ``CONTENT - "name"`` for the cache policy...), plus registering a hasher.
    """

    def __init__(self, param: str, value_type: type, *, task: str | None = None,
                 reason: str | None = None, remedy: str | None = None) -> None:
        self.param = param
        self.value_type = value_type
        self.task = task
        self.reason = reason
        self.remedy = remedy
        owner = f" of task {task!r}" if task else ""
        why = f" ({reason})" if reason else ""
        type_name = f"{value_type.__module__}.{value_type.__qualname__}"
        top = param.split(".")[0].split("[")[0].split(" ")[0]
        fix = (remedy or "leave it out of the key with exclude=[{param!r}] (on cache() or "
               "ContentKey) or key the call with a key_fn=").format(param=top)
        super().__init__(
            f"parameter {param!r}{owner} cannot be hashed: a {type_name}{why}. "
            f"To cache it, {fix}, or register a hasher for its type with "
            "flowcache.keys.register_hasher()."
        )


class UnserializableResult(FlowcacheError, TypeError):
    """A task result cannot be serialized, so it cannot be cached."""

    def __init__(self, value_type: type, cause: BaseException) -> None:
        self.value_type = value_type
        type_name = f"{value_type.__module__}.{value_type.__qualname__}"
        super().__init__(
            f"cannot serialize a {type_name} for the cache: {cause}. "
            "Return a picklable value, or pass a serializer that handles it "
            "(see flowcache.serializers)."
        )


class CorruptEntry(FlowcacheError, ValueError):
    """A stored frame failed verification (truncated, bit-flipped or not a flowcache frame).

    The payload of such a frame is never deserialized.
    """

    def __init__(self, key: str | None, reason: str) -> None:
        self.key = key
        self.reason = reason
        where = f" {key}" if key else ""
        super().__init__(f"cache entry{where} is corrupt: {reason}")


class ForeignEntry(CorruptEntry, PermissionError):
    """A frame was written (or signed) by another owner than the one reading it."""

    def __init__(self, key: str | None, owner: str, reader: str) -> None:
        self.owner = owner
        self.reader = reader
        FlowcacheError.__init__(
            self, f"cache entry {key} belongs to {owner!r}; {reader!r} may not read it"
        )
        self.key = key
        self.reason = "foreign owner"


class DurableWriteError(FlowcacheError, OSError):
    """The durable tier did not confirm a write; the entry does not exist anywhere."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        super().__init__(f"durable write of {key} failed: {reason}")


class TierUnavailable(FlowcacheError, ConnectionError):
    """A tier's backend cannot be reached right now (a hot tier the store can do without)."""


class TierRefused(FlowcacheError, OSError):
    """A tier's backend is up but refused this one operation (out of memory, busy, no
    permission, a value too large, no free connection): only the operation fails."""


class ConfigError(FlowcacheError, ValueError):
    """A store or tier configuration cannot be understood."""


class InvalidName(FlowcacheError, ValueError):
    """A key, run id or entry name is not one flowcache made (a path trick, free text)."""


class ForeignNamespace(FlowcacheError, PermissionError):
    """A name outside the caller's namespace was addressed: another user's entry."""

    def __init__(self, name: str, user: str) -> None:
        self.name = name
        self.user = user
        super().__init__(f"{name!r} is not in {user!r}'s namespace; a user may only read, list "
                         "and delete their own entries (operators: flowcache clear --user)")


class LockTimeout(FlowcacheError, TimeoutError):
    """Another producer of the same key held its lock for longer than the caller would wait."""


class LedgerRetry(FlowcacheError):
    """A ledger backend took some events and refused the others for now: retry ``events``."""

    def __init__(self, events: list, reason: str) -> None:
        self.events = events
        super().__init__(reason)


class ManifestError(FlowcacheError, ValueError):
    """A run manifest file exists but cannot be read as one."""


# -- cached files ---------------------------------------------------------------------------------
class RemoteChanged(FlowcacheError, OSError):
    """The remote file changed (or vanished) while it was read; reopen it to read the new one."""

    def __init__(self, url: str, detail: str = "") -> None:
        self.url = url
        super().__init__(f"{url} changed while it was being read{f' ({detail})' if detail else ''}"
                         "; open it again to read its current version")


class WeakVersion(FlowcacheError, ValueError):
    """A backend reports nothing that identifies a version of the file (no ETag, no mtime)."""


class OtherHostFile(FlowcacheError, LookupError):
    """A local file of another host: only a sweep on that host can check it."""


# -- carbon ---------------------------------------------------------------------------------------
# Catch :class:`ProviderError` to handle any failure of an intensity source (the planner turns one
# into "run now at home"), or a subclass to handle one cause. Parsers never let a ``KeyError`` or
# ``TypeError`` escape: a payload that is not the documented shape is a :class:`MalformedResponse`
# naming the field.


class CarbonError(FlowcacheError):
    """Base class of every error the carbon core raises on purpose."""


class ProviderError(CarbonError):
    """An intensity provider could not give the data asked for."""

    def __init__(self, provider: str, message: str) -> None:
        self.provider = provider
        super().__init__(f"{provider}: {message}")


class ProviderAuthError(ProviderError):
    """The provider refused the credentials (HTTP 401 or 403)."""


class RegionNotFound(ProviderError):
    """The provider does not know the region (HTTP 404, or a zone missing from a file)."""


class ProviderUnavailable(ProviderError):
    """The provider could not be reached or kept failing (timeouts, 429, 5xx) after retries."""


class MalformedResponse(ProviderError):
    """The provider answered, but not with the documented shape."""


class ForecastNotSupported(ProviderError):
    """The provider has no forecast for this region; forecast from its history instead."""


class UnknownRegion(CarbonError, ConfigError):
    """A region name is in no region map and cannot be used as a provider zone either."""

    def __init__(self, name: str, known: list[str] | None = None) -> None:
        self.name = name
        hint = ""
        if known:
            hint = f" Known regions include {', '.join(sorted(known)[:8])}..."
        super().__init__(
            f"unknown region {name!r}.{hint} Use a cloud region (e.g. 'aws:eu-central-1'), an "
            "Electricity Maps zone (e.g. 'DE'), or add it with RegionMap.with_overrides()."
        )


class NoIntensityData(CarbonError, ValueError):
    """A series does not cover the interval a computation needs."""


class InvalidJob(CarbonError, ValueError):
    """A job description is inconsistent (e.g. neither power nor energy, negative duration)."""
