"""The distributed commit primitive: fragments appended once each key, first commit wins, crash repair.

No Ray here: real Lance tables, real concurrent processes (spawn), as the drivers use them.
"""

from __future__ import annotations

import multiprocessing as mp

import lance
import numpy as np
import pyarrow as pa
import pytest

from pairsift.compute.distributed.commit import FragmentCommitter, Staged, write_staged
from pairsift.store.ids import content_id

SCHEMA = pa.schema([pa.field("id", pa.string(), nullable=False), pa.field("writer", pa.string())])


def ids(lo: int, hi: int) -> list[str]:
    return [content_id(str(i)) for i in range(lo, hi)]


def rows(keys: list[str], writer: str) -> pa.Table:
    return pa.table({"id": keys, "writer": [writer] * len(keys)}, schema=SCHEMA)


def new_table(path) -> str:
    uri = str(path / "t.lance")
    lance.write_dataset(SCHEMA.empty_table(), uri, schema=SCHEMA)
    return uri


def read(uri: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, w in lance.dataset(uri).to_table().to_pydict().items():
        out[k] = w
    by_id: dict[str, list[str]] = {}
    for i, w in zip(out["id"], out["writer"]):
        by_id.setdefault(i, []).append(w)
    return by_id


def test_append_keeps_the_first_committed_copy(tmp_path):
    uri = new_table(tmp_path)
    a = FragmentCommitter(uri, "id")
    assert a.commit([write_staged(rows(ids(0, 10), "a"), uri, "id", SCHEMA)]) == 10
    b = FragmentCommitter(uri, "id")  # started after a's commit: skips what a wrote
    assert len(b.done_keys()) == 10
    # a commits again, overlapping nothing of its own but 5 rows that b will also write
    assert a.commit([write_staged(rows(ids(10, 15), "a"), uri, "id", SCHEMA)]) == 5
    # b writes 10..20 (it started before 10..15 existed) in two fragments, with a duplicate inside its own batch
    staged = [write_staged(rows(ids(10, 18), "b"), uri, "id", SCHEMA),
              write_staged(rows(ids(17, 20), "b"), uri, "id", SCHEMA)]
    assert b.commit(staged) == 5  # 15..19 are new; 10..14 were a's first, 17 twice in b's own batch
    assert b.duplicates == 6
    got = read(uri)
    assert sorted(got) == sorted(ids(0, 20))
    assert all(len(w) == 1 for w in got.values())
    assert {got[i][0] for i in ids(10, 15)} == {"a"}
    assert lance.dataset(uri).count_rows() == 20


def test_start_repairs_duplicates_a_crash_left(tmp_path):
    uri = new_table(tmp_path)
    # Two plain appends of overlapping ids: what a job killed between its Append and its Delete leaves.
    lance.write_dataset(rows(ids(0, 6), "first"), uri, mode="append")
    lance.write_dataset(rows(ids(3, 9) + ids(8, 9), "second"), uri, mode="append")
    c = FragmentCommitter(uri, "id")
    assert c.repaired == 4  # 3, 4, 5 and the second 8
    got = read(uri)
    assert sorted(got) == sorted(ids(0, 9)) and all(len(w) == 1 for w in got.values())
    assert {got[i][0] for i in ids(3, 6)} == {"first"}
    assert np.array_equal(c.done_keys(), np.unique(c.done_keys()))


def test_groups_drop_a_prompt_another_writer_committed(tmp_path):
    uri = new_table(tmp_path)
    before = lance.dataset(uri).version
    a = FragmentCommitter(uri, "id", groups=True, scan_existing=False, version=before)
    b = FragmentCommitter(uri, "id", groups=True, scan_existing=False, version=before)
    p, q, r = ids(0, 3)
    # rows sharing a key are one group (a prompt's pairs): they never count as duplicates of each other
    assert a.commit([write_staged(rows([p, p, q], "a"), uri, "id", SCHEMA)]) == 3
    assert b.commit([write_staged(rows([q, q, r, r], "b"), uri, "id", SCHEMA)]) == 2  # q was a's
    got = read(uri)
    assert got == {p: ["a", "a"], q: ["a"], r: ["b", "b"]}


def _racer(uri: str, writer: str, start, chunks: list[tuple[int, int]]) -> int:
    c = FragmentCommitter(uri, "id")
    start.wait()
    added = 0
    for lo, hi in chunks:
        added += c.commit([write_staged(rows(ids(lo, hi), writer), uri, "id", SCHEMA)])
    return added


@pytest.mark.slow
def test_concurrent_writers_of_the_same_keys_lose_and_duplicate_nothing(tmp_path):
    uri = new_table(tmp_path)
    ctx = mp.get_context("spawn")  # Lance is not fork-safe
    start = ctx.Manager().Event()
    plans = {
        "w0": [(0, 40), (40, 80), (80, 120)],
        "w1": [(0, 40), (40, 80), (80, 120)],  # the same chunks at the same time
        "w2": [(100, 140), (20, 60)],
        "w3": [(60, 100), (130, 150)],
    }
    with ctx.Pool(len(plans)) as pool:
        results = [pool.apply_async(_racer, (uri, w, start, plan)) for w, plan in plans.items()]
        start.set()
        added = [r.get(timeout=240) for r in results]
    got = read(uri)
    assert sorted(got) == sorted(ids(0, 150))
    dups = {i: w for i, w in got.items() if len(w) > 1}
    assert not dups, f"{len(dups)} duplicated ids"
    assert sum(added) == 150 == lance.dataset(uri).count_rows()


def test_staged_round_trips_through_the_wire(tmp_path):
    uri = new_table(tmp_path)
    s = write_staged(rows(ids(0, 5), "a"), uri, "id", SCHEMA, max_rows_per_file=2)
    assert len(s.fragments) == 3
    back = Staged.from_wire(*s.to_wire())
    assert back.rows == 5 and np.array_equal(back.keys, s.keys)
    assert [f.physical_rows for f in back.fragments] == [2, 2, 1]
    assert FragmentCommitter(uri, "id").commit([back]) == 5


def test_empty_commit_makes_no_version(tmp_path):
    uri = new_table(tmp_path)
    c = FragmentCommitter(uri, "id")
    v = lance.dataset(uri).version
    assert c.commit([write_staged(SCHEMA.empty_table(), uri, "id", SCHEMA)]) == 0
    assert lance.dataset(uri).version == v


@pytest.mark.parametrize("bad", [0])
def test_ray_config_rejects_zero_workers(bad):
    from pairsift.compute.distributed.cluster import RayConfig
    from pairsift.errors import UsageError

    with pytest.raises(UsageError, match="--workers"):
        RayConfig(workers=bad)
