"""The write protocol in one process: create-or-fail, keyed compare-and-swap appends, sets.

Threads share nothing but the store (Lance releases the GIL while it writes), so these races
are real; the multi-process and kill -9 versions are in tests/concurrency (marked slow).
"""

from __future__ import annotations

import threading

import pyarrow as pa
import pytest

from pairsift.errors import SchemaError
from pairsift.store import PROMPTS, TableStage, content_id
from pairsift.store.commit import create_table
from pairsift.store.schema import embeddings_schema

from .helpers import prompts


def race(fns) -> list:
    """Run the callables in threads released together; re-raise the first error."""
    barrier = threading.Barrier(len(fns))
    out: list = [None] * len(fns)
    errors: list = []

    def run(i, fn):
        barrier.wait()
        try:
            out[i] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return out


def test_create_never_replaces_a_table_with_rows(tmp_store):
    with tmp_store.writer() as w:
        w.append("prompts", prompts("a", "b"), PROMPTS)
    # A late creator (it checked before the table existed) must fail, not replace it.
    assert create_table(tmp_store.table_uri("prompts"), PROMPTS, None, "prompts") is False
    assert tmp_store.count("prompts") == 2


def test_concurrent_first_writes_to_one_table_lose_nothing(tmp_store):
    """Issue 9 #1 in miniature: eight writers create the same table at once."""
    texts = [[f"w{i}-{j}" for j in range(20)] + ["shared"] for i in range(8)]

    def write(ts):
        def go():
            with tmp_store.writer() as w:
                w.append("prompts", prompts(*ts), PROMPTS)

        return go

    race([write(ts) for ts in texts])
    got = tmp_store.scan("prompts").collect()["text"].to_list()
    assert sorted(got) == sorted({t for ts in texts for t in ts})  # nothing lost, "shared" once


def test_concurrent_keyed_appends_duplicate_nothing(tmp_store):
    """Issue 9 #2 in miniature: overlapping appends into an existing table."""
    with tmp_store.writer() as w:
        w.append("prompts", prompts("seed"), PROMPTS)
    batches = [[f"k{j}" for j in range(i * 10, i * 10 + 40)] for i in range(6)]  # heavy overlap

    def write(ts):
        def go():
            with tmp_store.writer(rows_per_file=7) as w:  # several staged files each
                w.append("prompts", prompts(*ts))
            return w

        return go

    race([write(ts) for ts in batches])
    got = tmp_store.scan("prompts").collect()["text"].to_list()
    assert len(got) == len(set(got)) == 1 + len({t for ts in batches for t in ts})


def test_stage_drops_rows_committed_meanwhile_and_counts_them(tmp_store):
    with tmp_store.writer() as w:
        w.append("prompts", prompts("a"), PROMPTS)
    slow = TableStage(tmp_store, "prompts", rows_per_file=1)
    added = slow.add(prompts("a", "b", "c", "d", "d"))
    assert (added.rows, added.present, added.repeated) == (3, 1, 1)
    with tmp_store.writer() as w:  # another job commits b and c first
        w.append("prompts", prompts("b", "c", "e"))
    slow.commit()
    assert slow.raced == 2 and slow.rows == 1
    got = tmp_store.scan("prompts").collect()["text"].to_list()
    assert sorted(got) == ["a", "b", "c", "d", "e"]


def test_a_changed_layout_stops_the_commit(tmp_store):
    with tmp_store.writer() as w:
        w.append("prompts", prompts("a"), PROMPTS)
    stage = TableStage(tmp_store, "prompts")
    stage.add(prompts("b"))
    tmp_store.dataset("prompts").add_columns([pa.field("extra", pa.int32())])
    with pytest.raises(SchemaError, match="changed its columns"):
        stage.commit()
    assert tmp_store.count("prompts") == 1


def test_two_runs_of_one_set_store_each_id_once(tmp_store):
    """Issue 9 #6 in miniature: two writers of one embedding set with overlapping ids."""
    from pairsift.compute.sets import SetTable, check_setup

    schema = embeddings_schema(2, {"model": "m", "dim": 2})

    def rows(ids):
        return pa.table(
            {
                "id": [content_id(str(i)) for i in ids],
                "vector": pa.FixedSizeListArray.from_arrays(pa.array([0.5, 0.5] * len(ids), pa.float32()), 2),
                "n_tokens": pa.array([1] * len(ids), pa.int32()),
                "truncated": [False] * len(ids),
            },
            schema=schema,
        )

    def run():
        table = SetTable(tmp_store, "embeddings_x", schema)
        return sum(table.add(rows(range(c, c + 50))) for c in range(0, 300, 50))

    committed = race([run, run, run])
    ids = tmp_store.scan("embeddings_x").collect()["id"]
    assert ids.len() == ids.n_unique() == 300 == sum(committed)
    with pytest.raises(Exception, match="different setup"):
        check_setup("embeddings_x", tmp_store.dataset("embeddings_x").schema, embeddings_schema(2, {"model": "n", "dim": 2}))
