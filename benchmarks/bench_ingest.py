"""Streaming ingest throughput and memory (issue 2).

Generates a synthetic `multi` JSONL (4 responses of ~300 characters per prompt, with score and
source), then in separate subprocesses (so peak RSS is per run):
  * ours      — `pairsift.ingest.pipeline.ingest` into a fresh store, for N and 4N responses;
  * baseline  — the obvious approach: json.loads per line into Python lists (same content-hash
                ids), one `table.add` per table at the end; for N responses.
Prints responses/s, peak RSS and the ratios.

    python benchmarks/bench_ingest.py --responses 1000000 --out bench-out/ingest
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

WORDS = (
    "the a model answer question helpful because therefore data pair prefer reward policy "
    "gradient token embedding response human assistant safe clear concise example result"
).split()


def make_corpus(path: Path, responses: int, per_prompt: int = 4, seed: int = 0) -> None:
    if path.exists():
        return
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as fh:
        for p in range(responses // per_prompt):
            rs = []
            for k in range(per_prompt):
                text = " ".join(rng.choices(WORDS, k=45))[:300]
                rs.append({"text": f"{p}.{k} {text}", "score": round(rng.random() * 10, 3), "source": f"model-{k}"})
            fh.write(json.dumps({"prompt": f"Question {p}: " + " ".join(rng.choices(WORDS, k=12)), "responses": rs}) + "\n")
    tmp.rename(path)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ours(corpus: str, store_dir: str) -> dict:
    from pairsift.ingest.pipeline import ingest
    from pairsift.store import open_store

    store = open_store(store_dir)
    t = time.perf_counter()
    report = ingest(store, corpus, "multi")
    seconds = time.perf_counter() - t
    n = report.responses_added
    return {"responses": n, "seconds": seconds, "rate": n / seconds, "rss_mb": peak_rss_mb()}


def run_baseline(corpus: str, store_dir: str) -> dict:
    import lancedb
    import pyarrow as pa

    from pairsift.store import PROMPTS, RESPONSES
    from pairsift.store.ids import prompt_id as pid_of
    from pairsift.store.ids import response_id as rid_of

    t = time.perf_counter()
    prompts = {k: [] for k in PROMPTS.names}
    responses = {k: [] for k in RESPONSES.names}
    seen = set()
    with open(corpus) as fh:
        for line in fh:
            rec = json.loads(line)
            pid = pid_of(rec["prompt"])
            if pid not in seen:
                seen.add(pid)
                for k, v in zip(PROMPTS.names, (pid, rec["prompt"], None, "bench", "train", None)):
                    prompts[k].append(v)
            for r in rec["responses"]:
                rid = rid_of(pid, r["text"])
                if rid in seen:
                    continue
                seen.add(rid)
                row = (rid, pid, r["text"], None, r.get("source"), r.get("score"), not r["text"].strip(), None)
                for k, v in zip(RESPONSES.names, row):
                    responses[k].append(v)
    db = lancedb.connect(store_dir)
    db.create_table("responses", schema=RESPONSES).add(pa.table(responses, schema=RESPONSES))
    db.create_table("prompts", schema=PROMPTS).add(pa.table(prompts, schema=PROMPTS))
    seconds = time.perf_counter() - t
    n = len(responses["response_id"])
    return {"responses": n, "seconds": seconds, "rate": n / seconds, "rss_mb": peak_rss_mb()}


def child(mode: str, corpus: Path, out: Path) -> dict:
    store_dir = out / f"store-{mode}-{corpus.stem}"
    shutil.rmtree(store_dir, ignore_errors=True)
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--corpus", str(corpus), "--store", str(store_dir)],
        check=True, capture_output=True, text=True, env={**os.environ, "LANCE_LOG": "error"},
    )
    shutil.rmtree(store_dir, ignore_errors=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--responses", type=int, default=1_000_000)
    ap.add_argument("--scale", type=int, default=4, help="memory check at N x scale responses")
    ap.add_argument("--out", default="bench-out/ingest")
    ap.add_argument("--child", choices=["ours", "baseline"])
    ap.add_argument("--corpus")
    ap.add_argument("--store")
    args = ap.parse_args()
    if args.child:
        fn = run_ours if args.child == "ours" else run_baseline
        print(json.dumps(fn(args.corpus, args.store)))
        return

    out = Path(args.out)
    small = out / f"multi-{args.responses}.jsonl"
    large = out / f"multi-{args.responses * args.scale}.jsonl"
    make_corpus(small, args.responses)
    make_corpus(large, args.responses * args.scale)
    results = {
        "baseline": child("baseline", small, out),
        "ours": child("ours", small, out),
        "ours_large": child("ours", large, out),
    }
    for name, r in results.items():
        print(f"{name:<11} {r['responses']:>10,} responses  {r['seconds']:7.1f} s  {r['rate']:>10,.0f} resp/s  peak RSS {r['rss_mb']:7.0f} MB")
    b, o, big = results["baseline"], results["ours"], results["ours_large"]
    print(f"throughput ours/baseline: {o['rate'] / b['rate']:.2f}x   (target: ours >= 50,000 resp/s)")
    print(f"peak RSS ours/baseline at {args.responses:,}: {o['rss_mb'] / b['rss_mb']:.2f}")
    print(f"peak RSS ours {args.scale}x/1x: {big['rss_mb'] / o['rss_mb']:.2f}  (target <= 1.20)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
