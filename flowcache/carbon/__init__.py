"""flowcache.carbon: grid carbon intensity, forecasts, carbon-aware planning and emissions.

Engine-neutral (imports neither Prefect nor Dask).
"""
