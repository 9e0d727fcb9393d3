"""`label resolve` in real processes started at one instant: beside itself and beside an ingest.

The annotator rows of ``pairs`` are keyed (pair_id, label_source): however many resolves run at
once, each oriented pair has exactly one annotator row, a changed majority rewrites that row
(never a second one), and the result equals one resolve run alone.
"""

from __future__ import annotations

import pytest

from pairsift.label.importing import import_labels
from pairsift.label.resolve import resolve
from pairsift.store import pair_id, prompt_id, response_id
from tests.concurrency.helpers import (
    check_store,
    pairs_records,
    run_all,
    table_keys,
    write_pairs_file,
)

from .checks import consistent, copy_store, second_round, state
from .helpers import members

pytestmark = pytest.mark.slow


def _resolves(store, k: int, extra: list[list[str]] | None = None) -> None:
    commands = [["label", "resolve", "u", "--store", store.uri] for _ in range(k)] + (extra or [])
    results = run_all(commands)
    assert all(rc == 0 for rc, _, _ in results), [err[-1500:] for _, _, err in results]


def _annotator_rows(store) -> dict[str, list[str]]:
    rows = store.dataset("pairs").to_table(columns=["pair_id", "chosen_id"], filter="label_source = 'annotator'")
    out: dict[str, list[str]] = {}
    for p, c in zip(rows.column(0).to_pylist(), rows.column(1).to_pylist()):
        out.setdefault(p, []).append(c)
    return out


def test_concurrent_resolves_store_each_annotator_row_once(labelled_store, tmp_path):
    store = labelled_store
    first, second = second_round(store, tmp_path)
    import_labels(store, "u", first)
    ref = copy_store(store, tmp_path, "ref")

    # round 1: no annotator row yet; three resolves all add the same 15 rows at once
    resolve(ref, "u")
    _resolves(store, 3)
    consistent(store)
    check_store(store)
    assert state(store) == state(ref)
    rows = _annotator_rows(store)
    assert len(rows) == 15 and all(len(v) == 1 for v in rows.values())

    # round 2: majorities flip (0-5), vanish (6-11) and appear (15-17) while three resolves race
    import_labels(store, "u", second)
    import_labels(ref, "u", second)
    resolve(ref, "u")
    _resolves(store, 3)
    consistent(store)
    check_store(store)
    assert state(store) == state(ref)
    rows = _annotator_rows(store)
    ms = members(store)
    assert len(rows) == 12 and all(len(v) == 1 for v in rows.values())
    assert all(rows[m["pair_id"]] == [m["b_id"]] for m in ms[:6] + ms[15:])  # replaced, not added
    assert all(m["pair_id"] not in rows for m in ms[6:12])


def test_resolve_racing_an_ingest_duplicates_nothing(labelled_store, tmp_path):
    """An ingest adds the dataset's own rows (label_source "dataset") for the very pairs the
    annotators labelled, plus new pairs, while two resolves add the annotator rows."""
    store = labelled_store
    first, _ = second_round(store, tmp_path)
    import_labels(store, "u", first)
    ref = copy_store(store, tmp_path, "ref")
    resolve(ref, "u")
    # the store's plain (not chat) prompts, their answers 1 over 0: the same pair ids as subset u
    same = [{"prompt": f"Question {i}: how do I do thing {i}?", "chosen": f"Answer 1 to question {i}.",
             "rejected": f"Answer 0 to question {i}."} for i in range(6) if i % 3]
    records = same + pairs_records(0, 2000)
    path = write_pairs_file(tmp_path / "more.jsonl", records)
    _resolves(store, 2, extra=[["ingest", str(path), "--store", store.uri]])
    consistent(store)
    check_store(store)
    keys = table_keys(store, "pairs")
    dataset = {p for p, source in keys if source == "dataset"}
    assert len(dataset) == len(records)  # every ingested pair, once
    shared = set()
    for r in same:
        p = prompt_id(r["prompt"])
        shared.add(pair_id(response_id(p, r["chosen"]), response_id(p, r["rejected"])))
    assert shared <= {m["pair_id"] for m in members(store)} and shared <= dataset  # the subset's own pairs
    annotated = {p for p, source in keys if source == "annotator"}
    assert annotated == set(_annotator_rows(ref)) and shared & annotated  # both sources of a pair kept
    assert state(store)["members"] == state(ref)["members"]
