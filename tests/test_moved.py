"""Module paths that moved in the reorganisation still import, with a DeprecationWarning."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from flowcache.moved import MOVED


def test_old_paths_forward_to_the_new_homes_and_warn():
    code = ("import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
            "try:\n    from flowcache.access import Identity\nexcept DeprecationWarning as w:\n"
            "    print('warned:', w)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "flowcache.access has moved: import from flowcache.identity" in out
    with pytest.warns(DeprecationWarning, match="flowcache.carbon.forecast has moved"):
        old = importlib.import_module("flowcache.carbon.forecast")
    from flowcache.carbon.forecasting.seasonal import clip_spikes
    from flowcache.identity import Identity

    assert old.clip_spikes is clip_spikes
    with pytest.warns(DeprecationWarning, match="flowcache.access has moved"):
        assert importlib.import_module("flowcache.access").Identity is Identity
    with pytest.warns(DeprecationWarning, match="flowcache.entry has moved"), \
            pytest.raises(AttributeError, match="no 'nothing'"):
        importlib.import_module("flowcache.entry").nothing  # noqa: B018


@pytest.mark.parametrize("old", sorted(MOVED))
def test_every_new_home_exists(old):
    for home in MOVED[old]:
        importlib.import_module(home)
