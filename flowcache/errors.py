"""The exceptions flowcache raises: each says what happened and what to do about it."""

from __future__ import annotations


class FlowcacheError(Exception):
    """Base class of every error flowcache raises on purpose."""


class UnhashableInput(FlowcacheError, TypeError):
    """An input cannot be turned into a content key.

    A silent cache miss (or worse, a key that ignores the input) would hide the problem, so the
    error names the parameter and the two ways out: exclude it or give a key function.
    """

    def __init__(self, param: str, value_type: type, *, task: str | None = None,
                 reason: str | None = None) -> None:
        self.param = param
        self.value_type = value_type
        self.task = task
        self.reason = reason
        owner = f" of task {task!r}" if task else ""
        why = f" ({reason})" if reason else ""
        type_name = f"{value_type.__module__}.{value_type.__qualname__}"
        super().__init__(
            f"parameter {param!r}{owner} cannot be hashed: a {type_name}{why}. "
            f"Exclude it with cache(exclude=[{param.split('.')[0].split('[')[0]!r}]), "
            "give the task a key_fn=, or register a hasher with "
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


class ConfigError(FlowcacheError, ValueError):
    """A store or tier configuration cannot be understood."""
