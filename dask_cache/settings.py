"""dask_cache's configuration: its defaults in Dask's config under ``flowcache:``, parsed once.

Why this shape. Dask's configuration is one global tree that Dask itself reads, so dask_cache
keeps to a key of its own (``flowcache``): the top-level ``cache`` key it once used is the
local scheduler's result cache (``dask/local.py`` stores task results in whatever mapping it
finds there), which broke plain ``dask.compute`` and, with task keys left in the copied config,
worker processes. Defaults are added with :func:`dask.config.update_defaults`, never with a
refresh, which would drop what the user set with ``dask.config.set``. Environment variables
follow Dask's rule: ``DASK_FLOWCACHE__NODE_BYTES=8GiB`` sets ``flowcache.node-bytes`` (read when
Dask is imported). Values stay plain YAML/JSON, because Dask ships its configuration to worker
processes as text.

:meth:`DaskCacheSettings.current` parses the section strictly at the edge, like the rest of
flowcache's configuration: an unknown key, a bad value, or a setting left under the old
``cache`` key is a :class:`~flowcache.errors.ConfigError` naming it and the fix, never a silent
default (a node-tier directory silently ignored would put data somewhere else).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.config
import yaml

from flowcache.errors import ConfigError, suggestion
from flowcache.units import parse_duration, parse_size

#: dask_cache's key in Dask's configuration
NAMESPACE = "flowcache"
#: the key flowcache 0.1 used: Dask's own local-scheduler result cache
LEGACY_NAMESPACE = "cache"
_DEFAULTS_FILE = Path(__file__).with_name("dask_cache.yaml")


@functools.cache
def defaults() -> dict[str, Any]:
    """The shipped defaults (``dask_cache.yaml``), loaded once: ``{"flowcache": {...}}``."""
    with open(_DEFAULTS_FILE) as handle:
        return yaml.safe_load(handle)


def load_defaults() -> None:
    """Add dask_cache's defaults to Dask's configuration (once per process; called on import).

    Only keys nobody has set change: values from Dask's YAML files, ``DASK_FLOWCACHE__*``
    variables and ``dask.config.set`` win, and nothing else in Dask's config is touched.
    """
    shipped = defaults()
    if any(registered is shipped for registered in dask.config.defaults):
        return
    dask.config.update_defaults(shipped)


def env_name(option: str) -> str:
    """``node-bytes`` -> ``DASK_FLOWCACHE__NODE_BYTES``."""
    return f"DASK_{NAMESPACE.upper()}__{option.upper().replace('-', '_')}"


def _setting(option: str) -> str:
    return f"{NAMESPACE}.{option} ({env_name(option)})"


def _node_dir(value: Any, option: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise ConfigError(f"{_setting(option)}={value!r} is not a directory: give a path, "
                          "e.g. /mnt/nvme/flowcache, or null for /dev/shm/flowcache-node-<uid>")
    return os.path.expanduser(os.fspath(value))


def _positive_size(value: Any, option: str) -> int:
    size = parse_size(value if isinstance(value, int) else str(value), _setting(option))
    if size <= 0:
        raise ConfigError(f"{_setting(option)}={value!r} must be more than 0 bytes; "
                          "use e.g. 2GiB")
    return size


def _duration(value: Any, option: str) -> float:
    return parse_duration(value, _setting(option))


def _flag(value: Any, option: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{_setting(option)}={value!r} is not a boolean: write true or false")
    return value


_PARSERS: dict[str, Callable[[Any, str], Any]] = {
    "node-dir": _node_dir, "node-bytes": _positive_size, "min-compute-seconds": _duration,
    "load-bandwidth": _positive_size, "load-latency": _duration, "files": _flag,
}


@dataclass(frozen=True)
class DaskCacheSettings:
    node_dir: str | None
    node_bytes: int
    min_compute_seconds: float
    load_bandwidth: int  # bytes per second
    load_latency: float
    files: bool

    @classmethod
    def current(cls, config: Mapping[str, Any] | None = None) -> DaskCacheSettings:
        """The settings in Dask's configuration now (or in ``config``, a Dask config tree),
        shipped defaults for what is unset; :class:`ConfigError` for anything wrong."""
        tree = dask.config.config if config is None else config
        _refuse_legacy(tree)
        section = tree.get(NAMESPACE)
        if section is None:
            section = {}
        if not isinstance(section, Mapping):
            raise ConfigError(f"Dask's config key {NAMESPACE!r} is {section!r}, not a mapping: "
                              f"write its options under it (e.g. {NAMESPACE}.node-bytes)")
        given: dict[str, Any] = {}
        for key, value in section.items():
            option = str(key).replace("_", "-")
            if option not in _PARSERS:
                raise ConfigError(f"unknown dask_cache setting {NAMESPACE}.{key} "
                                  f"({env_name(option)}){suggestion(option, _PARSERS)}; "
                                  f"known: {', '.join(_PARSERS)}")
            given[option] = value
        values = {**defaults()[NAMESPACE], **given}
        parsed = {option.replace("-", "_"): parse(values[option], option)
                  for option, parse in _PARSERS.items()}
        return cls(**parsed)


def _refuse_legacy(tree: Mapping[str, Any]) -> None:
    """flowcache 0.1's settings lived under ``cache`` (``DASK_CACHE__NODE_BYTES``): that key
    is Dask's local result cache, so they are neither read nor left to pass silently."""
    legacy = tree.get(LEGACY_NAMESPACE)
    if not isinstance(legacy, Mapping):
        return
    ours = sorted(str(key).replace("_", "-") for key in legacy
                  if isinstance(key, str) and key.replace("_", "-") in _PARSERS)
    if ours:
        option = ours[0]
        raise ConfigError(
            f"Dask's config has {LEGACY_NAMESPACE}.{option} (from "
            f"DASK_{LEGACY_NAMESPACE.upper()}__{option.upper().replace('-', '_')} or a "
            f"'{LEGACY_NAMESPACE}:' section in a Dask YAML file): dask_cache reads its settings "
            f"under '{NAMESPACE}:' now, and Dask's local scheduler takes '{LEGACY_NAMESPACE}' "
            f"for its own result cache, which breaks dask.compute. Rename it to "
            f"{env_name(option)} (or {NAMESPACE}.{option} in the YAML file)")
