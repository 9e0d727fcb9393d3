"""Real processes against one store, and the invariants every test checks afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa

from pairsift.store import open_store
from pairsift.store.schema import table_key

RUNNER = Path(__file__).with_name("run_cli.py")
REPO = Path(__file__).resolve().parents[2]


def env(**extra: str) -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    e["LANCE_LOG"] = "error"
    e.pop("PAIRSIFT_TEST_KILL_AFTER_COMMIT", None)
    e.pop("PAIRSIFT_TEST_PAUSE_AFTER_COMMIT", None)
    e.update(extra)
    return e


def start(args: list[str], at: float, **extra: str) -> subprocess.Popen:
    """Start `pairsift ARGS` in a new process; it begins its command at time `at`."""
    return subprocess.Popen(
        [sys.executable, str(RUNNER), str(at), *args],
        env=env(**extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def finish(p: subprocess.Popen, timeout: float = 600) -> tuple[int, str, str]:
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def run_all(commands: list[list[str]], offsets: list[float] | None = None, lead: float = 8.0, **extra: str):
    """Run the commands concurrently: together (offsets 0) or staggered; returns (rc, out, err) each."""
    offsets = offsets or [0.0] * len(commands)
    t0 = time.time() + lead  # time for every process to import before the start line
    procs = [start(c, t0 + off, **extra) for c, off in zip(commands, offsets)]
    return [finish(p) for p in procs]


def run(args: list[str], **extra: str) -> tuple[int, str, str]:
    return finish(start(args, 0.0, **extra))


def one_error_line(err: str) -> bool:
    """The CLI's promise: a failure is one `Error:` line, never a traceback."""
    lines = [x for x in err.strip().splitlines() if x.strip()]
    return "Traceback" not in err and len(lines) >= 1 and lines[-1].startswith("Error: ")


def store_args(store) -> list[str]:
    args = ["--store", store.uri]
    for k, v in (store.storage_options or {}).items():
        args += ["--storage-option", f"{k}={v}"]
    return args


# ---- invariants ----------------------------------------------------------------------------------


def keys_of(store, table: str) -> list[tuple]:
    cols = list(table_key(table))
    t = store.dataset(table).to_table(columns=cols)
    return list(zip(*(t.column(c).to_pylist() for c in cols)))


def check_store(store, export_dir: Path | None = None) -> dict:
    """Assert every invariant of issue 9; returns {table: rows} and {subset: members}.

    - no duplicate key in any keyed table;
    - every subset's members (of the run its manifest names) = its manifest's count, pairs unique;
    - `export` writes exactly the subset's distinct pairs;
    - every response's prompt... is not required (children commit before parents), but every
      pair's responses exist.
    """
    store = open_store(store.uri, store.storage_options, create=False)
    out: dict = {"tables": {}, "subsets": {}}
    for name in store.table_names():
        key = table_key(name)
        rows = store.count(name)
        out["tables"][name] = rows
        if key is not None:
            keys = keys_of(store, name)
            assert len(keys) == len(set(keys)), f"{name}: {len(keys) - len(set(keys))} duplicate keys"
    if store.has_table("pairs") and store.has_table("responses"):
        have = {r for (r,) in keys_of(store, "responses")}
        pairs = store.dataset("pairs").to_table(columns=["chosen_id", "rejected_id"])
        for c, r in zip(pairs.column(0).to_pylist(), pairs.column(1).to_pylist()):
            assert c in have and r in have, "a pair whose responses are not committed"
    from pairsift.select.subsets import list_subsets, load_subset

    names = [m.name for m in list_subsets(store)]
    assert len(names) == len(set(names)), f"a subset is listed twice: {names}"
    for name in names:
        manifest, members = load_subset(store, name)
        ids = members.column("pair_id").to_pylist()
        assert len(ids) == len(set(ids)) == manifest.counts["selected"], (name, len(ids), manifest.counts["selected"])
        out["subsets"][name] = len(ids)
        if export_dir is not None and ids:
            from pairsift.select.export import export

            path = Path(export_dir) / f"{name}.jsonl"
            report = export(store, name, path)
            rows = [json.loads(x) for x in path.read_text().splitlines()]
            assert report.rows == len(rows) == len({r["pair_id"] for r in rows}) == len(ids)
    return out


def table_keys(store, table: str) -> set:
    return set(keys_of(open_store(store.uri, store.storage_options, create=False), table))


def write_pairs_file(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def pairs_records(lo: int, hi: int, shared_prompt: bool = False) -> list[dict]:
    """`pairs` format records i in [lo, hi): prompt i (or one shared prompt), two responses."""
    out = []
    for i in range(lo, hi):
        prompt = "the shared question" if shared_prompt else f"question {i}"
        out.append({"prompt": prompt, "chosen": f"good answer {i}", "rejected": f"bad answer {i}",
                    "score_chosen": 1.0 + i % 3, "score_rejected": 0.0})
    return out


def as_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema)
