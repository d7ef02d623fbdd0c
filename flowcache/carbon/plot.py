"""A picture of a plan: each region's forecast with its 90 % interval, and the chosen window.

The x axis is absolute UTC time (the plan may be for another day, ``--at``); the chosen window
is drawn in a colour no region line uses and labelled with its region; every slot is drawn,
the last one included. matplotlib is an optional extra (``pip install flowcache[plot]``); it is
imported only here, and only when a plot is asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from flowcache.carbon.decision import Decision
from flowcache.carbon.forecasting.intervals import bounds
from flowcache.carbon.series import IntensitySeries
from flowcache.carbon.timestamps import iso

#: the chosen window's colour (gold); region lines use tab10 without its olive, so none is close
WINDOW_COLOUR = "#ffd700"
REGION_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                  "#7f7f7f", "#17becf")


def _pyplot() -> Any:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("plotting needs matplotlib: pip install 'flowcache[plot]'") from exc
    return plt


def _dates(epochs: np.ndarray) -> list[datetime]:
    return [datetime.fromtimestamp(float(t), UTC) for t in epochs]


def draw_plan(forecasts: Mapping[str, IntensitySeries], decision: Decision) -> Any:
    """The figure (for tests and callers who want to add to it); :func:`plot_plan` saves it."""
    plt = _pyplot()
    import matplotlib.dates as mdates

    fig, ax = plt.subplots(figsize=(9, 4))
    colours = REGION_COLOURS
    for i, (region, series) in enumerate(sorted(forecasts.items())):
        colour = colours[i % len(colours)]
        edges = np.r_[series.times, series.end]  # the last slot drawn to its end
        values = np.r_[series.values, series.values[-1:]]
        ax.step(_dates(edges), values, where="post", color=colour, label=region,
                linewidth=2.2 if region == decision.region else 1.2)
        band = bounds(series)
        if band is not None:
            lower, upper = (np.r_[b, b[-1:]] for b in band)
            ax.fill_between(_dates(edges), lower, upper, step="post", color=colour, alpha=0.12,
                            linewidth=0, label=f"{region} 90 % interval")
    for i, (a, b) in enumerate(decision.intervals):
        ax.axvspan(datetime.fromtimestamp(a, UTC), datetime.fromtimestamp(b, UTC), alpha=0.45,
                   color=WINDOW_COLOUR,
                   label=f"chosen window: {decision.region}" if i == 0 else None)
    ax.axvline(datetime.fromtimestamp(decision.planned_at, UTC), color="black", linewidth=0.8,
               linestyle=":", label=f"planned at {iso(decision.planned_at)}")
    locator = mdates.AutoDateLocator(tz=UTC)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel("gCO2eq/kWh")
    ax.set_title(decision.reason[:110], fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_plan(forecasts: Mapping[str, IntensitySeries], decision: Decision,
              path: str | Path) -> Path:
    fig = draw_plan(forecasts, decision)
    out = Path(path)
    fig.savefig(out, dpi=110)
    _pyplot().close(fig)
    return out
