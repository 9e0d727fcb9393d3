"""Issue 5, CPU claim: the subset stream alone delivers >= 20k pairs/s.

    python benchmarks/bench_stream.py --pairs 100000

Builds a store of N prompts x 2 responses (texts of ~--chars characters) and a labelled subset of
one pair per prompt, then, in the same run:

* ours      — iterate ``subset_stream(store, subset, epochs=1)`` (a datasets.IterableDataset):
              Lance reads at the recorded versions, id -> offset join, Arrow chunks, shuffled
              order, Python dict rows. The one-off index build is included in the time.
* baseline  — the same pairs already in memory as a ``datasets.Dataset`` (built before the
              clock starts, i.e. the export-then-load path with the export not counted),
              iterated row by row in the same shuffled order.
* also      — the Arrow chunks alone (``iter_chunks``), no per-row dicts.

Prints pairs/s for each and ours / baseline.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pairsift.store import PROMPTS, RESPONSES, open_store  # noqa: E402
from pairsift.store.ids import content_id  # noqa: E402
from pairsift.store.schema import SUBSET_MEMBERS, SUBSETS  # noqa: E402

WORDS = np.array("the of and to in is was he for it with as his on be at by had not are but from or have an "
                 "they which one you were all her she there would their we him been has when who will no more "
                 "if out so up said what its about than into them can only other time new some could".split())


def texts(rng, n: int, chars: int) -> list[str]:
    words = max(1, chars // 5)
    idx = rng.integers(0, len(WORDS), size=(n, words))
    return [" ".join(row) for row in WORDS[idx]]


def build(store, n: int, chars: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    p_text = [f"{i}: {t}" for i, t in enumerate(texts(rng, n, chars))]
    pids = [content_id("t", t) for t in p_text]
    r_text = texts(rng, 2 * n, chars)
    rids = [content_id(pids[i // 2], "t", t) for i, t in enumerate(r_text)]
    prompts = pa.table({"prompt_id": pids, "text": p_text, "messages": pa.nulls(n, PROMPTS.field("messages").type),
                        "dataset": ["bench"] * n, "split": ["train"] * n, "meta": pa.nulls(n, pa.string())},
                       schema=PROMPTS)
    responses = pa.table({"response_id": rids, "prompt_id": np.repeat(pids, 2).tolist(), "text": r_text,
                          "messages": pa.nulls(2 * n, RESPONSES.field("messages").type),
                          "source": ["s"] * (2 * n), "score": rng.normal(size=2 * n),
                          "blank": [False] * (2 * n), "meta": pa.nulls(2 * n, pa.string())}, schema=RESPONSES)
    a, b = np.array(rids[0::2]), np.array(rids[1::2])
    swap = a > b
    lo, hi = np.where(swap, b, a), np.where(swap, a, b)
    flip = rng.random(n) < 0.5
    members = pa.table({
        "subset": ["bench"] * n, "pair_id": [content_id(x, y) for x, y in zip(lo, hi)], "prompt_id": pids,
        "rank": np.arange(n), "score": rng.random(n), "chosen_id": np.where(flip, b, a),
        "rejected_id": np.where(flip, a, b), "label_source": ["score"] * n, "a_id": lo, "b_id": hi,
    }, schema=SUBSET_MEMBERS)
    with store.writer() as w:
        w.append("responses", responses, RESPONSES)
        w.append("prompts", prompts, PROMPTS)
    manifest = pa.Table.from_pylist([{
        "name": "bench", "strategy": "bench", "params": "{}", "seed": 0,
        "store_versions": json.dumps(store.versions(["prompts", "responses"])), "tag": "bench",
        "counts": json.dumps({"selected": n}), "labelled": True, "created_at": datetime.now(timezone.utc),
    }], SUBSETS)
    with store.writer() as w:
        w.append("subset_members", members, SUBSET_MEMBERS)
        w.append("subsets", manifest, SUBSETS)


def timed(fn) -> tuple[float, int]:
    t = time.perf_counter()
    n = fn()
    return time.perf_counter() - t, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--chars", type=int, default=300, help="approximate characters per prompt and response")
    ap.add_argument("--read-batch-size", type=int, default=8192)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None, help="store directory (default: a temp dir)")
    args = ap.parse_args()

    import datasets

    from pairsift.train.stream import epoch_order, iter_chunks, make_spec, subset_stream, subset_table

    out = args.out or tempfile.mkdtemp(prefix="bench-stream-")
    store = open_store(out)
    if not store.has_table("subsets"):
        t, _ = timed(lambda: build(store, args.pairs, args.chars) or 0)
        print(f"built store {out}: {args.pairs:,} pairs in {t:.1f}s", file=sys.stderr)

    # Baseline data: the same pairs, same shuffled order, as an in-memory datasets.Dataset.
    table = subset_table(store, "bench").select(["pair_id", "prompt_id", "prompt", "chosen", "rejected"])
    order = epoch_order(table.num_rows, 0, 0)
    in_memory = datasets.Dataset(table.take(pa.array(order)))

    def ours():
        return sum(1 for _ in subset_stream(store, "bench", epochs=1, seed=0, read_batch_size=args.read_batch_size))

    def chunks():
        spec = make_spec(store, "bench", epochs=1, read_batch_size=args.read_batch_size)
        return sum(c.num_rows for c in iter_chunks(spec, 0))

    def baseline():
        return sum(1 for _ in in_memory)

    results = {}
    for name, fn in (("stream (ours)", ours), ("arrow chunks (ours, no row dicts)", chunks),
                     ("in-memory datasets.Dataset (baseline)", baseline)):
        best = min(timed(fn)[0] for _ in range(args.repeats))
        results[name] = args.pairs / best
    base = results["in-memory datasets.Dataset (baseline)"]
    print(f"{args.pairs:,} pairs, ~{args.chars} chars per text, read_batch_size {args.read_batch_size}, "
          f"best of {args.repeats}")
    for name, rate in results.items():
        print(f"  {name:<40} {rate:>12,.0f} pairs/s   x{rate / base:.2f} of baseline")
    ok = results["stream (ours)"] >= 20_000
    print(f"claim >= 20k pairs/s: {'MET' if ok else 'NOT MET'}")


if __name__ == "__main__":
    main()
