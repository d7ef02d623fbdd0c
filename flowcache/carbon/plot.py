"""A picture of a plan: each region's forecast and the window the planner chose.

matplotlib is an optional extra (``pip install flowcache[plot]``); it is imported only here, and
only when a plot is asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from flowcache.carbon.decision import Decision
from flowcache.carbon.series import IntensitySeries


def plot_plan(forecasts: Mapping[str, IntensitySeries], decision: Decision,
              path: str | Path) -> Path:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("plotting needs matplotlib: pip install 'flowcache[plot]'") from exc
    fig, ax = plt.subplots(figsize=(9, 4))
    for region, series in forecasts.items():
        hours = (series.times - decision.planned_at) / 3600.0
        ax.step(hours, series.values, where="post", label=region,
                linewidth=2.2 if region == decision.region else 1.2)
    for a, b in decision.intervals:
        ax.axvspan((a - decision.planned_at) / 3600.0, (b - decision.planned_at) / 3600.0,
                   alpha=0.2, color="green", label="chosen window")
    ax.set_xlabel("hours from now")
    ax.set_ylabel("gCO2eq/kWh")
    ax.set_title(decision.reason[:110], fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
