"""The labels table: ids, choices, effective labels, and concurrent writers (real processes)."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from pairsift.label.table import (
    effective,
    insert_new,
    label_id,
    parse_choice,
    read,
    rows_table,
    update_existing,
)
from tests.conftest import S3_BUCKET


def _row(pair: str, who: str, rnd: int = 0, choice: str = "a", undone: bool = False, t: int = 0) -> dict:
    at = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=t)
    return {"label_id": label_id("u", pair, who, rnd), "subset": "u", "pair_id": pair, "annotator": who,
            "round": rnd, "choice": choice, "left": None, "rationale": None, "seconds": None, "origin": "file",
            "created_at": at, "undone_at": at if undone else None}


def test_ids_and_choices():
    assert label_id("u", "p", "x", 0) == label_id("u", "p", "x", 0) != label_id("u", "p", "x", 1)
    assert label_id("u", "p", "x", 0) != label_id("v", "p", "x", 0) != label_id("u", "p", "y", 0)
    assert [parse_choice(x) for x in ("A", " b ", "Tie", "both  bad", "BOTH_BAD", "both-bad", "skip")] == [
        "a", "b", "tie", "both_bad", "both_bad", "both_bad", "skip"]
    assert parse_choice("c") is None and parse_choice(1) is None and parse_choice(None) is None


def test_insert_is_idempotent_and_effective_takes_the_last_live_round(tmp_store):
    rows = [_row("p1", "x"), _row("p1", "y", choice="b"), _row("p2", "x", choice="tie")]
    insert_new(tmp_store, rows_table(rows))
    insert_new(tmp_store, rows_table(rows + rows))  # again, and with in-batch duplicates
    assert tmp_store.count("labels") == 3
    # x takes back p1 (round 0) and labels it again (round 1), then undoes round 1 too
    update_existing(tmp_store, rows_table([_row("p1", "x", undone=True)]))
    insert_new(tmp_store, rows_table([_row("p1", "x", 1, "b", t=5)]))
    eff = {(r["pair_id"], r["annotator"]): r for r in effective(read(tmp_store, "u")).to_dicts()}
    assert eff[("p1", "x")]["round"] == 1 and eff[("p1", "x")]["choice"] == "b"
    update_existing(tmp_store, rows_table([_row("p1", "x", 1, "b", undone=True, t=5)]))
    eff = {(r["pair_id"], r["annotator"]) for r in effective(read(tmp_store, "u")).to_dicts()}
    assert eff == {("p1", "y"), ("p2", "x")}
    assert read(tmp_store, pair_ids=["p2"]).height == 1 and read(tmp_store, "nope").height == 0
    # an update never adds a row: a label that is not stored stays not stored
    assert update_existing(tmp_store, rows_table([_row("p9", "x", undone=True)])) is not None
    assert tmp_store.count("labels") == 4 and read(tmp_store, pair_ids=["p9"]).height == 0
    # nothing new: no commit
    assert insert_new(tmp_store, rows_table(rows)) is None


def _writer(uri: str, opts, worker: int, start: float, out) -> None:
    from pairsift.label.table import insert_new, rows_table, update_existing
    from pairsift.store import Store

    store = Store(uri, opts)
    time.sleep(max(0.0, start - time.time()))
    for k in range(6):
        # every worker inserts the same 5 keys per round (a retried POST on two servers), plus its own;
        # the first round's commits race to create the table
        shared = [_row(f"s{k}-{j}", "shared") for j in range(5)]
        own = [_row(f"w{worker}-{k}", f"w{worker}")]
        insert_new(store, rows_table(shared + own))
        # ... then every worker undoes the same shared labels (two undos of one label at once)
        update_existing(store, rows_table([{**r, "undone_at": r["created_at"]} for r in shared]))
    out.put(worker)


def _store_uri(backend: str, tmp_path, request) -> tuple[str, dict | None]:
    if backend == "local":
        return str(tmp_path / "store"), None
    return f"s3://{S3_BUCKET}/{uuid.uuid4().hex}", request.getfixturevalue("s3_server")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local", "s3"])
@pytest.mark.parametrize("stagger", [0.0, 0.15])
def test_concurrent_processes_lose_and_duplicate_nothing(tmp_path, request, backend, stagger):
    uri, opts = _store_uri(backend, tmp_path, request)
    ctx = mp.get_context("spawn")  # Lance is not fork-safe
    out = ctx.Queue()
    start = time.time() + 4.0
    procs = [ctx.Process(target=_writer, args=(uri, opts, i, start + i * stagger, out)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0
    from pairsift.store import Store

    got = read(Store(uri, opts), "u")
    ids = got["label_id"].to_list()
    assert len(ids) == len(set(ids)) == 6 * 5 + 4 * 6  # shared keys once, every worker's own
    shared = got.filter(got["annotator"] == "shared")
    assert shared.height == 30 and shared["undone_at"].null_count() == 0  # every undo landed
    assert got.filter(got["annotator"] != "shared")["undone_at"].null_count() == 4 * 6


def _warm(_: int) -> int:
    import pairsift.label.table  # noqa: F401 - imports paid before the start line

    return os.getpid()


def _create_and_label(task: tuple) -> str:
    """One process of a race: label a pair on a store with no labels table yet; returns the id
    of the label once its commit returned (what the page shows as saved)."""
    from pairsift.label.table import insert_new, rows_table
    from pairsift.store import Store

    uri, opts, who, at = task
    store = Store(uri, opts)
    time.sleep(max(0.0, at - time.time()))
    row = _row("p0", who)
    insert_new(store, rows_table([row]))  # creates the table first: every process races for it
    return row["label_id"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local", "s3"])
def test_processes_racing_to_create_the_table_lose_no_confirmed_label(tmp_path, request, backend):
    """Issue 9 #1 for labels: six processes create the labels table at once and label at once.
    With `write_dataset(mode="create")` a late creator replaced the table (some labels failed,
    some creators crashed); the store's create-or-fail never replaces one."""
    from pairsift.store import Store

    with mp.get_context("spawn").Pool(6) as pool:
        pool.map(_warm, range(6), chunksize=1)
        for trial in range(4):
            uri, opts = _store_uri(backend, tmp_path / f"t{trial}", request)
            at = time.time() + 1.5
            confirmed = pool.map(_create_and_label, [(uri, opts, f"w{i}", at) for i in range(6)], chunksize=1)
            ids = read(Store(uri, opts))["label_id"].to_list()
            assert sorted(ids) == sorted(confirmed) and len(set(ids)) == 6, trial
