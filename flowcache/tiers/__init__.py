"""Tiers by URL scheme, fsspec-style: a registry of import paths, loaded on first use.

``memory`` -> :class:`MemoryTier`; ``node`` (``node:///dir``) -> :class:`NodeTier`;
``redis://``, ``rediss://``, ``unix://``, ``redis+cluster://`` -> :class:`RedisTier`; any other
URL (a path, ``file://``, ``s3://``, ``gs://``, ``memory://``...) -> :class:`ObjectTier` over
fsspec. ``register_tier`` adds a scheme.
"""

from __future__ import annotations

import importlib
from typing import Any

from flowcache.tiers.base import BaseTier, Tier

TIER_REGISTRY: dict[str, str] = {
    "memory": "flowcache.tiers.memory.MemoryTier",
    "node": "flowcache.tiers.node.NodeTier",
    "redis": "flowcache.tiers.redis.RedisTier",
    "rediss": "flowcache.tiers.redis.RedisTier",
    "unix": "flowcache.tiers.redis.RedisTier",
    "redis+cluster": "flowcache.tiers.redis.RedisTier",
}
OBJECT_TIER = "flowcache.tiers.objects.ObjectTier"


def register_tier(scheme: str, import_path: str) -> None:
    """Map ``scheme`` to a tier class (``"pkg.module.Class"``) with a ``from_spec`` or URL init."""
    TIER_REGISTRY[scheme] = import_path


def tier_class(scheme: str) -> type:
    module_name, _, class_name = TIER_REGISTRY.get(scheme, OBJECT_TIER).rpartition(".")
    return getattr(importlib.import_module(module_name), class_name)


__all__ = ["TIER_REGISTRY", "BaseTier", "Tier", "register_tier", "tier_class"]


def __getattr__(name: str) -> Any:  # lazy: importing flowcache.tiers does not import redis
    lazy = {"MemoryTier": "flowcache.tiers.memory", "NodeTier": "flowcache.tiers.node",
            "RedisTier": "flowcache.tiers.redis",
            "ObjectTier": "flowcache.tiers.objects"}
    if name in lazy:
        return getattr(importlib.import_module(lazy[name]), name)
    raise AttributeError(name)
