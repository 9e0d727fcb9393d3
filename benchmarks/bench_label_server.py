"""Issue 11 claim: `pairsift label serve` sustains 50 concurrent annotators; zero lost or
duplicated labels.

    python benchmarks/bench_label_server.py --out bench-out/label [--annotators 50 --labels 20]

A synthetic store (N prompts x 4 responses, ingested by pairsift, random embeddings, every pair
in one unlabelled subset) is copied once per run. For each server variant a server process
binds 127.0.0.1 and this process plays `--annotators` annotators at once (asyncio + httpx, one
connection each): GET the page, POST the label, `--labels` times, overlap 1. Submit latency is
the POST until the server's 303 (sent only after the label is committed). Afterwards the
`labels` table is read back: lost = confirmed label ids missing from it, duplicated = rows
minus distinct ids. Each annotator sends its first form twice at once (a double click, or a
retry after a timeout while the first is still in flight): it must be stored once.

Variants (the same app, the same validation; only the commit differs):
- ``group`` (ours): group commit, every label queued while a commit runs goes into the next
  one (one keyed compare-and-swap append on label_id, the store's writer: idempotent).
- ``group-mi``: the same group commit, each commit a Lance merge-insert insert-if-not-exists on
  label_id relying on its primary-key metadata (what the label room did before it moved to the
  store's writer; docs/ARCHITECTURE.md "Writes", benchmarks/bench_label_writes.py).
- ``each``: one keyed commit per label, in arrival order: the same guarantees, what the server
  does without group commit.
- ``append``: one plain ``table.add`` per label: what a competent user writes first with
  LanceDB. The server's in-memory check still drops a retry of a label it has committed, but
  not one that arrives while the first is in flight, nor one sent to another server process.

Client and server share this machine's cores, and other jobs may too: the variants run
interleaved for `--rounds` rounds and each figure is the median over rounds; the server's CPU
seconds per label (less sensitive to other load than wall time) and the load average are
printed beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pairsift.store import open_store

HIDDEN = ("csrf", "subset", "pair_id", "round", "left", "shown_at")
CHOICES = ("left", "right", "tie", "both_bad", "skip")


# ---- the store ---------------------------------------------------------------------------------


def build_store(root: Path, prompts: int) -> Path:
    from pairsift.features.pairs import build_pairs
    from pairsift.ingest.pipeline import ingest
    from pairsift.select.subsets import select
    from pairsift.store.schema import embeddings_schema

    root.mkdir(parents=True, exist_ok=True)
    corpus = root / "corpus.jsonl"
    rng = np.random.default_rng(0)
    with corpus.open("w") as f:
        for i in range(prompts):
            responses = [{"text": f"Response {j} to prompt {i}: " + "lorem ipsum " * int(rng.integers(10, 60)),
                          "source": f"model_{j}"} for j in range(4)]
            f.write(json.dumps({"prompt": f"Prompt {i}: please explain topic {i}.", "responses": responses}) + "\n")
    store = open_store(root / "store")
    ingest(store, corpus, "multi")
    ids = store.dataset("responses").to_table(columns=["response_id"]).column(0).to_pylist()
    vecs = rng.normal(size=(len(ids), 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    schema = embeddings_schema(16, {"model": "random", "target": "responses"})
    table = pa.table({"id": ids, "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), 16),
                      "n_tokens": pa.array([10] * len(ids), pa.int32()), "truncated": [False] * len(ids)},
                     schema=schema)
    with store.writer() as w:
        w.append("embeddings_rand", table, schema)
    build_pairs(store)
    select(store, "band", "bench", embedding="rand", min=-1.0, max=1.0)
    return root / "store"


# ---- the server (a child process: python bench_label_server.py --serve VARIANT --store S) -------


def serve(variant: str, store_uri: str) -> None:
    from pairsift.label.server.app import make_app
    from pairsift.label.server.config import ServeConfig
    from pairsift.label.server.run import bind, run_app
    from pairsift.label.server.writer import LabelWriter

    class AppendWriter(LabelWriter):
        """The LanceDB call a web app would make per request: table.add."""

        def commit_inserts(self, rows: pa.Table) -> int:
            table = self.store.db.open_table("labels")
            table.add(rows)
            return table.version

    class MergeInsertWriter(LabelWriter):
        """Merge-insert insert-if-not-exists on label_id (primary-key metadata on the field)."""

        def commit_inserts(self, rows: pa.Table) -> int:
            import lance

            ds = lance.dataset(self.store.table_uri("labels"), storage_options=self.store.storage_options)
            last = {k: i for i, k in enumerate(rows.column("label_id").to_pylist())}  # a double POST in one batch
            ds.merge_insert("label_id").when_not_matched_insert_all().execute(rows.take(sorted(last.values())))
            return ds.version

    store = open_store(store_uri)
    config = ServeConfig(port=0, refresh_seconds=3600)
    writer = {"group": LabelWriter(store, config.max_batch), "group-mi": MergeInsertWriter(store, config.max_batch),
              "each": LabelWriter(store, 1), "append": AppendWriter(store, 1)}[variant]
    app = make_app(store, "bench", config, writer=writer)
    sock = bind("127.0.0.1", 0)
    print(f"http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    try:
        run_app(app, sock)  # what `pairsift label serve` runs, for every variant
    except KeyboardInterrupt:  # the SIGINT that stops it; the queue was committed on the way out
        pass


# ---- the annotators ------------------------------------------------------------------------------


async def annotator(client, who: str, n: int, latencies: list, confirmed: list, errors: list, retries: list,
                    double_first: bool) -> None:
    import httpx

    async def post(data: dict):
        for _ in range(5):  # what a page does when the connection drops: send the same form again
            try:
                return await client.post(f"/label/{who}/submit", data=data)
            except httpx.TransportError:
                retries.append(who)
        return None

    for i in range(n):
        page = await client.get(f"/label/{who}")
        if 'id="done-page"' in page.text:
            return
        data = {k: v for k, v in re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page.text)
                if k in HIDDEN}
        data["choice"] = CHOICES[i % len(CHOICES)]
        t0 = time.perf_counter()
        if double_first and i == 0:
            # The same form sent twice at once (a double click, or a retry after a timeout while
            # the first is still in flight): must be stored once.
            r, twin = await asyncio.gather(post(data), post(data))
            retries.append(who)
            if twin is not None and twin.status_code == 303:
                confirmed.append(twin.headers["x-label-id"])
        else:
            r = await post(data)
        latencies.append(time.perf_counter() - t0)
        if r is not None and r.status_code == 303:
            confirmed.append(r.headers["x-label-id"])
        else:
            errors.append((who, None if r is None else r.status_code))


async def load(url: str, annotators: int, labels: int, double_first: bool = True) -> dict:
    import httpx

    latencies, confirmed, errors, retries = [], [], [], []
    limits = httpx.Limits(max_connections=annotators * 2, max_keepalive_connections=annotators * 2)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(annotator(client, f"a{k:02d}", labels, latencies, confirmed, errors, retries,
                                         double_first) for k in range(annotators)))
        wall = time.perf_counter() - t0
    return {"latencies": latencies, "confirmed": confirmed, "errors": errors, "retries": retries, "wall": wall}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_variant(variant: str, template: Path, work: Path, annotators: int, labels: int) -> dict:
    from pairsift.label.table import read

    store_dir = work / f"store-{variant}"
    shutil.rmtree(store_dir, ignore_errors=True)
    shutil.copytree(template, store_dir)
    proc = subprocess.Popen([sys.executable, __file__, "--serve", variant, "--store", str(store_dir)],
                            stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    import httpx

    for _ in range(600):
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    version0 = open_store(store_dir).dataset("labels").version
    cpu0, load0 = cpu_seconds(proc.pid), os.getloadavg()[0]
    got = asyncio.run(load(url, annotators, labels))
    cpu = cpu_seconds(proc.pid) - cpu0
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    store = open_store(store_dir)
    rows = read(store, "bench")
    ids = rows["label_id"].to_list()
    lat = np.array(got["latencies"]) * 1000
    return {
        "variant": variant,
        "confirmed": len(set(got["confirmed"])),
        "errors": len(got["errors"]),
        "retried_posts": len(got["retries"]),
        "seconds": got["wall"],
        "labels_per_s": len(set(got["confirmed"])) / got["wall"],
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "max_ms": float(lat.max()),
        "commits": store.dataset("labels").version - version0,
        "rows": len(ids),
        "lost": len(set(got["confirmed"]) - set(ids)),
        "duplicated": len(ids) - len(set(ids)),
        "server_cpu_s": cpu,
        "load_avg": (load0 + os.getloadavg()[0]) / 2,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench-out/label")
    ap.add_argument("--annotators", type=int, default=50)
    ap.add_argument("--labels", type=int, default=20, help="labels per annotator")
    ap.add_argument("--prompts", type=int, default=400, help="4 responses each: 6 pairs per prompt")
    ap.add_argument("--variants", default="group,each,append")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; figures are medians")
    ap.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--store", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.store)
        return
    out = Path(args.out)
    needed = args.annotators * args.labels
    if args.prompts * 6 < needed:
        raise SystemExit(f"--prompts {args.prompts} gives {args.prompts * 6} pairs; {needed} labels need more")
    template = out / "template" / "store"
    if not template.exists():
        shutil.rmtree(out / "template", ignore_errors=True)
        build_store(out / "template", args.prompts)
    variants = args.variants.split(",")
    runs = []
    for r in range(args.rounds):
        for v in variants:
            runs.append({**run_variant(v, template, out, args.annotators, args.labels), "round": r})
            print(json.dumps(runs[-1]), flush=True)
    results = []
    for v in variants:
        mine = [x for x in runs if x["variant"] == v]
        med = {k: statistics.median(x[k] for x in mine) for k in mine[0] if k not in ("variant", "round")}
        results.append({**med, "variant": v, "lost": sum(x["lost"] for x in mine),
                        "duplicated": sum(x["duplicated"] for x in mine), "confirmed": sum(x["confirmed"] for x in mine)})
    print(f"{args.annotators} annotators x {args.labels} labels, 127.0.0.1, {os.cpu_count()} cores, "
          f"medians of {args.rounds} interleaved rounds (lost/dup/confirmed: totals)")
    head = ("variant", "confirmed", "labels/s", "p50 ms", "p99 ms", "max ms", "commits", "lost", "dup",
            "retried POSTs", "server CPU ms/label", "load")
    print(" | ".join(head))
    for r in results:
        print(" | ".join(str(x) for x in (
            r["variant"], r["confirmed"], f"{r['labels_per_s']:.1f}", f"{r['p50_ms']:.0f}", f"{r['p99_ms']:.0f}",
            f"{r['max_ms']:.0f}", f"{r['commits']:.0f}", r["lost"], r["duplicated"], f"{r['retried_posts']:.0f}",
            f"{1000 * r['server_cpu_s'] / (args.annotators * args.labels):.1f}",
            f"{r['load_avg']:.1f}")))
    by = {r["variant"]: r for r in results}
    if "group" in by:
        for base in ("group-mi", "each", "append"):
            if base in by:
                print(f"group vs {base}: labels/s x{by['group']['labels_per_s'] / by[base]['labels_per_s']:.2f}, "
                      f"p99 x{by[base]['p99_ms'] / by['group']['p99_ms']:.2f} lower")
    (out / "results.json").write_text(json.dumps({"runs": runs, "medians": results}, indent=2))


if __name__ == "__main__":
    main()
