"""Reporting carbon-aware runs: the table of decisions, the totals, a chart, and their storage.

A runner produces one :class:`~flowcache.carbon.records.DecisionRecord` per carbon-aware task.
This module turns a run's records into rows a person reads (the same rows in a Prefect artifact
and in ``flowcache carbon report RUN``), keeps them in the flowcache store under the run's id so
the report can be printed later from anywhere, and draws the intensity forecast with the chosen
windows (matplotlib, optional).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import blake3

from flowcache.carbon.records import DecisionRecord
from flowcache.carbon.series import IntensitySeries
from flowcache.carbon.timestamps import iso


def records_key(run_id: str) -> str:
    """The store key under which a run's decision records live."""
    return blake3.blake3(f"flowcache-carbon-report/{run_id}".encode()).hexdigest()


def save_records(store: Any, run_id: str, records: Sequence[DecisionRecord],
                 meta: Mapping[str, Any] | None = None) -> str:
    """Store the run's records (JSON, kept until cleared); returns the key."""
    payload = json.dumps({"run": run_id, "records": [json.loads(r.to_json()) for r in records]},
                         allow_nan=False).encode()
    key = records_key(run_id)
    store.put(key, payload, meta={"kind": "carbon-report", "run": run_id, **(meta or {})},
              overwrite=True)
    return key


def load_records(store: Any, run_id: str) -> list[DecisionRecord]:
    """The records a runner stored for ``run_id`` (KeyError if there are none)."""
    data = json.loads(store.get(records_key(run_id)))
    return [DecisionRecord.from_dict(item) for item in data["records"]]


def _g(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 3)


def report_rows(records: Sequence[DecisionRecord]) -> list[dict[str, Any]]:
    """One row per task: the decision, what ran, realised grams and savings."""
    rows = []
    for record in records:
        decision = record.decision
        saved = record.saving_vs("now_home")
        base = record.now_home_g
        rows.append({
            "task": decision.job,
            "action": decision.action if decision.planned else "run-now (fallback)",
            "region": record.actual_region,
            "planned start": iso(decision.start),
            "actual start": iso(record.actual_start),
            "actual end": iso(record.actual_end),
            "expected g": _g(decision.expected_g),
            "realised g": _g(record.realised_g),
            "run now at home g": _g(base),
            "run at home then g": _g(record.then_home_g),
            "saved g": _g(saved),
            "saved %": _g(100.0 * saved / base) if saved is not None and base else None,
            "followed": record.followed,
            "why": decision.reason,
        })
    return rows


def totals(records: Sequence[DecisionRecord]) -> dict[str, float | None]:
    """Realised grams against the run-now-at-home and run-at-home counterfactuals, over the
    tasks whose emissions could be computed (``accounted``); the rest are ``unknown``, and
    with none accounted the grams are None (unknown), never zero."""
    done = [r for r in records if r.realised_g is not None and r.now_home_g is not None]
    realised = sum(r.realised_g for r in done)  # type: ignore[misc]
    now_home = sum(r.now_home_g for r in done)  # type: ignore[misc]
    then = [r.then_home_g for r in done if r.then_home_g is not None]
    known = bool(done)
    return {"tasks": float(len(records)), "accounted": float(len(done)),
            "unknown": float(len(records) - len(done)),
            "realised_g": realised if known else None,
            "now_home_g": now_home if known else None,
            "then_home_g": sum(then) if then else None,
            "saved_g": now_home - realised if known else None,
            "saved_pct": 100.0 * (now_home - realised) / now_home if known and now_home
            else None,
            "deferred": float(sum(r.decision.delay > 1.0 for r in records)),
            "relocated": float(sum(r.actual_region != r.decision.home for r in records)),
            "fallbacks": float(sum(r.decision.fallback for r in records))}


def grams(value: float | None, digits: int = 1) -> str:
    """Grams for a person: the number, or "unknown"."""
    return "unknown" if value is None or not math.isfinite(value) else f"{value:.{digits}f} g"


def percent(value: float | None) -> str:
    return "unknown" if value is None or not math.isfinite(value) else f"{value:.1f} %"


def summary_line(records: Sequence[DecisionRecord]) -> str:
    t = totals(records)
    head = (f"carbon: {int(t['tasks'])} carbon-aware tasks ({int(t['deferred'])} deferred, "
            f"{int(t['relocated'])} relocated, {int(t['fallbacks'])} on fallback); ")
    if not t["accounted"]:
        return head + "emissions unknown (no intensity history for when and where they ran)"
    unknown = f"; {int(t['unknown'])} unknown" if t["unknown"] else ""
    return head + (f"realised {grams(t['realised_g'])}CO2eq vs {grams(t['now_home_g'])} running "
                   f"now at home: saved {grams(t['saved_g'])} ({percent(t['saved_pct'])})"
                   f"{unknown}")


def chart_png(records: Sequence[DecisionRecord], forecasts: Mapping[str, IntensitySeries]
              ) -> bytes | None:
    """The forecasts with each task's window shaded; None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    from datetime import UTC, datetime

    figure, axis = plt.subplots(figsize=(9, 3.6), dpi=100)
    for region, series in sorted(forecasts.items()):
        times = [datetime.fromtimestamp(t, UTC) for t in series.times]
        axis.step(times, series.values, where="post", label=region)
    for record in records:
        for start, end in record.decision.intervals:
            axis.axvspan(datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC),
                         alpha=0.15, color="green")
    axis.set_ylabel("gCO2eq/kWh")
    axis.set_title("carbon intensity forecast and the chosen windows (shaded)")
    axis.legend(loc="upper right", fontsize="small")
    figure.autofmt_xdate()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()
