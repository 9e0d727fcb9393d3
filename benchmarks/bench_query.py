"""Issue 4 claim: a band query over the 6M-pair table returning 1% of it in <= 0.5 s.

    python benchmarks/bench_query.py --store bench-out/synth-1m [--fraction 0.01]

The band [LO, HI] is chosen around the median cosine so that it holds --fraction of the pairs.
Ours: ``query_band(store, LO, HI, texts=False)`` (the filter is pushed into Lance, only matching
rows are materialised), best and median of --repeat runs; also with texts for --limit rows.
Baseline: load the table into pandas (``to_table().to_pandas()``) and filter with a boolean mask;
the load and the filter are timed separately.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pairsift.features.query import cosine_column, pair_features, query_band  # noqa: E402
from pairsift.store import open_store  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default="bench-out/synth-1m")
    ap.add_argument("--embedding", default=None)
    ap.add_argument("--fraction", type=float, default=0.01)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--limit", type=int, default=1000, help="rows for the run with texts")
    args = ap.parse_args()

    store = open_store(args.store)
    col = cosine_column(pair_features(store).schema, args.embedding)
    total = store.count("pair_features")
    cos = store.dataset("pair_features").to_table(columns=[col]).column(0).to_numpy()
    import numpy as np

    lo, hi = (float(x) for x in np.nanquantile(cos, [0.5 - args.fraction / 2, 0.5 + args.fraction / 2]))
    del cos

    times, rows = [], 0
    for _ in range(args.repeat):
        t = time.perf_counter()
        rows = query_band(store, lo, hi, embedding=args.embedding, texts=False).num_rows
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    shown = query_band(store, lo, hi, embedding=args.embedding, limit=args.limit).num_rows
    with_texts = time.perf_counter() - t

    t = time.perf_counter()
    df = store.dataset("pair_features").to_table().to_pandas()
    load = time.perf_counter() - t
    t = time.perf_counter()
    base_rows = len(df[(df[col] >= lo) & (df[col] <= hi)])
    filt = time.perf_counter() - t
    assert base_rows == rows, (base_rows, rows)

    res = {"pairs": total, "band": [lo, hi], "rows": rows, "fraction": rows / total,
           "ours_best_s": min(times), "ours_median_s": statistics.median(times),
           "ours_with_texts_s": with_texts, "texts_rows": shown,
           "baseline_load_s": load, "baseline_filter_s": filt, "baseline_s": load + filt,
           "ratio": (load + filt) / statistics.median(times), "load_avg_1m": os.getloadavg()[0]}
    print(f"band [{lo:.4f}, {hi:.4f}] on {col}: {rows:,} of {total:,} pairs ({rows / total:.2%})")
    print(f"ours     query_band, pushed-down filter: best {min(times):.3f} s, median {statistics.median(times):.3f} s")
    print(f"ours     with prompt + both texts, first {shown:,} rows: {with_texts:.3f} s")
    print(f"baseline pandas load {load:.2f} s + filter {filt:.3f} s = {load + filt:.2f} s")
    print(f"ratio    baseline / ours (median) = {res['ratio']:.0f}x")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
