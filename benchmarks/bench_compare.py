"""Issue 10 claim: `compare` with the reward-head learner on the full HH test split (4 strategies x
4 budgets x 10 seeds, embeddings already stored) in under 60 s on this machine.

    python benchmarks/bench_compare.py --store /work/evidence/hh --embedding minilm

The store needs HH-RLHF harmless-base test ingested, `pairsift embed --name minilm`, `pairsift
pairs` and `pairsift split --holdout 0.2 --seed 0` (EVIDENCE.md has the commands); the script
makes the split itself if the store has none.

Ours: one call of ``pairsift.compare.runner.compare`` (what `pairsift compare` runs): arms built
once, picks in memory, budgets drawn, 160 reward-head fits, statistics, table, JSON and PNG.

Baseline, side by side in the same process: the obvious loop a user would write with the
product's public calls — per run, `select` the strategy into a subset (re-reading the store,
writing members, manifest and tags), `export` it to JSONL, read the file back, draw the budget's
pairs with ``numpy.random.default_rng(seed)``, look up the pairs' embeddings in the store, fit the
same logistic regression and score it on the held-out pairs (read once, before the loop: the
baseline is not charged for that). Reported: wall seconds, CPU seconds, the ratio, load average.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import cpu_seconds as cpu  # noqa: E402

from pairsift.compare.learners import RewardHead  # noqa: E402
from pairsift.compare.runner import compare, heldout_pairs  # noqa: E402
from pairsift.compare.split import make_split  # noqa: E402
from pairsift.select.export import export  # noqa: E402
from pairsift.select.subsets import delete_subset, select, subset_exists  # noqa: E402
from pairsift.store import open_store  # noqa: E402
from pairsift.store.splits import read_split  # noqa: E402

STRATEGIES = ["easy-half", "hard-half", "random-half", "random"]
BUDGETS = [100, 200, 400, 800]


def ours(store, embedding: str, seeds: int, out: Path) -> tuple[float, float, dict]:
    t0, c0 = time.perf_counter(), cpu()
    res = compare(store, STRATEGIES, BUDGETS, seeds, "reward-head", out, embedding=embedding, overwrite=True)
    return time.perf_counter() - t0, cpu() - c0, {c["arm"] + f"@{c['budget']}": c["mean"] for c in res.cells
                                                  if c["metric"] == "accuracy"}


def baseline(store, embedding: str, seeds: int, work: Path) -> tuple[float, float, dict]:
    """The loop a user writes: select + export per run, re-reading the store, then fit and score."""
    import polars as pl
    from sklearn.linear_model import LogisticRegression

    split = read_split(store)
    held, _ = heldout_pairs(store, store.table("pair_features").version, split)
    vec_table = f"embeddings_{embedding}"

    def vectors(ids: list[str]) -> dict[str, np.ndarray]:
        df = store.scan(vec_table).filter(pl.col("id").is_in(ids)).select("id", "vector").collect()
        return {i: np.asarray(v, dtype=np.float64) for i, v in zip(df["id"].to_list(), df["vector"].to_list())
                if v is not None}

    hv = vectors(held.column("chosen_id").to_pylist() + held.column("rejected_id").to_pylist())
    hd = np.array([hv[c] - hv[r] for c, r in zip(held.column("chosen_id").to_pylist(),
                                                   held.column("rejected_id").to_pylist()) if c in hv and r in hv])
    t0, c0 = time.perf_counter(), cpu()
    acc: dict[str, list[float]] = {}
    for strategy in STRATEGIES:
        params = {"embedding": embedding} if strategy in ("easy-half", "hard-half") else {}
        for budget in BUDGETS:
            for seed in range(seeds):
                name = "bench-baseline"
                if subset_exists(store, name):
                    delete_subset(store, name)
                select(store, strategy, name, seed=seed, **params)
                path = work / f"{name}.jsonl"
                export(store, name, path)
                rows = [json.loads(line) for line in path.read_text().splitlines()]
                rng = np.random.default_rng(seed)
                take = [rows[i] for i in rng.permutation(len(rows))]
                v = vectors([r["chosen_id"] for r in take] + [r["rejected_id"] for r in take])
                pairs = [(r["chosen_id"], r["rejected_id"]) for r in take if r["chosen_id"] in v and r["rejected_id"] in v]
                d = np.array([v[c] - v[r] for c, r in pairs[:budget]])
                lr = LogisticRegression(fit_intercept=False, max_iter=1000)
                lr.fit(np.r_[d, -d], np.r_[np.ones(len(d)), np.zeros(len(d))])
                acc.setdefault(f"{strategy}@{budget}", []).append(float(np.mean(hd @ lr.coef_[0] > 0)))
    if subset_exists(store, "bench-baseline"):
        delete_subset(store, "bench-baseline")
    return time.perf_counter() - t0, cpu() - c0, {k: float(np.mean(v)) for k, v in acc.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", required=True)
    ap.add_argument("--embedding", default="minilm")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--skip-baseline", action="store_true")
    a = ap.parse_args()
    store = open_store(a.store)
    if read_split(store) is None:
        make_split(store, holdout=0.2, seed=0)
    # A store-side warm-up read, so neither side pays for the first open of each table.
    store.dataset("pair_features").count_rows()
    RewardHead(embedding=a.embedding).check(store)
    work = Path(tempfile.mkdtemp(prefix="bench-compare-"))
    try:
        wall, cpus, acc = ours(store, a.embedding, a.seeds, work / "ours")
        runs = len(STRATEGIES) * len(BUDGETS) * a.seeds
        print(f"ours:     {runs} runs in {wall:6.1f} s wall, {cpus:6.1f} s CPU  (claim: < 60 s)", flush=True)
        if not a.skip_baseline:
            bwall, bcpu, bacc = baseline(store, a.embedding, a.seeds, work)
            print(f"baseline: {runs} runs in {bwall:6.1f} s wall, {bcpu:6.1f} s CPU")
            print(f"ratio baseline/ours: {bwall / wall:.1f}x wall, {bcpu / cpus:.1f}x CPU")
            gap = max(abs(acc[k] - bacc[k]) for k in acc)
            print(f"sanity: largest |mean accuracy ours - baseline| over cells = {gap:.3f} (different draws)")
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; cores: {os.cpu_count()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
