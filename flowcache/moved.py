"""Module paths of flowcache 0.1 that moved, still importable for a while, with a warning.

The core was reorganised into floors (``identity``, ``frames``, ``keys/``, ``accounts/``,
``carbon/forecasting/``...). Code written against the old paths (``from flowcache.access import
Identity``) keeps working: importing an old path gives a module that looks each name up in the
modules that now hold it, and warns once, with a ``DeprecationWarning``, where to import from.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType
from typing import Any

#: old module -> the modules that hold its names now, searched in order
MOVED: dict[str, tuple[str, ...]] = {
    "flowcache.access": ("flowcache.identity", "flowcache.admin", "flowcache.errors"),
    "flowcache.entry": ("flowcache.frames",),
    "flowcache.events": ("flowcache.listeners",),
    "flowcache.lifecycle": ("flowcache.purge", "flowcache.processes"),
    "flowcache.ledger": ("flowcache.accounts.ledger", "flowcache.accounts.evictions",
                         "flowcache.processes"),
    "flowcache.ledger_backends": ("flowcache.accounts.backends",),
    "flowcache.billing": ("flowcache.accounts.billing",),
    "flowcache.runstats": ("flowcache.accounts.runstats",),
    "flowcache.code_identity": ("flowcache.keys.code",),
    "flowcache.fingerprints": ("flowcache.keys.fingerprints",),
    "flowcache.provenance": ("flowcache.keys.provenance",),
    "flowcache.clocks": ("flowcache.carbon.clocks",),
    "flowcache.deferral": ("flowcache.carbon.deferral", "flowcache.carbon.dispatch"),
    "flowcache.carbon.errors": ("flowcache.errors",),
    "flowcache.carbon.forecast": ("flowcache.carbon.forecasting.methods",
                                  "flowcache.carbon.forecasting.seasonal"),
    "flowcache.carbon.blend": ("flowcache.carbon.forecasting.blend",),
    "flowcache.carbon.ensemble": ("flowcache.carbon.forecasting.ensemble",),
    "flowcache.carbon.holtwinters": ("flowcache.carbon.forecasting.holtwinters",),
    "flowcache.carbon.cli": ("flowcache.cli.carbon",),
}


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old paths in :data:`MOVED` and makes forwarding modules for them."""

    def find_spec(self, fullname: str, path: Any = None,
                  target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # the default module object

    def exec_module(self, module: ModuleType) -> None:
        homes = MOVED[module.__name__]
        warnings.warn(f"{module.__name__} has moved: import from {' or '.join(homes)} "
                      "(the old path will be removed)", DeprecationWarning, stacklevel=2)

        def forward(name: str) -> Any:
            for home in homes:
                target = importlib.import_module(home)
                if hasattr(target, name):
                    return getattr(target, name)
            raise AttributeError(f"{module.__name__} (moved to {' or '.join(homes)}) has no "
                                 f"{name!r}")

        module.__getattr__ = forward  # type: ignore[method-assign]
        module.__doc__ = f"Moved to {' and '.join(homes)}."


def install() -> None:
    """Put the finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(MovedModules())
