"""Keying a 100 MB DataFrame: hash_inputs against blake3 over the same number of bytes.

The peer is the floor any content key pays: blake3 (all cores) over 100 MB already in one
buffer. Each round times the peer and every frame back to back, so a busy machine slows both;
the figures are medians of the per-round ratios. Frames: ten float64 columns in one block
(built from a 2-D array, so each column is strided), the same with a block per column, and a
mixed frame (eight float64, a pandas 3 ``str`` column of 1.25 M short strings, a nullable
``Int64`` column).

    .venv/bin/python bench/keys_tables.py --repeats 9
"""

from __future__ import annotations

from harness import arguments, emit, median, timed

# isort: split
import blake3
import numpy as np
import pandas as pd

from flowcache.keys.canonical import hash_inputs

ROWS = 1_250_000  # x 10 float64 columns = 100 MB


def frames() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(0)
    grid = rng.random((ROWS, 10))
    one_block = pd.DataFrame(grid, columns=[f"c{i}" for i in range(10)])
    per_column = pd.DataFrame(index=range(ROWS))
    for i in range(10):
        per_column[f"c{i}"] = grid[:, i].copy()
    mixed = one_block.iloc[:, :8].copy()
    mixed["s"] = pd.Series(rng.integers(0, 10**9, ROWS)).astype(str)
    mixed["n"] = pd.array(rng.integers(0, 100, ROWS), dtype="Int64")
    return {"one_block": one_block, "per_column": per_column, "mixed": mixed}


def main() -> None:
    args = arguments(__doc__, repeats=9).parse_args()
    cases = frames()
    peer_bytes = cases["one_block"].to_numpy().tobytes()
    for frame in cases.values():  # warm up: imports, first-touch of pages
        hash_inputs({"x": frame})
    peer_times: list[float] = []
    times: dict[str, list[float]] = {name: [] for name in cases}
    ratios: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        peer = timed(lambda: blake3.blake3(peer_bytes, max_threads=blake3.blake3.AUTO).digest())[0]
        peer_times.append(peer)
        for name, frame in cases.items():
            seconds = timed(lambda frame=frame: hash_inputs({"x": frame}))[0]
            times[name].append(seconds)
            ratios[name].append(seconds / peer)
    figures: dict[str, float] = {"peer_blake3_100mb_ms": round(median(peer_times) * 1e3, 1)}
    for name, frame in cases.items():
        size = frame.memory_usage(deep=False).sum() / 1e6
        ms = median(times[name]) * 1e3
        ratio = median(ratios[name])
        print(f"{name:>10}: {size:5.0f} MB  {ms:7.1f} ms  {ratio:5.2f} x blake3 of 100 MB")
        figures[f"{name}_ms"] = round(ms, 1)
        figures[f"{name}_ratio"] = round(ratio, 2)
    emit(figures)


if __name__ == "__main__":
    main()
