"""Honest uncertainty on real grid data: do the 90 % prediction intervals cover 90 % of what
happened, and what does risk-aware deferral do to the saving and to the decisions that turned
out worse than running at once?

Used by ``bench/carbon_eval.py`` (which computes the forecasts once): for the default method
(the ensemble), every hourly decision of the year gets the interval a live runner would have
had (:func:`flowcache.carbon.replay.rolling_offsets`: the weighted split-conformal quantiles of
the errors known by then, per horizon, recalibrated every hour). ``--tune`` chooses, on
January-June only, the calibration window and weighting (the candidate whose coverage is
closest to 90 % at its worst horizon) and the risk tolerance (the largest saving with
at most 5 % of decisions worse than running at once); July-December is reported, never tuned on.
"""

from __future__ import annotations

import numpy as np

from flowcache.carbon.forecasting.intervals import CALIBRATION_DAYS, HALF_LIFE_DAYS, LEVELS
from flowcache.carbon.replay import coverage, defer_hourly_risk, rolling_offsets
from flowcache.carbon.risk import DEFAULT_TOLERANCE

LOW, HIGH = LEVELS.index(0.05), LEVELS.index(0.95)  # the 90 % interval
METHOD = "ensemble"
DELAY = 8
#: (calibration days, half-life in days; None: unweighted)
CANDIDATES = ((28, None), (56, None), (56, 14.0), (56, 7.0), (84, 21.0))
TOLERANCES = (0.05, 0.1, 0.25, 0.5)


def interval_figures(zones: dict, cache: dict, halves, days: float = CALIBRATION_DAYS,
                     half_life: float | None = HALF_LIFE_DAYS, every: int = 1,
                     tolerances: tuple[float, ...] = (DEFAULT_TOLERANCE, 0.05)) -> dict:
    """Coverage by horizon (1-24 h) and deferral figures at each risk tolerance (and without
    risk-awareness), per zone and half of the year."""
    out: dict = {"days": days, "half_life_days": half_life, "zones": {}}
    for zone, series in zones.items():
        origins, fc = cache[zone]
        forecast, v = fc[METHOD], series.values
        offsets = rolling_offsets(v, origins, forecast, days, half_life, every=every)
        parts = halves(series, origins)
        zone_out: dict = {}
        for part in ("h1", "h2"):
            mask = parts[part]
            best = defer_hourly_risk(v, origins, fc["oracle"], offsets, DELAY, 0.95,
                                     risk_aware=False, mask=mask).outcome.saving
            runs = {"off": defer_hourly_risk(v, origins, forecast, offsets, DELAY, 0.95,
                                             risk_aware=False, mask=mask)}
            for tolerance in tolerances:
                runs[str(tolerance)] = defer_hourly_risk(v, origins, forecast, offsets, DELAY,
                                                         1 - tolerance, risk_aware=True,
                                                         mask=mask)
            zone_out[part] = {
                "coverage_by_horizon": [round(float(c), 4) for c in
                                        coverage(v, origins, forecast, offsets, LOW, HIGH,
                                                 mask)[:24]],
                "risk": {name: {
                    "capture": r.outcome.saving / best if best else float("nan"),
                    "deferred_share": r.deferred / r.decisions,
                    "worse_share": r.worse / r.decisions,
                    "worse_of_deferred": r.worse / max(1, r.deferred),
                    "predicted_worse_of_deferred": r.predicted_worse}
                    for name, r in runs.items()},
            }
        out["zones"][zone] = zone_out
    out["summary"] = {part: _summary(out["zones"], part) for part in ("h1", "h2")}
    return out


def _summary(zones: dict, part: str) -> dict:
    cover = np.array([z[part]["coverage_by_horizon"] for z in zones.values()])
    pooled = cover.mean(axis=0)  # each horizon, over all the zones' hours
    names = next(iter(zones.values()))[part]["risk"]
    risk = {name: {key: float(np.mean([z[part]["risk"][name][key] for z in zones.values()]))
                   for key in next(iter(zones.values()))[part]["risk"][name]}
            for name in names}
    return {"coverage_by_horizon": [round(float(c), 4) for c in pooled],
            "coverage_min_horizon": float(pooled.min()),
            "coverage_max_horizon": float(pooled.max()),
            "coverage_zone_min": float(cover.min()), "coverage_zone_max": float(cover.max()),
            "risk": risk}


def tune(zones: dict, cache: dict, halves) -> dict:
    """The calibration and the risk tolerance, chosen on January-June (see the docstring)."""
    scores = {}
    for days, half_life in CANDIDATES:
        h1 = interval_figures(zones, cache, halves, days, half_life, every=6,
                              tolerances=())["summary"]["h1"]
        low, high = h1["coverage_min_horizon"], h1["coverage_max_horizon"]
        scores[(days, half_life)] = max(abs(low - 0.9), abs(high - 0.9))
        print(f"  calibration {days} days, half-life {half_life or '-'}: January-June coverage "
              f"at horizons 1-24 h {100 * low:.2f}-{100 * high:.2f} % (worst miss "
              f"{100 * scores[(days, half_life)]:.2f} points)")
    days, half_life = min(scores, key=lambda c: scores[c])
    h1 = interval_figures(zones, cache, halves, days, half_life, every=6,
                          tolerances=TOLERANCES)["summary"]["h1"]["risk"]
    for name, figures in h1.items():
        print(f"  risk tolerance {name}: January-June capture {100 * figures['capture']:.1f} %, "
              f"worse than at once {100 * figures['worse_share']:.1f} % of decisions")
    allowed = [t for t in TOLERANCES if h1[str(t)]["worse_share"] <= 0.05]
    tolerance = max(allowed, key=lambda t: h1[str(t)]["capture"]) if allowed else None
    print(f"  chosen: {days} days, half-life {half_life}, tolerance {tolerance}")
    return {"calibration_days": days, "half_life_days": half_life, "tolerance": tolerance}


def print_figures(figures: dict) -> None:
    print(f"\n90 % prediction intervals of the {METHOD} (weighted split-conformal, last "
          f"{figures['days']:g} days of errors, half-life {figures['half_life_days']} days), "
          f"and risk-aware deferral at W = {DELAY} h")
    for part, name in (("h1", "January-June"), ("h2", "July-December")):
        s = figures["summary"][part]
        print(f"  {name}: coverage by horizon {100 * s['coverage_min_horizon']:.1f}-"
              f"{100 * s['coverage_max_horizon']:.1f} % (any zone, any horizon "
              f"{100 * s['coverage_zone_min']:.1f}-{100 * s['coverage_zone_max']:.1f} %)")
        for risk, r in s["risk"].items():
            label = "not risk-aware" if risk == "off" else f"tolerance {risk}"
            print(f"    {label:16} capture {100 * r['capture']:5.1f} %  deferred "
                  f"{100 * r['deferred_share']:5.1f} %  worse than at once "
                  f"{100 * r['worse_share']:5.1f} % of decisions "
                  f"({100 * r['worse_of_deferred']:4.1f} % of deferrals; predicted "
                  f"{100 * r['predicted_worse_of_deferred']:4.1f} %)")
    for zone, z in figures["zones"].items():
        cover = z["h2"]["coverage_by_horizon"]
        off, on = z["h2"]["risk"]["off"], z["h2"]["risk"][str(DEFAULT_TOLERANCE)]
        print(f"  {zone:8} July-December coverage {100 * min(cover):.1f}-"
              f"{100 * max(cover):.1f} %  capture {100 * off['capture']:.1f} -> "
              f"{100 * on['capture']:.1f} %  worse {100 * off['worse_share']:.1f} -> "
              f"{100 * on['worse_share']:.1f} %")
