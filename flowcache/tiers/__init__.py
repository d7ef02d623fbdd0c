"""Tiers by URL scheme, fsspec-style: a registry of classes (or import paths, loaded on use).

``memory`` -> :class:`MemoryTier`; ``node`` (``node:///dir``) -> :class:`NodeTier`;
``redis://``, ``rediss://``, ``unix://``, ``redis+cluster://`` -> :class:`RedisTier`; a path or
an fsspec URL (``file://``, ``s3://``, ``gs://``, ``memory://bucket/...``) -> :class:`ObjectTier`.
``register_tier("scheme", cls)`` adds a kind: ``FLOWCACHE_STORE`` then accepts ``scheme://...``
and builds it with ``cls.from_url``.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from flowcache.errors import ConfigError
from flowcache.tiers.base import BaseTier, RemovalListener, Tier

TIER_REGISTRY: dict[str, str | type] = {
    "memory": "flowcache.tiers.memory.MemoryTier",
    "node": "flowcache.tiers.node.NodeTier",
    "redis": "flowcache.tiers.redis.RedisTier",
    "rediss": "flowcache.tiers.redis.RedisTier",
    "unix": "flowcache.tiers.redis.RedisTier",
    "redis+cluster": "flowcache.tiers.redis.RedisTier",
}
_SCHEME = re.compile(r"^[a-z][a-z0-9.-]*$")
#: what every other scheme (and a bare path) names: fsspec's object stores
OBJECT_TIER = "flowcache.tiers.objects.ObjectTier"


def register_tier(scheme: str, tier: type | str) -> None:
    """Make ``scheme://...`` in a store spec build ``tier`` (a class, or ``"pkg.mod.Class"``).

    The class follows :class:`~flowcache.tiers.base.Tier` (subclass :class:`BaseTier` for the
    defaults); its ``url_options`` say which query options its URL takes.
    """
    scheme = scheme.lower()
    if not _SCHEME.match(scheme):
        raise ConfigError(f"register_tier(): {scheme!r} is not a URL scheme: use letters, "
                          "digits, '.' and '-', starting with a letter (e.g. 'mytier')")
    TIER_REGISTRY[scheme] = tier


def is_registered(scheme: str) -> bool:
    return scheme.lower() in TIER_REGISTRY


def tier_class(scheme: str) -> type:
    """The class of ``scheme``'s tiers (the object tier for schemes nobody registered)."""
    entry = TIER_REGISTRY.get(scheme.lower(), OBJECT_TIER)
    if isinstance(entry, type):
        return entry
    module_name, _, class_name = entry.rpartition(".")
    return getattr(importlib.import_module(module_name), class_name)


__all__ = ["OBJECT_TIER", "TIER_REGISTRY", "BaseTier", "RemovalListener", "Tier",
           "is_registered", "register_tier", "tier_class"]


def __getattr__(name: str) -> Any:  # lazy: importing flowcache.tiers does not import redis
    lazy = {"MemoryTier": "flowcache.tiers.memory", "NodeTier": "flowcache.tiers.node",
            "RedisTier": "flowcache.tiers.redis",
            "ObjectTier": "flowcache.tiers.objects"}
    if name in lazy:
        return getattr(importlib.import_module(lazy[name]), name)
    raise AttributeError(name)
