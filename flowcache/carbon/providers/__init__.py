"""Providers by name, fsspec-style: a registry of import paths, loaded on first use.

``get_provider("electricitymaps", token=...)`` builds one; ``register_provider`` adds a name.
Nothing here imports a provider module until it is asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

from flowcache.carbon.providers.base import BaseProvider, IntensityProvider
from flowcache.errors import ConfigError

PROVIDER_REGISTRY: dict[str, str] = {
    "electricitymaps": "flowcache.carbon.providers.electricitymaps.ElectricityMaps",
    "watttime": "flowcache.carbon.providers.watttime.WattTime",
    "ukgrid": "flowcache.carbon.providers.ukgrid.UKCarbonIntensity",
    "carbonaware": "flowcache.carbon.providers.carbonaware.CarbonAwareSDK",
    "files": "flowcache.carbon.providers.emcsv.ElectricityMapsCSV",
    "emcsv": "flowcache.carbon.providers.emcsv.ElectricityMapsCSV",
    "sdkjson": "flowcache.carbon.providers.sdkjson.CarbonAwareJSON",
    "static": "flowcache.carbon.fallback.StaticProvider",
}


def register_provider(name: str, import_path: str) -> None:
    """Map ``name`` to a provider class (``"pkg.module.Class"``)."""
    PROVIDER_REGISTRY[name] = import_path


def provider_class(name: str) -> type:
    try:
        path = PROVIDER_REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown carbon provider {name!r}; known: "
                          f"{', '.join(sorted(PROVIDER_REGISTRY))}") from None
    module_name, _, class_name = path.rpartition(".")
    return getattr(importlib.import_module(module_name), class_name)


def get_provider(name: str, **options: Any) -> IntensityProvider:
    """An instance of the provider registered as ``name``, built with ``options``."""
    return provider_class(name)(**options)


__all__ = ["PROVIDER_REGISTRY", "BaseProvider", "IntensityProvider", "get_provider",
           "provider_class", "register_provider"]
