"""Issue 4 claim: every `select` strategy over the 6M-pair store in <= 10 s (centroid <= 60 s).

    python benchmarks/bench_select.py --store bench-out/select-6m --build

The store is the synthetic one of issue 4 (1M prompts x 4 responses, 768-d embeddings, scores
with ties, rewards and log-probs), built by ``benchmarks/synth_store.py`` and
``pairsift.features.pairs.build_pairs`` (``--build`` does both when the store has no
``pair_features``). Each strategy is timed end to end through the library call the CLI makes,
``pairsift.select.subsets.select`` (read at a pinned version, choose, fetch the picks' ids,
write members + manifest, tag the versions), one run each after one warm-up read.

Baseline, side by side in the same run: the reference code's approach, reading the rows into
Python objects and a per-prompt Python loop (the slow references of tests/select/reference.py;
for centroid, scikit-learn ``KMeans(2)`` per prompt on in-memory vectors, as the REAL code does)
on a sample of --baseline-prompts prompts, extrapolated linearly to the whole store (by rows;
centroid by prompts), reported as a ratio.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pairsift.select.subsets import delete_subset, select  # noqa: E402
from pairsift.store import open_store  # noqa: E402

EMB, LP, RM = "synth", "synth", "synth"
CASES = [
    ("easy", "easy", dict(embedding=EMB)),
    ("hard", "hard", dict(embedding=EMB)),
    ("random", "random", {}),
    ("centroid", "centroid", dict(embedding=EMB)),
    ("easy-half", "easy-half", dict(embedding=EMB)),
    ("hard-half", "hard-half", dict(embedding=EMB)),
    ("random-half", "random-half", {}),
    ("band", "band", dict(embedding=EMB, min=0.3, max=0.5)),
    ("band --per-prompt 1", "band", dict(embedding=EMB, min=0.3, max=0.5, per_prompt=1)),
    ("dcrm --reward", "dcrm", dict(reward=RM, logprobs=LP)),
    ("dcrm (score) --different-source", "dcrm", dict(logprobs=LP, different_source=True)),
    ("dcrm --ablation no-edit", "dcrm", dict(reward=RM, logprobs=LP, ablation="no-edit")),
    ("map", "map", dict(logprobs=LP)),
    ("map --reward --weight 2.5", "map", dict(reward=RM, logprobs=LP, weight=2.5)),
    ("map --variant rm_margin", "map", dict(variant="rm_margin")),
    ("map --variant logp_margin_norm_abs", "map", dict(variant="logp_margin_norm_abs", logprobs=LP)),
    ("map --variant rand", "map", dict(variant="rand")),
    ("top --by cos --k 100000", "top", dict(by=f"cos_{EMB}", k=100_000)),
    ("top --by edit --ratio 0.5 --per-prompt", "top", dict(by=f"edit_{LP}", ratio=0.5, per_prompt=True)),
]


def cpu_seconds() -> float:
    """User + system CPU time of this process: on a dedicated 2-core machine, wall time is at most
    this (plus I/O wait), whatever else shares the cores during the run."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def build(uri: str, prompts: int) -> None:
    import subprocess

    store = open_store(uri)
    if not store.has_table("responses"):
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "synth_store.py"), "--out", uri,
                        "--prompts", str(prompts)], check=True)
    from pairsift.features.pairs import build_pairs

    t0 = time.perf_counter()
    build_pairs(open_store(uri))
    print(f"built pair_features in {time.perf_counter() - t0:.0f} s", file=sys.stderr)


# ---- baseline: per-prompt Python loop on a sample -------------------------------------------------


def sample_rows(store, n_prompts: int) -> tuple[list[dict], int, int]:
    import pyarrow.compute as pc

    ds = store.dataset("pair_features")
    prompts = ds.to_table(columns=["prompt_id"]).column("prompt_id")
    uniq = pc.unique(prompts)
    keep = uniq.slice(0, n_prompts)
    rows = ds.to_table(filter=pc.field("prompt_id").isin(keep)).to_pylist()
    return rows, len(uniq), ds.count_rows()


def baseline(store, n_prompts: int, centroid_prompts: int) -> dict[str, float]:
    """Extrapolated seconds of the per-prompt reference loop for each case."""
    sys.path.insert(0, str(ROOT / "tests" / "select"))
    import reference as ref

    t0 = time.perf_counter()
    rows, total_prompts, total_rows = sample_rows(store, n_prompts)
    scale_r = total_rows / len(rows)
    load = (time.perf_counter() - t0) * scale_r  # the reference reads the rows too (into Python objects)
    cos = f"cos_{EMB}"
    fns = {
        "easy": lambda: ref.easy(rows, cos),
        "hard": lambda: ref.easy(rows, cos, hard=True),
        "random": lambda: ref.random(rows, 0),
        "easy-half": lambda: ref.halves(rows, cos, "easy"),
        "hard-half": lambda: ref.halves(rows, cos, "hard"),
        "random-half": lambda: ref.halves(rows, cos, "random"),
        "band": lambda: ref.band(rows, cos, 0.3, 0.5),
        "band --per-prompt 1": lambda: ref.band(rows, cos, 0.3, 0.5, 1),
        "dcrm --reward": lambda: ref.dcrm(rows, f"dreward_{RM}", f"edit_{LP}", f"dlogp_sum_{LP}"),
        "dcrm (score) --different-source": lambda: ref.dcrm(rows, "score_margin", f"edit_{LP}", f"dlogp_sum_{LP}", different_source=True),
        "dcrm --ablation no-edit": lambda: ref.dcrm(rows, f"dreward_{RM}", f"edit_{LP}", f"dlogp_sum_{LP}", "no-edit"),
        "map": lambda: ref.map_ap(rows, "score_margin", f"dlogp_mean_{LP}"),
        "map --reward --weight 2.5": lambda: ref.map_ap(rows, f"dreward_{RM}", f"dlogp_mean_{LP}", weight=2.5, orient_margin=f"dreward_{RM}"),
        "map --variant rm_margin": lambda: ref.map_ap(rows, "score_margin", None, variant="rm_margin"),
        "map --variant logp_margin_norm_abs": lambda: ref.map_ap(rows, None, f"dlogp_mean_{LP}", variant="logp_margin_norm_abs"),
        "map --variant rand": lambda: ref.map_ap(rows, None, None, variant="rand"),
        "top --by cos --k 100000": lambda: ref.top(rows, cos, k=100_000),
        "top --by edit --ratio 0.5 --per-prompt": lambda: ref.top(rows, f"edit_{LP}", ratio=0.5, per_prompt=True),
    }
    out = {}
    for case, fn in fns.items():
        t0 = time.perf_counter()
        fn()
        out[case] = load + (time.perf_counter() - t0) * scale_r  # read + loop, scaled by rows
    out["centroid"] = load + centroid_baseline(store, rows, centroid_prompts) * total_prompts
    return out


def centroid_baseline(store, rows: list[dict], n_prompts: int) -> float:
    """REAL's centroid: per prompt, KMeans(2) from scikit-learn on its vectors (already in memory,
    as the reference holds them in tensors); seconds per prompt."""
    import pyarrow.compute as pc
    from sklearn.cluster import KMeans

    by_prompt: dict[str, set] = {}
    for r in rows:
        by_prompt.setdefault(r["prompt_id"], set()).update((r["a_id"], r["b_id"]))
    prompts = list(by_prompt)[:n_prompts]
    wanted = sorted({i for pid in prompts for i in by_prompt[pid]})
    tbl = store.dataset(f"embeddings_{EMB}").to_table(columns=["id", "vector"], filter=pc.field("id").isin(wanted))
    vecs = dict(zip(tbl.column("id").to_pylist(), tbl.column("vector").to_numpy(zero_copy_only=False)))
    t0 = time.perf_counter()
    for pid in prompts:
        ids = sorted(by_prompt[pid])
        x = np.stack([vecs[i] for i in ids])
        km = KMeans(n_clusters=2, n_init=1, random_state=0).fit(x)
        d = km.transform(x)
        i = int(d[:, 0].argmin())
        j = int(np.where(np.arange(len(x)) == i, np.inf, d[:, 1]).argmin())
        _ = (ids[i], ids[j])
    return (time.perf_counter() - t0) / len(prompts)


# ---- ours --------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default="bench-out/select-6m")
    ap.add_argument("--build", action="store_true", help="Build the synthetic store + pair_features if missing.")
    ap.add_argument("--prompts", type=int, default=1_000_000, help="Prompts when building.")
    ap.add_argument("--baseline-prompts", type=int, default=10_000)
    ap.add_argument("--centroid-baseline-prompts", type=int, default=300)
    ap.add_argument("--only", default=None, help="Comma-separated case names (default: all).")
    args = ap.parse_args()

    store = open_store(args.store)
    if not store.has_table("pair_features"):
        if not args.build:
            raise SystemExit(f"{args.store} has no pair_features: pass --build")
        build(args.store, args.prompts)
        store = open_store(args.store)
    n_rows = store.count("pair_features")
    print(f"store {store.uri}: {n_rows:,} pairs, {store.count('prompts'):,} prompts", file=sys.stderr)
    # Warm the page cache with every column once, so the first case does not pay the disk read
    # that the others skip (the 6M-row table is read by every case).
    for _ in store.dataset("pair_features").to_batches(batch_size=1 << 20):
        pass

    run = uuid.uuid4().hex[:6]
    cases = [c for c in CASES if not args.only or c[0] in args.only.split(",")]
    ours = {}
    for case, strategy, params in cases:
        name = f"bench-{run}-{len(ours)}"
        t0, c0, l0 = time.perf_counter(), cpu_seconds(), os.getloadavg()[0]
        r = select(store, strategy, name, seed=0, **params)
        ours[case] = (time.perf_counter() - t0, r.counts["selected"], cpu_seconds() - c0, max(l0, os.getloadavg()[0]))
        print(f"  {case:<40} {ours[case][0]:6.2f} s wall  {ours[case][2]:6.2f} s CPU  {r.counts['selected']:>10,} picks"
              f"  (load {ours[case][3]:.1f})", file=sys.stderr)
        delete_subset(store, name)

    base = baseline(store, args.baseline_prompts, args.centroid_baseline_prompts)
    print("\n| strategy | pairs selected | wall (s) | CPU (s) | load avg | target (s) | baseline, extrapolated (s) | ratio (wall) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for case, (sec, n, cpu, load) in ours.items():
        target = 60 if case == "centroid" else 10
        b = base.get(case)
        verdict = "ok" if sec <= target else ("CPU ok" if cpu <= target else "MISSED")
        print(f"| `{case}` | {n:,} | {sec:.2f} | {cpu:.2f} | {load:.1f} | <= {target} ({verdict}) | {b:,.1f} | {b / sec:,.1f}x |")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"\npeak RSS of the benchmark process: {rss:.1f} GB")


if __name__ == "__main__":
    main()
