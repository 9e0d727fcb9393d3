"""Which commit keeps the ``labels`` table duplicate-free under concurrency (issue 9 x issue 11)?

Two earlier measurements disagreed: Lance's merge-insert on ``label_id`` left 55 rows for 50 keys
(6 processes) WITHOUT the ``lance-schema:unenforced-primary-key`` field metadata and 50 with it;
"insert if not exists" (metadata not set) left 400 rows for 100 keys x 4 processes. This script
runs every candidate side by side, in the same run, on a local directory and on the moto S3
server, with N real (spawned) processes started at one instant:

scenario ``insert`` (the label page's and `label import`'s writes): R rounds; in round r every
process commits the same K shared labels (a retried POST reaching two servers, an import beside
the page) plus one label of its own. Expected rows: R*K + N*R.

- ``append``        plain Lance append, no key check (what nothing-keyed gives: the baseline)
- ``mi-insert``     merge_insert insert-if-not-exists, table WITHOUT primary-key metadata
- ``mi-insert-pk``  the same, table WITH the metadata (what the label room did)
- ``mi-upsert``     merge_insert upsert (update matched, insert the rest), no metadata
- ``mi-upsert-pk``  the same, with the metadata (`label import`)
- ``stage``         the store's keyed compare-and-swap writer (``store.writer.TableStage``), no
                    metadata
- ``stage-pk``      the same on the shipped schema (with the metadata): what ``label`` now does

scenario ``undo``: the K shared labels exist; in each round every process marks all K undone
(merge_insert update-only: what undo does) and inserts one label of its own in another commit.
Expected rows: K + N*R, and every shared label undone.

- ``update``        update-only merge_insert, no metadata
- ``update-pk``     the same, with the metadata

scenario ``mixed`` (the whole label workload at once): each round inserts shared + own labels,
undoes this round's shared labels, and every other round one process compacts the table.

- ``mi-pk``         every write a merge_insert on a table with the metadata
- ``stage+update``  inserts by TableStage, undo by update-only merge_insert, no metadata
- ``stage+update-pk`` the same on the shipped schema: what ``label`` now does

A compaction that loses its race is skipped (the label server compacts on a best-effort basis);
those are counted apart from failed label commits.

scenario ``create`` (item 1): the table does not exist; every process creates it and at once
commits one label of its own (a "confirmed" label). Lost = confirmed labels missing afterwards.

- ``write-create``  ``lance.write_dataset(mode="create")`` (what the label room did), then
                    merge_insert with the metadata
- ``create-table``  ``store.commit.create_table`` (empty version 1 behind a commit lock), then
                    merge_insert with the metadata

    nice -n 10 python benchmarks/bench_label_writes.py --procs 6 --keys 50 --rounds 3 --trials 3

Then, in one process (no contention), what a commit costs: C commits of one new label each,
interleaved, into two tables that already hold M labels: the keyed writer vs merge-insert with
the metadata (median milliseconds and their ratio).

Prints a line per backend, scenario and variant (rows expected and found, duplicates, lost,
failed commits per trial) and writes the JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LANCE_LOG", "error")

SCENARIOS = {
    "insert": ["append", "mi-insert", "mi-insert-pk", "mi-upsert", "mi-upsert-pk", "stage", "stage-pk"],
    "undo": ["update", "update-pk"],
    "mixed": ["mi-pk", "stage+update", "stage+update-pk"],
    "create": ["write-create", "create-table"],
}
PK_VARIANTS = {"mi-insert-pk", "mi-upsert-pk", "update-pk", "mi-pk", "write-create", "create-table", "stage-pk",
               "stage+update-pk"}


# ---- rows and schemas ----------------------------------------------------------------------------


def schema(pk: bool):
    from pairsift.store.schema import LABELS, PRIMARY_KEY

    if pk:
        return LABELS
    f = LABELS.field("label_id")
    meta = {k: v for k, v in (f.metadata or {}).items() if k.decode() not in PRIMARY_KEY}
    return LABELS.set(LABELS.get_field_index("label_id"), f.with_metadata(meta))


def rows(pairs: list[str], who: str, sch, undone: bool = False, seconds: float | None = None):
    import pyarrow as pa

    from pairsift.label.table import label_id

    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return pa.Table.from_pylist(
        [{"label_id": label_id("u", p, who, 0), "subset": "u", "pair_id": p, "annotator": who, "round": 0,
          "choice": "a", "left": None, "rationale": None, "seconds": seconds, "origin": "file",
          "created_at": at, "undone_at": at + timedelta(seconds=1) if undone else None} for p in pairs],
        schema=sch,
    )


def shared(r: int, k: int) -> list[str]:
    return [f"s{r}-{j}" for j in range(k)]


# ---- the writes ---------------------------------------------------------------------------------


def write(op: str, uri: str, opts, data) -> None:
    import lance

    from pairsift.store.store import Store
    from pairsift.store.writer import TableStage

    if op == "append":
        lance.write_dataset(data, uri, mode="append", storage_options=opts)
        return
    if op == "stage":
        root, name = uri.rsplit("/", 1)
        st = TableStage(Store(root, opts), name.removesuffix(".lance"), data.schema, key=("label_id",))
        st.add(data)
        st.commit()
        return
    ds = lance.dataset(uri, storage_options=opts)
    b = ds.merge_insert("label_id")
    if op == "insert":
        b = b.when_not_matched_insert_all()
    elif op == "upsert":
        b = b.when_matched_update_all().when_not_matched_insert_all()
    elif op == "update":
        b = b.when_matched_update_all()
    else:
        raise ValueError(op)
    b.execute(data)


def worker(task: dict) -> dict:
    """One process's part of one trial; starts at task['at']."""
    import lance

    from pairsift.store.commit import create_table

    out = {"pid": os.getpid(), "ok": 0, "failed": 0, "errors": [], "confirmed": [], "compactions_skipped": 0}
    v, uri, opts, me = task["variant"], task["uri"], task["opts"], task["me"]
    k, n_rounds, sch = task["keys"], task["rounds"], schema(v in PK_VARIANTS)
    insert_op = {"append": "append", "mi-insert": "insert", "mi-insert-pk": "insert", "mi-upsert": "upsert",
                 "mi-upsert-pk": "upsert", "stage": "stage", "stage-pk": "stage", "update": "insert",
                 "update-pk": "insert", "mi-pk": "insert", "stage+update": "stage", "stage+update-pk": "stage",
                 "write-create": "insert", "create-table": "insert"}[v]

    def attempt(fn, *args, label=None):
        try:
            fn(*args)
            out["ok"] += 1
            if label is not None:
                out["confirmed"].append(label)
        except Exception as e:  # noqa: BLE001 - counted and reported
            out["failed"] += 1
            out["errors"].append(f"{type(e).__name__}: {str(e).splitlines()[0][:160]}")

    time.sleep(max(0.0, task["at"] - time.time()))
    t0 = time.perf_counter()
    if task["scenario"] == "create":
        if v == "write-create":
            try:
                lance.write_dataset(sch.empty_table(), uri, schema=sch, mode="create", storage_options=opts)
            except OSError as e:
                if "already exists" not in str(e):
                    raise
        else:
            create_table(uri, sch, opts, "labels")
        own = f"w{me}"
        attempt(write, insert_op, uri, opts, rows([own], own, sch), label=own)
    for r in range(n_rounds if task["scenario"] != "create" else 0):
        own = rows([f"w{me}-{r}"], f"w{me}", sch)
        if task["scenario"] == "insert":
            attempt(write, insert_op, uri, opts, pa_concat(rows(shared(r, k), "shared", sch), own))
        elif task["scenario"] == "undo":
            attempt(write, "update", uri, opts, rows(shared(0, k), "shared", sch, undone=True, seconds=float(me)))
            attempt(write, insert_op, uri, opts, own)
        elif task["scenario"] == "mixed":
            attempt(write, insert_op, uri, opts, pa_concat(rows(shared(r, k), "shared", sch), own))
            attempt(write, "update", uri, opts, rows(shared(r, k), "shared", sch, undone=True, seconds=float(me)))
            if me == 0 and r % 2 == 1:
                try:
                    lance.dataset(uri, storage_options=opts).optimize.compact_files()
                except OSError:  # lost a race with a label commit: skipped, as the server does
                    out["compactions_skipped"] += 1
    out["seconds"] = time.perf_counter() - t0
    return out


def pa_concat(a, b):
    import pyarrow as pa

    return pa.concat_tables([a, b])


def safe_worker(task: dict) -> dict:
    try:
        return worker(task)
    except Exception as e:  # noqa: BLE001 - a crashed worker is a result too
        return {"pid": os.getpid(), "ok": 0, "failed": 1, "confirmed": [], "seconds": 0.0, "compactions_skipped": 0,
                "errors": [f"worker crashed: {type(e).__name__}: {e}\n{traceback.format_exc()[-400:]}"]}


# ---- one trial -------------------------------------------------------------------------------------


def prepare(scenario: str, variant: str, uri: str, opts, k: int) -> None:
    """Create the table (every scenario but `create`), with K shared labels for `undo`."""
    import lance

    from pairsift.store.commit import create_table

    if scenario == "create":
        return
    sch = schema(variant in PK_VARIANTS)
    create_table(uri, sch, opts, "labels")
    if scenario == "undo":
        lance.write_dataset(rows(shared(0, k), "shared", sch), uri, mode="append", storage_options=opts)


def expected(scenario: str, n: int, k: int, r: int) -> int:
    return {"insert": r * k + n * r, "undo": k + n * r, "mixed": r * k + n * r, "create": n}[scenario]


def audit(scenario: str, uri: str, opts, results: list[dict], n: int, k: int, r: int) -> dict:
    import lance

    t = lance.dataset(uri, storage_options=opts).to_table(columns=["label_id", "pair_id", "annotator", "undone_at"])
    ids = t.column("label_id").to_pylist()
    pairs = set(zip(t.column("pair_id").to_pylist(), t.column("annotator").to_pylist()))
    c = Counter(ids)
    want_rows = expected(scenario, n, k, r)
    if scenario == "create":
        want = {(f"w{i}", f"w{i}") for i in range(n)}
        confirmed = {(x, x) for res in results for x in res["confirmed"]}
        lost = len(confirmed - pairs)
    else:
        want = {(f"w{i}-{j}", f"w{i}") for i in range(n) for j in range(r)}
        want |= {(p, "shared") for j in range(r if scenario != "undo" else 1) for p in shared(j, k)}
        lost = len(want - pairs)
    out = {"expected": want_rows, "rows": len(ids), "duplicates": len(ids) - len(c), "lost": lost}
    if scenario in ("undo", "mixed"):
        und = dict(zip(ids, t.column("undone_at").to_pylist()))
        out["not_undone"] = sum(1 for i, p in zip(ids, t.column("pair_id").to_pylist())
                                if p.startswith("s") and und[i] is None)
    return out


def trial(pool, scenario: str, variant: str, uri: str, opts, n: int, k: int, r: int, lead: float) -> dict:
    prepare(scenario, variant, uri, opts, k)
    at = time.time() + lead
    tasks = [{"scenario": scenario, "variant": variant, "uri": uri, "opts": opts, "me": i, "keys": k,
              "rounds": r, "at": at} for i in range(n)]
    results = pool.map(safe_worker, tasks, chunksize=1)
    out = audit(scenario, uri, opts, results, n, k, r)
    out["failed_commits"] = sum(x["failed"] for x in results)
    out["compactions_skipped"] = sum(x.get("compactions_skipped", 0) for x in results)
    out["errors"] = sorted(Counter(e for x in results for e in x["errors"]).items())[:3]
    out["distinct_workers"] = len({x["pid"] for x in results})
    out["worker_seconds_max"] = round(max(x["seconds"] for x in results), 2)
    return out


# ---- cost of one commit, no contention ---------------------------------------------------------------


def cost(uri_of, opts, m: int, c: int) -> dict:
    """Median ms of a one-label commit into a table of `m` labels: keyed writer vs merge-insert."""
    import statistics

    import lance

    from pairsift.store.commit import create_table

    sch = schema(True)
    uris = {"stage": uri_of("cost-stage"), "mi-pk": uri_of("cost-mi")}
    for uri in uris.values():
        create_table(uri, sch, opts, "labels")
        lance.write_dataset(rows([f"base-{i}" for i in range(m)], "base", sch), uri, mode="append",
                            storage_options=opts)
    times: dict[str, list[float]] = {k: [] for k in uris}
    for i in range(c):
        for name, uri in uris.items():  # interleaved: load changes hit both alike
            data = rows([f"new-{i}"], "x", sch)
            t0 = time.perf_counter()
            write("stage" if name == "stage" else "insert", uri, opts, data)
            times[name].append((time.perf_counter() - t0) * 1000)
    med = {k: round(statistics.median(v), 1) for k, v in times.items()}
    return {"rows": m, "commits": c, "median_ms": med, "stage_over_mi_pk": round(med["stage"] / med["mi-pk"], 2)}


# ---- S3 ---------------------------------------------------------------------------------------------


def moto_server():
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    creds = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench"}
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **creds).create_bucket(Bucket="bench")
    return server, {**creds, "region": "us-east-1", "endpoint": endpoint, "allow_http": "true"}


def warm(_: int) -> int:
    import lance  # noqa: F401

    import pairsift.store.writer  # noqa: F401
    from pairsift.label.table import label_id  # noqa: F401

    return os.getpid()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--procs", type=int, default=6)
    ap.add_argument("--keys", type=int, default=50, help="shared labels per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--backend", choices=["local", "s3", "both"], default="both")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--lead", type=float, default=3.0, help="seconds between handing out a trial and its start")
    ap.add_argument("--cost-rows", type=int, default=20_000, help="labels in the table for the cost check (0: skip)")
    ap.add_argument("--cost-commits", type=int, default=20)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-labels-"))
    backends = ["local", "s3"] if args.backend == "both" else [args.backend]
    res: dict = {"procs": args.procs, "keys": args.keys, "rounds": args.rounds, "trials": args.trials,
                 "results": {}}
    ctx = mp.get_context("spawn")  # Lance is not fork-safe
    server = None
    t_start = time.time()
    with ctx.Pool(args.procs) as pool:
        pool.map(warm, range(args.procs * 2), chunksize=1)
        for backend in backends:
            opts = None
            if backend == "s3":
                server, opts = moto_server()
            for scenario in args.scenarios.split(","):
                for variant in SCENARIOS[scenario]:
                    runs = []
                    for t in range(args.trials):
                        name = f"{scenario}-{variant}-{t}-{uuid.uuid4().hex[:6]}.lance"
                        uri = str(tmp / name) if backend == "local" else f"s3://bench/labels/{name}"
                        runs.append(trial(pool, scenario, variant, uri, opts, args.procs, args.keys, args.rounds,
                                          args.lead))
                    res["results"][f"{backend}/{scenario}/{variant}"] = runs
                    agg = {k: [x.get(k) for x in runs] for k in ("expected", "rows", "duplicates", "lost",
                                                               "not_undone", "failed_commits",
                                                               "compactions_skipped")}
                    print(f"{backend:<5} {scenario:<6} {variant:<15} "
                          + "  ".join(f"{k}={v}" for k, v in agg.items() if any(x for x in v) or k in (
                              "rows", "duplicates", "lost", "failed_commits")),
                          flush=True)
                    for x in runs:
                        for e, c in x["errors"]:
                            print(f"      {c} x {e}", flush=True)
            if args.cost_rows:
                def uri_of(name: str, backend=backend) -> str:
                    name = f"{name}-{uuid.uuid4().hex[:6]}.lance"
                    return str(tmp / name) if backend == "local" else f"s3://bench/labels/{name}"

                res["results"][f"{backend}/cost"] = c = cost(uri_of, opts, args.cost_rows, args.cost_commits)
                print(f"{backend:<5} cost   one-label commit into {c['rows']:,} labels, median of {c['commits']}: "
                      f"keyed writer {c['median_ms']['stage']} ms, merge-insert+pk {c['median_ms']['mi-pk']} ms, "
                      f"ratio {c['stage_over_mi_pk']}", flush=True)
            if server is not None:
                server.stop()
                server = None
    res["wall_seconds"] = round(time.time() - t_start, 1)
    res["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    print(f"wall {res['wall_seconds']} s, load average {res['loadavg']}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
