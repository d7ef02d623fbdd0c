"""How much more of the oracle's saving could a forecaster built from the data's own past capture?
The evidence behind "The 72 % target" in docs/carbon-eval.md.

Every probe uses the 1 h job arriving every hour with an 8 h maximum delay (LCA intensity, the
shipped 2022 data or --csv files) and reports the mean capture over the zones, as
bench/carbon_eval.py does, for January-June, July-December and the year, plan once | re-plan:

* **ensemble**: flowcache's method, the reference.
* **sensitivity**: the ensemble's forecast with its first 1-4 hours replaced by the truth, or moved
  10 % / 25 % of the way to the truth at every hour (a dose of perfect information, not a
  realistic forecaster: it shows how strongly the decision responds to information).
* **per-hour ridge**: 24 x 9 ridge regressions (one per hour of the day and horizon) on 24 lagged
  changes, the same hour 1, 2 and 7 days back and the ensemble's members. Fitted *in sample* (on
  the very data it is scored on: not a forecaster, an upper bound for the model class) and under
  8-fold *blocked cross-validation* (each block of the year predicted by a model fitted on the
  other seven, with a 2-day gap: more data than any forecaster ever has, the future included).
* **pooled ridge**: the same regressions fitted on all zones at once (each scaled by its median
  hourly change over the past 14 days; hours in local standard time), blocked cross-validation;
  and its average with the ensemble (diversity).
* **gbm** (``--gbm``, needs ``pip install lightgbm``): gradient-boosted trees on the same features
  plus horizon, hour and weekday, blocked cross-validation.

None of these is a method flowcache could use (each sees data after its decisions); they bound
what more modelling of the same data could buy. Prints a table, then one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from carbon_eval import HORIZON, WARMUP, halves, load_zones

from flowcache.carbon.forecasting.ensemble import Ensemble
from flowcache.carbon.replay import defer_hourly, defer_hourly_replan

DELAY = 8
FOLDS = 8
GAP = 48  # hours between a held-out block and the data fitted for it
LOCAL = {"BE": 1, "CH": 1, "DE": 1, "FI": 2, "FR": 1, "GB": 0, "NL": 1, "CA-QC": -5}


class Zone:
    """One zone's series, decision origins, the ensemble's forecast and ridge features."""

    def __init__(self, name: str, series) -> None:
        self.name = name
        self.v = series.values
        n = self.v.size
        self.origins = np.arange(WARMUP, n - HORIZON)
        self.masks = halves(series, self.origins)
        model = Ensemble()
        clean = model.clean(self.v, 24)
        scored = model.scored_origins(self.origins, 24)
        parts = model.parts(clean, scored, DELAY + 1, 24, start=series.start)
        self.ensemble = model.combine(clean, scored, parts, self.origins, 24)  # = predict_block
        rows = np.searchsorted(scored, self.origins)
        o = self.origins
        self.truth = self.v[o[:, None] + np.arange(DELAY + 1)[None, :]]
        self.last = clean[o - 1]
        hours = np.floor((series.start + o * series.resolution) / 3600.0).astype(np.int64)
        self.hour = (hours + LOCAL.get(name, 0)) % 24
        self.weekday = (hours // 24 + 3) % 7
        steps = np.abs(np.diff(clean, prepend=clean[0]))
        window = np.lib.stride_tricks.sliding_window_view(np.r_[np.full(14 * 24, np.nan),
                                                                steps[:-1]], 14 * 24)
        with np.errstate(all="ignore"):
            scale = np.nanmedian(window[o], axis=1)
        self.scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        self.x, self.y = [], []
        for k in range(DELAY + 1):
            cols = [clean[o - 1 - j] - self.last for j in range(1, 25)]
            cols += [clean[o + k - 24 * d] - self.last for d in (1, 2, 7)]
            cols += [p[rows, k] - self.last for p in parts.values()]
            self.x.append(np.column_stack([*cols, np.ones(o.size)]))
            self.y.append(clean[o + k] - self.last)
        self.fold = (np.arange(o.size) * FOLDS) // o.size

    def train_rows(self, fold: int) -> np.ndarray:
        """Rows a model for ``fold`` may be fitted on: the other folds, GAP hours away."""
        idx = np.arange(self.origins.size)
        held = np.flatnonzero(self.fold == fold)
        return (idx < held[0] - GAP) | (idx > held[-1] + GAP)

    def capture(self, forecast: np.ndarray) -> dict[str, tuple[float, float]]:
        out = {}
        for part, mask in self.masks.items():
            best = defer_hourly(self.v, self.origins, self.truth, DELAY, mask).saving
            out[part] = tuple(defer(self.v, self.origins, forecast, DELAY, mask).saving / best
                              for defer in (defer_hourly, defer_hourly_replan))
        return out


def ridge(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    gram = x.T @ x
    return np.linalg.solve(gram + lam * np.trace(gram) / gram.shape[0] * np.eye(gram.shape[0]),
                           x.T @ y)


def per_hour(zone: Zone, lam: float, cross_validate: bool) -> np.ndarray:
    out = zone.ensemble.copy()
    for k in range(DELAY + 1):
        x, y = zone.x[k], zone.y[k]
        for h in range(24):
            here = zone.hour == h
            for fold in range(FOLDS if cross_validate else 1):
                test = here & (zone.fold == fold) if cross_validate else here
                fit = here & zone.train_rows(fold) if cross_validate else here
                out[test, k] = zone.last[test] + x[test] @ ridge(x[fit], y[fit], lam)
    return out


def pooled(zones: list[Zone], lam: float) -> list[np.ndarray]:
    out = [z.ensemble.copy() for z in zones]
    for k in range(DELAY + 1):
        for h in range(24):
            for fold in range(FOLDS):
                fit = [(z, (z.hour == h) & z.train_rows(fold)) for z in zones]
                x = np.concatenate([z.x[k][f] / z.scale[f, None] for z, f in fit])
                y = np.concatenate([z.y[k][f] / z.scale[f] for z, f in fit])
                coef = ridge(np.clip(x, -20, 20), np.clip(y, -20, 20), lam)
                for z, f in zip(zones, out, strict=True):
                    test = (z.hour == h) & (z.fold == fold)
                    xs = np.clip(z.x[k][test] / z.scale[test, None], -20, 20)
                    f[test, k] = z.last[test] + z.scale[test] * (xs @ coef)
    return out


def gbm(zone: Zone) -> np.ndarray:
    import lightgbm  # optional: only for --gbm

    n = zone.origins.size
    stacked = [np.column_stack([zone.x[k][:, :-1], np.full(n, k), zone.hour, zone.weekday])
               for k in range(DELAY + 1)]
    out = zone.ensemble.copy()
    for fold in range(FOLDS):
        fit = zone.train_rows(fold)
        model = lightgbm.LGBMRegressor(n_estimators=400, learning_rate=0.03, num_leaves=15,
                                       min_child_samples=100, subsample=0.8, subsample_freq=1,
                                       colsample_bytree=0.7, verbose=-1, n_jobs=2)
        model.fit(np.concatenate([s[fit] for s in stacked]),
                  np.concatenate([zone.y[k][fit] for k in range(DELAY + 1)]))
        test = zone.fold == fold
        for k in range(DELAY + 1):
            out[test, k] = zone.last[test] + model.predict(stacked[k][test])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", nargs="*", default=[], help="Electricity Maps format CSV files")
    parser.add_argument("--lam", type=float, default=0.1, help="ridge penalty (x mean diagonal)")
    parser.add_argument("--gbm", action="store_true", help="also gradient-boosted trees")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    zones = [Zone(name, s) for name, s in load_zones(args.csv, "lca").items()]
    probes: dict[str, list[np.ndarray]] = {"ensemble": [z.ensemble for z in zones]}
    for h in range(1, 5):
        probes[f"truth for hours 0-{h - 1}"] = [
            np.c_[z.truth[:, :h], z.ensemble[:, h:]] for z in zones]
    for share in (0.1, 0.25):
        probes[f"{share:.0%} of the way to the truth"] = [
            z.ensemble + share * (z.truth - z.ensemble) for z in zones]
    probes["per-hour ridge, in sample"] = [per_hour(z, args.lam, False) for z in zones]
    probes["per-hour ridge, blocked CV"] = [per_hour(z, args.lam, True) for z in zones]
    probes["pooled ridge, blocked CV"] = pooled(zones, args.lam)
    probes["ensemble + pooled ridge (CV), mean"] = [
        (z.ensemble + p) / 2 for z, p in zip(zones, probes["pooled ridge, blocked CV"],
                                             strict=True)]
    if args.gbm:
        probes["gbm, blocked CV"] = [gbm(z) for z in zones]
    results = {}
    print(f"{'probe':34} {'Jan-Jun':>13} {'Jul-Dec':>13} {'year':>13}   year by zone (plan once)")
    for name, forecasts in probes.items():
        caps = [z.capture(f) for z, f in zip(zones, forecasts, strict=True)]
        summary = {part: [float(np.mean([c[part][i] for c in caps])) for i in (0, 1)]
                   for part in ("h1", "h2", "year")}
        results[name] = {"mean": summary,
                         "zones": {z.name: c["year"] for z, c in zip(zones, caps, strict=True)}}
        cells = " ".join(f"{100 * a:5.1f} |{100 * b:5.1f}" for a, b in summary.values())
        by_zone = " ".join(f"{zone} {100 * c[0]:.0f}" for zone, c in results[name]["zones"].items())
        print(f"{name:34} {cells}   {by_zone}")
    runtime = time.perf_counter() - started
    print(f"runtime {runtime:.1f} s")
    print(json.dumps({"benchmark": "carbon_ceiling", "delay_h": DELAY, "lam": args.lam,
                      "probes": results, "runtime_s": runtime}, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
