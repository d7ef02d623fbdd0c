"""The distribution's version, in one place: ``pyproject.toml`` reads it from here (setuptools'
dynamic version), and ``flowcache``, ``prefect_cache`` and ``dask_cache`` re-export it."""

__version__ = "0.1.0"
