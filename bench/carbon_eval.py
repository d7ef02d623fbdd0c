"""Carbon-aware scheduling on real grid data: how much of the perfect-foresight saving each
forecasting method captures when every decision is forecast from the past only.

Data: the shipped Electricity Maps 2022 hourly files (8 zones, LCA intensity; ODbL, attribution
"Electricity Maps"), or any CSV in that format with --csv; Let's Wait Awhile's 2020 data is read
from ../shared/data/carbon/lets-wait-awhile/ when present (never shipped).

Scenarios: a 1 h job every hour that may wait 4/8/12/24 h, under two protocols: "plan once"
(the start is fixed when the job arrives) and "re-plan" (the waiting job is looked at again every
hour with a fresh forecast, flowcache.carbon.replan); a nightly 30-minute job (nominal 01:00
UTC) that may move +-2 h or +-8 h, decided at the start of its window; a 1 h job every hour that
may wait 8 h and run in any of the European zones (plan once). Methods: Caribou's 7-day
hour-of-day mean and Holt-Winters, flowcache's previous blend, flowcache's ensemble (the
default), and the oracle (perfect foresight). Figures are reported for January-June (the tuning
half), July-December, and the whole year. Also times the planner on 10,000 jobs over 5 regions
x 48 h of 5-minute data.

--tune searches the ensemble's hyperparameters on January-June only (capture at W = 8 h,
averaged over the zones and over the two protocols, plan once and re-plan, since the product
uses both), prints every configuration's figures and the one chosen, then, for that one, the
threshold for clipping glitches from the history (a second stage); the chosen values are the
defaults of flowcache.carbon.forecasting.ensemble.Ensemble.

Prints a table, then as the last line one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

import carbon_uncertainty as uncertainty
import numpy as np

from flowcache.carbon.decision import Job
from flowcache.carbon.forecasting.blend import Blend
from flowcache.carbon.forecasting.ensemble import ALL_MEMBERS, Ensemble
from flowcache.carbon.forecasting.holtwinters import HoltWinters
from flowcache.carbon.forecasting.seasonal import HourOfDayMean, PerfectForesight
from flowcache.carbon.planner import Planner
from flowcache.carbon.providers.emcsv import parse_csv, read_text, shipped_dir
from flowcache.carbon.replay import (
    defer_hourly,
    defer_hourly_replan,
    defer_multi_region,
    forecasts,
    nightly,
)
from flowcache.carbon.series import IntensitySeries
from flowcache.carbon.timestamps import to_epoch

LWA = Path(__file__).resolve().parents[2] / "shared" / "data" / "carbon" / "lets-wait-awhile"
DELAYS = (4, 8, 12, 24)
HORIZON = 25
WARMUP = 8 * 24  # the first decision has a week of history for the 7-day baseline
EUROPE = ("BE", "CH", "DE", "FI", "FR", "GB", "NL")
PROTOCOLS = ("once", "replan")
NAMES = ("mean7", "holtwinters", "blend", "ensemble")
BASELINES = ("mean7", "holtwinters")


def methods() -> dict:
    return {"mean7": HourOfDayMean(7), "holtwinters": HoltWinters(), "blend": Blend(),
            "ensemble": Ensemble(), "oracle": PerfectForesight()}


def load_zones(paths: list[str], column: str) -> dict[str, IntensitySeries]:
    files = [Path(p) for p in paths] if paths else sorted(shipped_dir().glob("*.csv.gz"))
    zones = {}
    for path in files:
        series = parse_csv(read_text(path), column=column, name=path.name)
        zones[series.meta.get("zone") or path.name.split("_")[0]] = series
    return zones


def load_lwa() -> dict[str, IntensitySeries]:
    if not LWA.is_dir():
        return {}
    out = {}
    for name, zone in (("ger_ci.csv", "DE-2020"), ("gb_ci.csv", "GB-2020"),
                       ("fr_ci.csv", "FR-2020")):
        path = LWA / name
        if not path.exists():
            continue
        rows = [line.split(",") for line in path.read_text(encoding="utf-8").splitlines()[1:]
                if line.strip()]
        series = IntensitySeries.from_points([to_epoch(r[0]) for r in rows],
                                             [float(r[1]) for r in rows], source="lwa")
        out[zone] = series.resample(3600.0).fill_gaps(max_gap=6 * 3600)
    return out


def halves(series: IntensitySeries, origins: np.ndarray) -> dict[str, np.ndarray]:
    mid = series.start + (series.end - series.start) / 2
    first = series.start + origins * series.resolution < mid
    return {"h1": first, "h2": ~first, "year": np.ones(origins.size, bool)}


def hourly_scenarios(zones: dict[str, IntensitySeries]) -> tuple[dict, dict]:
    results: dict = {}
    cache: dict = {}
    for zone, series in zones.items():
        v = series.values
        origins = np.arange(WARMUP, v.size - HORIZON)
        fc = forecasts(v, origins, HORIZON, methods(), start=series.start)
        cache[zone] = (origins, fc)
        parts = halves(series, origins)
        for name, f in fc.items():
            for protocol, defer in (("once", defer_hourly), ("replan", defer_hourly_replan)):
                for delay in DELAYS:
                    for part, mask in parts.items():
                        out = defer(v, origins, f, delay, mask)
                        results.setdefault(zone, {}).setdefault(name, {}).setdefault(
                            protocol, {}).setdefault(part, {})[delay] = out.saving
    return results, cache


def nightly_scenarios(zones: dict[str, IntensitySeries]) -> dict:
    out: dict = {}
    for zone, series in zones.items():
        v = series.values
        first_day = int(np.ceil((series.start % 86400) / 3600))
        for flex in (2, 8):
            nominal = np.arange(24 + 1 + first_day, v.size - 12, 24)  # 01:00 UTC each day
            decision = nominal - flex
            decision = decision[decision >= WARMUP]
            fc = forecasts(v, decision, 2 * flex + 2, methods(), start=series.start)
            for name, f in fc.items():
                out.setdefault(zone, {}).setdefault(name, {})[flex] = nightly(
                    v, f, decision, flex).saving
    return out


def multi_region(zones: dict[str, IntensitySeries], cache: dict, delay: int = 8) -> dict:
    names = [z for z in EUROPE if z in zones]
    if len(names) < 2:
        return {}
    n = min(zones[z].values.size for z in names)
    out: dict = {}
    for i, home in enumerate(names):
        origins = cache[home][0]
        origins = origins[origins < n - HORIZON]
        for name in methods():
            f = [cache[z][1][name][: origins.size] for z in names]
            outcome = defer_multi_region([zones[z].values[:n] for z in names], i, origins, f,
                                         delay)
            out.setdefault(home, {})[name] = outcome.saving
    return out


def planner_timing(repeats: int = 3) -> float:
    rng = np.random.default_rng(1)
    t0 = 1_654_041_600.0
    regions = [f"r{i}" for i in range(5)]
    fc = {r: IntensitySeries(t0, 300.0, rng.uniform(100, 500, 576) + 80 * np.sin(
        np.arange(576) / 40 + i), region=r) for i, r in enumerate(regions)}
    jobs = [Job(duration=float(rng.choice([1800, 3600, 5400])), earliest=t0 + float(
        rng.integers(0, 144)) * 300, home=regions[i % 5], power_w=200.0,
        max_delay=float(rng.choice([4, 8, 12])) * 3600, regions=tuple(regions))
        for i in range(10_000)]
    planner = Planner(fc)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        planner.plan_many(jobs)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def capture(results: dict, zone: str, method: str, part: str, delay: int,
            protocol: str = "once") -> float:
    """Share of the oracle's saving (the oracle's is the same under both protocols)."""
    oracle = results[zone]["oracle"]["once"][part][delay]
    return results[zone][method][protocol][part][delay] / oracle if oracle else float("nan")


def w8_tables(results: dict) -> dict:
    """Print the W = 8 h tables (both protocols side by side) and return their summary."""
    summary: dict = {}
    head = " ".join(f"{n:>21}" for n in NAMES)
    print("1 h job every hour, max delay 8 h: % saved vs run now (share of the oracle's saving);"
          "\neach cell: plan once | re-plan")
    for part in ("h1", "h2", "year"):
        print(f"-- {part}\n{'zone':8} {'oracle':>7} {head}")
        caps = {p: {n: [] for n in NAMES} for p in PROTOCOLS}
        for zone in results:
            row = f"{zone:8} {100 * results[zone]['oracle']['once'][part][8]:6.1f}%"
            for n in NAMES:
                cells = []
                for p in PROTOCOLS:
                    caps[p][n].append(capture(results, zone, n, part, 8, p))
                    cells.append(f"{100 * caps[p][n][-1]:4.0f}%")
                row += f" {100 * results[zone][n]['once'][part][8]:5.1f}% ({' |'.join(cells)})"
            print(row)
        summary[part] = {}
        for p in PROTOCOLS:
            means = {n: float(np.mean(caps[p][n])) for n in NAMES}
            wins = {n: int(sum(all(caps[p][n][i] > caps[p][b][i] for b in BASELINES)
                               for i in range(len(results)))) for n in ("blend", "ensemble")}
            summary[part][p] = {"capture": means, "beats_both_baselines_in": wins,
                                "zones": len(results)}
        print(f"{'mean':8} {'':7} " + " ".join(
            f"{'':7}({100 * summary[part]['once']['capture'][n]:4.1f} |"
            f"{100 * summary[part]['replan']['capture'][n]:4.1f})" for n in NAMES))
        wins = [summary[part][p]["beats_both_baselines_in"]["ensemble"] for p in PROTOCOLS]
        print(f"{'':8} ensemble beats both baselines in {wins[0]} (plan once) / {wins[1]} "
              f"(re-plan) of {len(results)} zones")
    return summary


def tune(zones: dict[str, IntensitySeries]) -> dict:
    """Grid search of the ensemble on January-June: member set, ridge window, weighting; the
    objective is the mean capture at W = 8 h over the zones and both protocols."""
    member_sets = {"blend4": ("profile", "analog12h", "analog24h", "ridge"),
                   "blend4+daytype": ("profile", "analog12h", "analog24h", "ridge", "daytype"),
                   "blend4+daytype+ridge_lags": ("profile", "analog12h", "analog24h", "ridge",
                                                 "daytype", "ridge_lags"),
                   "all7": ALL_MEMBERS}
    weightings = [{"weighting": "equal"}] + [
        {"weighting": "recent", "window_days": w, "eta": e} for w in (7, 14, 28)
        for e in (5.0, 10.0, 20.0)]
    prepared = {}
    for zone, series in zones.items():
        v = series.values
        origins = np.arange(WARMUP, v.size - HORIZON)
        truth = v[origins[:, None] + np.arange(9)[None, :]]
        oracle = {p: defer_hourly(v, origins, truth, 8, m).saving
                  for p, m in halves(series, origins).items()}
        parts = {days: Ensemble(members=ALL_MEMBERS, ridge_days=days, spike_mads=None).parts(
                     v, origins, 9, 24, start=series.start)
                 for days in (56, 112)}
        prepared[zone] = (v, origins, halves(series, origins), oracle, parts)
    rows = []
    for (set_name, members), options, days in itertools.product(
            member_sets.items(), weightings, (56, 112)):
        model = Ensemble(members=members, ridge_days=days, spike_mads=None, **options)
        caps: dict = {f"{p}_{part}": [] for p in PROTOCOLS for part in ("h1", "h2", "year")}
        for v, origins, parts_mask, oracle, parts in prepared.values():
            f = model.combine(v, origins, {m: parts[days][m] for m in members}, origins, 24)
            for p, defer in (("once", defer_hourly), ("replan", defer_hourly_replan)):
                for part, mask in parts_mask.items():
                    caps[f"{p}_{part}"].append(defer(v, origins, f, 8, mask).saving /
                                               oracle[part])
        row = {"members": set_name, "ridge_days": days, **options,
               **{k: float(np.mean(c)) for k, c in caps.items()}}
        rows.append(row)
        print(f"{set_name:26} ridge {days:3d} {options.get('weighting'):6} "
              f"window {options.get('window_days', '-')!s:>2} "
              f"eta {options.get('eta', '-')!s:>4}  h1 plan-once {100 * row['once_h1']:5.2f}%  "
              f"(re-plan {100 * row['replan_h1']:5.2f}%)")
    best = max(rows, key=lambda r: r["once_h1"] + r["replan_h1"])
    print(f"\nchosen on January-June (W = 8 h, mean of plan once and re-plan): {best['members']}"
          f", ridge_days "
          f"{best['ridge_days']}, weighting {best['weighting']}, window_days "
          f"{best.get('window_days', '-')}, eta {best.get('eta', '-')}")
    print("its capture: " + ", ".join(f"{k} {100 * best[k]:.1f}%" for k in KEYS))
    clip_rows = tune_spikes(zones, prepared, best, member_sets[best["members"]])
    chosen = max(clip_rows, key=lambda r: (round(r["once_h1"] + r["replan_h1"], 4),
                                           r["spike_mads"] or np.inf))
    print(f"\nsecond stage, clipping glitches: chosen spike_mads {chosen['spike_mads']}; "
          "its capture: " + ", ".join(f"{k} {100 * chosen[k]:.1f}%" for k in KEYS))
    return {"chosen": {**best, "spike_mads": chosen["spike_mads"]}, "grid": rows,
            "spike_grid": clip_rows}


KEYS = ("once_h1", "once_h2", "once_year", "replan_h1", "replan_h2", "replan_year")
SPIKE_MADS = (None, 3.0, 4.0, 5.0, 6.0, 8.0)


def tune_spikes(zones: dict[str, IntensitySeries], prepared: dict, best: dict,
                members: tuple[str, ...]) -> list[dict]:
    """Second stage: the chosen configuration with glitches clipped at several thresholds
    (None: not clipped); same objective. Ties (to 0.01 point) go to the gentler clip."""
    options = {k: best[k] for k in ("weighting", "window_days", "eta") if k in best}
    rows = []
    for mads in SPIKE_MADS:
        model = Ensemble(members=members, ridge_days=best["ridge_days"], spike_mads=mads,
                         **options)
        caps: dict = {k: [] for k in KEYS}
        for zone, (v, origins, parts_mask, oracle, _parts) in prepared.items():
            f = model.predict_block(v, origins, 9, 24, start=zones[zone].start)
            for p, defer in (("once", defer_hourly), ("replan", defer_hourly_replan)):
                for part, mask in parts_mask.items():
                    caps[f"{p}_{part}"].append(defer(v, origins, f, 8, mask).saving /
                                               oracle[part])
        row = {"spike_mads": mads, **{k: float(np.mean(c)) for k, c in caps.items()}}
        rows.append(row)
        print(f"spike_mads {mads!s:>4}  h1 plan-once {100 * row['once_h1']:5.2f}% (re-plan "
              f"{100 * row['replan_h1']:5.2f}%)")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", nargs="*", default=[], help="Electricity Maps format CSV files")
    parser.add_argument("--column", choices=("lca", "direct"), default="lca")
    parser.add_argument("--no-lwa", action="store_true", help="skip Let's Wait Awhile data")
    parser.add_argument("--tune", action="store_true",
                        help="search the ensemble's hyperparameters on January-June and stop")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    zones = load_zones(args.csv, args.column)
    if args.tune:
        tuned = tune(zones)
        print("\nprediction intervals and risk tolerance (January-June only):")
        tuned["chosen"]["intervals"] = uncertainty.tune(zones, hourly_scenarios(zones)[1],
                                                        halves)
        print(f"runtime {time.perf_counter() - started:.1f} s")
        print(json.dumps({"benchmark": "carbon_eval_tune", "column": args.column,
                          "chosen": tuned["chosen"],
                          "runtime_s": time.perf_counter() - started}, separators=(",", ":")))
        return 0
    results, cache = hourly_scenarios(zones)
    night = nightly_scenarios(zones)
    multi = multi_region(zones, cache)
    lwa = {} if args.no_lwa else load_lwa()
    lwa_results = hourly_scenarios(lwa)[0] if lwa else {}
    plan_s = planner_timing()
    intervals = uncertainty.interval_figures(zones, cache, halves)
    runtime = time.perf_counter() - started

    print(f"{args.column.upper()} intensity")
    summary = w8_tables(results)
    print("\nall delays, whole year: mean share of the oracle's saving (plan once | re-plan)")
    by_delay: dict = {p: {} for p in PROTOCOLS}
    for delay in DELAYS:
        for p in PROTOCOLS:
            by_delay[p][delay] = {n: float(np.mean([capture(results, z, n, "year", delay, p)
                                                    for z in results])) for n in NAMES}
        oracle = np.mean([results[z]["oracle"]["once"]["year"][delay] for z in results])
        print(f"  W={delay:2d} h  oracle saves {100 * oracle:5.1f}%  " + "  ".join(
            f"{n} {100 * by_delay['once'][delay][n]:4.1f}|"
            f"{100 * by_delay['replan'][delay][n]:4.1f}%" for n in NAMES))
    print("\nnightly 30-min job (01:00 UTC), whole year: % saved vs the nominal time")
    for zone, r in night.items():
        print(f"  {zone:8} " + "  ".join(f"+-{f}h: " + " ".join(
            f"{n} {100 * r[n][f]:4.1f}%" for n in (*NAMES, "oracle")) for f in (2, 8)))
    if multi:
        print("\nmulti-region (European zones), 1 h job, max delay 8 h: % saved vs run now at home")
        for zone, r in multi.items():
            print(f"  {zone:8} " + " ".join(f"{n} {100 * r[n]:5.1f}%" for n in (*NAMES, "oracle")))
    if lwa_results:
        print("\nLet's Wait Awhile 2020 (hourly means), max delay 8 h: share of the oracle's saving"
              " (plan once | re-plan)")
        for zone in lwa_results:
            print(f"  {zone:8} oracle {100 * lwa_results[zone]['oracle']['once']['year'][8]:5.1f}%"
                  "  " + "  ".join(
                      f"{n} {100 * capture(lwa_results, zone, n, 'year', 8):3.0f}|"
                      f"{100 * capture(lwa_results, zone, n, 'year', 8, 'replan'):3.0f}%"
                      for n in NAMES))
    uncertainty.print_figures(intervals)
    print(f"\nplanner: 10,000 jobs x 5 regions x 48 h of 5-minute data in {plan_s:.3f} s (median)")
    print(f"runtime {runtime:.1f} s")
    out = {
        "benchmark": "carbon_eval", "column": args.column,
        "w8_capture": summary,
        "capture_by_delay_year": {p: {str(k): v for k, v in d.items()}
                                  for p, d in by_delay.items()},
        "capture_w8_year": {z: {p: {n: capture(results, z, n, "year", 8, p) for n in NAMES}
                                for p in PROTOCOLS} for z in results},
        "saving_w8_year": {z: {n: results[z][n]["once"]["year"][8] for n in (*NAMES, "oracle")}
                           for z in results},
        "nightly_saving": {z: {n: {str(f): r[n][f] for f in (2, 8)} for n in r}
                           for z, r in night.items()},
        "multi_region_saving_w8": multi,
        "lwa_capture_w8": {z: {p: {n: capture(lwa_results, z, n, "year", 8, p) for n in NAMES}
                               for p in PROTOCOLS} for z in lwa_results},
        "intervals": intervals,
        "planner_10k_jobs_s": plan_s, "runtime_s": runtime,
    }
    print(json.dumps(out, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
