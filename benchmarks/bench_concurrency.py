"""Concurrency stress (issue 9): K ingest processes with overlapping input, plus one `pairs` and one
`select --replace` process in a loop, all on one store; on a local directory and on an S3 server
(moto, 127.0.0.1). Reports runs, rows, duplicates found (must be 0) and lost rows (must be 0).

In the same run, two baselines on the same input:
- the naive append every job used before issue 9 (dedup against the table as read at the start,
  then a plain Lance append): how many duplicates the same contention makes without the
  compare-and-swap commit;
- the same K ingests one after another (no contention): the wall-time ratio concurrent /
  sequential says what the retries cost.

    python benchmarks/bench_concurrency.py --k 4 --records 3000 --rounds 2 [--backend local|s3|both]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LANCE_LOG", "error")


# ---- input -------------------------------------------------------------------------------------


def records(lo: int, hi: int) -> list[dict]:
    return [
        {"prompt": f"question {i}", "chosen": f"good answer {i}", "rejected": f"bad answer {i}",
         "score_chosen": 1.0 + i % 3, "score_rejected": 0.0}
        for i in range(lo, hi)
    ]


def write_inputs(folder: Path, k: int, n: int) -> list[Path]:
    """K files of n records; file i overlaps file i+1 by half."""
    paths = []
    for i in range(k):
        lo = i * n // 2
        p = folder / f"part{i}.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in records(lo, lo + n)))
        paths.append(p)
    return paths


def expected_ids(k: int, n: int) -> dict[str, set]:
    from pairsift.store import pair_id, prompt_id, response_id

    hi = (k - 1) * n // 2 + n
    prompts, responses, pairs = set(), set(), set()
    for r in records(0, hi):
        p = prompt_id(r["prompt"])
        c, j = response_id(p, r["chosen"]), response_id(p, r["rejected"])
        prompts.add(p)
        responses |= {c, j}
        pairs.add(pair_id(c, j))
    return {"prompts": prompts, "responses": responses, "pairs": pairs}


# ---- workers (spawned processes) -------------------------------------------------------------


def warm_up() -> None:
    """Pay the first-use costs (imports, Lance's first open) before the clock starts."""
    from pairsift.ingest.pipeline import ingest
    from pairsift.store import open_store

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "w.jsonl"
        p.write_text(json.dumps(records(0, 1)[0]) + "\n")
        ingest(open_store(Path(d) / "s"), p)


def ingest_worker(uri, opts, path, rounds, out, barrier=None):
    from pairsift.ingest.pipeline import ingest
    from pairsift.store import open_store

    warm_up()
    store = open_store(uri, opts)
    done = errors = 0
    if barrier is not None:
        barrier.wait()  # every process has warmed up: the work starts together
    out.put(("ingest_start", time.time(), 0))
    for _ in range(rounds):
        try:
            ingest(store, path)
            done += 1
        except Exception as e:  # noqa: BLE001 - counted and reported
            errors += 1
            print(f"ingest error: {e}", file=sys.stderr)
    out.put(("ingest", done, errors))
    out.put(("ingest_end", time.time(), 0))


def loop_worker(kind, uri, opts, stop, out, barrier, min_runs):
    from pairsift.features.pairs import build_pairs
    from pairsift.select.subsets import select
    from pairsift.store import open_store

    warm_up()
    store = open_store(uri, opts)
    done = errors = 0
    seed = 0
    barrier.wait()
    after_stop = 0  # runs that started after the ingests ended (on the final data)
    deadline = None
    while not stop.is_set() or after_stop < min_runs:
        if stop.is_set() and deadline is None:
            deadline = time.time() + 600
        if deadline is not None and time.time() > deadline:
            break
        late = stop.is_set()
        try:
            if kind == "pairs":
                if store.has_table("responses"):
                    build_pairs(store)
                    done += 1
                    after_stop += late
            elif store.has_table("pair_features"):
                seed += 1
                select(store, "random", "stress", seed=seed, replace=True)
                done += 1
                after_stop += late
        except Exception as e:  # noqa: BLE001 - counted and reported
            errors += 1
            print(f"{kind} error: {type(e).__name__}: {e}", file=sys.stderr)
        time.sleep(0.05)
    out.put((kind, done, errors))


def naive_worker(uri, opts, path, out):
    """The pre-issue-9 path: dedup against the table read at the start, then a plain append."""
    import lance
    import pyarrow as pa

    from pairsift.store import prompt_id

    ids = sorted({prompt_id(json.loads(x)["prompt"]) for x in Path(path).read_text().splitlines()})
    schema = pa.schema([pa.field("prompt_id", pa.string(), nullable=False)])
    try:
        have = set(lance.dataset(uri, storage_options=opts).to_table().column(0).to_pylist())
    except Exception:  # noqa: BLE001 - not created yet
        have = set()
    rows = pa.table({"prompt_id": [i for i in ids if i not in have]}, schema=schema)
    time.sleep(0.2)  # the time an ingest spends reading its input between read and commit
    try:
        lance.write_dataset(rows, uri, schema=schema, mode="append", storage_options=opts)
    except Exception:  # noqa: BLE001 - first write
        lance.write_dataset(rows, uri, schema=schema, mode="create", storage_options=opts)
    out.put(("naive", 1, 0))


# ---- checks ------------------------------------------------------------------------------------


def audit(uri, opts, want: dict[str, set], export_dir: Path) -> dict:
    from pairsift.features.pairs import build_pairs
    from pairsift.select.export import export
    from pairsift.select.subsets import list_subsets, load_subset
    from pairsift.store import open_store
    from pairsift.store.schema import table_key

    store = open_store(uri, opts, create=False)
    build_pairs(store)  # catch up with the last ingest, then every pair has its row
    out = {"rows": {}, "duplicates": {}, "lost": {}}
    for name in ("prompts", "responses", "pairs", "pair_features"):
        cols = list(table_key(name))
        t = store.dataset(name).to_table(columns=cols)
        keys = list(zip(*(t.column(c).to_pylist() for c in cols)))
        out["rows"][name] = len(keys)
        out["duplicates"][name] = len(keys) - len(set(keys))
        ids = {k[0] for k in keys}
        expect = want.get(name, want["pairs"] if name == "pair_features" else set())
        out["lost"][name] = len(expect - ids)
    subsets = list_subsets(store)
    out["subsets_listed"] = len(subsets)
    for m in subsets:
        manifest, members = load_subset(store, m.name)
        pids = members.column("pair_id").to_pylist()
        report = export(store, m.name, export_dir / f"{m.name}.jsonl")
        out["subset"] = {
            "members": len(pids),
            "manifest_count": manifest.counts["selected"],
            "member_duplicates": len(pids) - len(set(pids)),
            "export_rows": report.rows,
            "revision": manifest.revision,
        }
    return out


# ---- runs --------------------------------------------------------------------------------------


def run_stress(uri, opts, paths, rounds, min_loop_runs: int = 2) -> dict:
    """All processes import first, then start together (a barrier); the ingest time is from that
    start to the last ingest's end; the loops go on until each has run on the final data."""
    ctx = mp.get_context("spawn")
    out, stop = ctx.Queue(), ctx.Event()
    barrier = ctx.Barrier(len(paths) + 3)
    ingests = [ctx.Process(target=ingest_worker, args=(uri, opts, str(p), rounds, out, barrier)) for p in paths]
    loops = [ctx.Process(target=loop_worker, args=(kind, uri, opts, stop, out, barrier, min_loop_runs))
             for kind in ("pairs", "select")]
    for p in ingests + loops:
        p.start()
    barrier.wait()
    t0 = time.time()
    for p in ingests:
        p.join()
    stop.set()
    for p in loops:
        p.join()
    runs: dict[str, list[int]] = {}
    start, end = None, t0
    while not out.empty():
        kind, done, errors = out.get()
        if kind == "ingest_end":
            end = max(end, done)
            continue
        if kind == "ingest_start":
            start = done if start is None else min(start, done)
            continue
        r = runs.setdefault(kind, [0, 0])
        r[0] += done
        r[1] += errors
    return {"runs": {k: {"completed": v[0], "errors": v[1]} for k, v in runs.items()},
            "ingest_seconds": round(end - (start or t0), 2), "seconds": round(time.time() - t0, 2)}


def sequential_worker(uri, opts, paths, rounds, out):
    from pairsift.ingest.pipeline import ingest
    from pairsift.store import open_store

    warm_up()
    store = open_store(uri, opts)
    t0 = time.perf_counter()
    for p in paths:
        for _ in range(rounds):
            ingest(store, p)
    out.put(time.perf_counter() - t0)


def run_sequential(uri, opts, paths, rounds) -> float:
    """The same ingests one after another in one warmed-up process: no contention at all."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=sequential_worker, args=(uri, opts, [str(p) for p in paths], rounds, out))
    proc.start()
    seconds = out.get()
    proc.join()
    return seconds


def run_naive(uri, opts, paths) -> int:
    import lance

    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=naive_worker, args=(uri, opts, str(p), out)) for p in paths]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    ids = lance.dataset(uri, storage_options=opts).to_table().column(0).to_pylist()
    return len(ids) - len(set(ids))


def moto_server():
    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    creds = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench"}
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **creds).create_bucket(Bucket="bench")
    return server, {**creds, "region": "us-east-1", "endpoint": endpoint, "allow_http": "true"}


def backend_uri(backend: str, tmp: Path, opts: dict | None, name: str) -> str:
    return str(tmp / name) if backend == "local" else f"s3://bench/{name}-{uuid.uuid4().hex[:8]}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k", type=int, default=4, help="concurrent ingest processes")
    ap.add_argument("--records", type=int, default=3000, help="records per input file (neighbours overlap by half)")
    ap.add_argument("--rounds", type=int, default=2, help="times each ingest process ingests its file")
    ap.add_argument("--backend", choices=["local", "s3", "both"], default="both")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-conc-"))
    paths = write_inputs(tmp, args.k, args.records)
    want = expected_ids(args.k, args.records)
    results = {"k": args.k, "records": args.records, "rounds": args.rounds, "backends": {}}
    server = None
    backends = ["local", "s3"] if args.backend == "both" else [args.backend]
    try:
        for backend in backends:
            opts = None
            if backend == "s3":
                server, opts = moto_server()
            cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            uri = backend_uri(backend, tmp, opts, "stress")
            stress = run_stress(uri, opts, paths, args.rounds)
            checks = audit(uri, opts, want, tmp)
            seq = run_sequential(backend_uri(backend, tmp, opts, "sequential"), opts, paths, args.rounds)
            naive_dups = run_naive(backend_uri(backend, tmp, opts, "naive.lance"), opts, paths)
            cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            results["backends"][backend] = {
                **stress,
                **checks,
                "sequential_ingest_seconds": round(seq, 2),
                "concurrent_over_sequential": round(stress["ingest_seconds"] / seq, 2),
                "naive_append_duplicates": naive_dups,
                "child_cpu_seconds": round((cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime), 1),
                "loadavg": [round(x, 2) for x in os.getloadavg()],
            }
            if server is not None:
                server.stop()
                server = None
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(results, indent=2))
    bad = [b for b, r in results["backends"].items()
           if any(r["duplicates"].values()) or any(r["lost"].values())
           or r.get("subset", {}).get("member_duplicates")
           or r.get("subset", {}).get("members") != r.get("subset", {}).get("manifest_count")
           or r.get("subsets_listed") != 1]
    if bad:
        print(f"FAILED on {bad}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
