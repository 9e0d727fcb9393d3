"""`label resolve`: majority votes orient the pairs everywhere later commands look."""

from __future__ import annotations

import json

import polars as pl
import pyarrow.compute as pc

from pairsift.features.pairs import build_pairs
from pairsift.label.importing import import_labels
from pairsift.label.resolve import resolve
from pairsift.label.table import read, rows_table, update_existing
from pairsift.select.export import export
from pairsift.select.subsets import load_subset, select
from pairsift.train.stream import check_labelled, read_members

from .helpers import EMB, members

# votes per pair index, by annotators x, y, z (None: no label)
VOTES = [
    ("a", "a", "b"),  # a
    ("b", "b", "tie"),  # b
    ("tie", "tie", "a"),  # tie
    ("both bad", "both bad", "a"),  # both_bad
    ("a", "b", "skip"),  # no majority (a skip is not a vote)
    ("skip", None, None),  # unlabelled
]


def _import(store, tmp_path, votes, subset="u"):
    ms = members(store, subset)
    rows = [{"pair_id": ms[i]["pair_id"], "label": v, "annotator": who}
            for i, vs in enumerate(votes) for who, v in zip("xyz", vs) if v is not None]
    path = tmp_path / f"votes-{len(rows)}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    import_labels(store, subset, path)
    return ms


def _versions(store):
    return {t: store.dataset(t).version for t in ("pairs", "pair_features", "subset_members", "subsets")}


def _features(store, pair_ids):
    t = store.dataset("pair_features").to_table(columns=["pair_id", "label", "label_source", "orientable"],
                                                 filter=pc.field("pair_id").isin(pair_ids))
    return {r["pair_id"]: r for r in t.to_pylist()}


def test_majority_orients_pairs_everywhere(labelled_store, tmp_path):
    store = labelled_store
    ms = _import(store, tmp_path, VOTES)
    rep = resolve(store, "u")
    assert rep.outcomes == {"a": 1, "b": 1, "tie": 1, "both_bad": 1, "no_majority": 1, "unlabelled": 13}
    assert rep.oriented == 2 and not rep.labelled and rep.annotators == 3
    # subset members: what train reads
    got = {m["pair_id"]: m for m in members(store)}
    assert (got[ms[0]["pair_id"]]["chosen_id"], got[ms[0]["pair_id"]]["rejected_id"]) == (ms[0]["a_id"], ms[0]["b_id"])
    assert (got[ms[1]["pair_id"]]["chosen_id"], got[ms[1]["pair_id"]]["label_source"]) == (ms[1]["b_id"], "annotator")
    assert all(got[m["pair_id"]]["chosen_id"] is None for m in ms[2:])
    manifest = load_subset(store, "u")[0]
    assert manifest["labelled"] is False and manifest["counts"]["annotated"] == 2
    assert manifest["counts"]["resolved"] == {"tie": 1, "both_bad": 1, "no_majority": 1, "unlabelled": 13}
    # the store's pairs table: one annotator row per oriented pair
    pairs = store.dataset("pairs").to_table(filter="label_source = 'annotator'").to_pylist()
    assert sorted((p["pair_id"], p["chosen_id"]) for p in pairs) == sorted(
        [(ms[0]["pair_id"], ms[0]["a_id"]), (ms[1]["pair_id"], ms[1]["b_id"])])
    assert json.loads(next(p for p in pairs if p["pair_id"] == ms[0]["pair_id"])["meta"])["votes"]["a"] == 2
    # pair_features updated in place
    pf = _features(store, [m["pair_id"] for m in ms[:3]])
    assert (pf[ms[0]["pair_id"]]["label"], pf[ms[0]["pair_id"]]["label_source"]) == (1, "annotator")
    assert (pf[ms[1]["pair_id"]]["label"], pf[ms[1]["pair_id"]]["orientable"]) == (-1, True)
    assert pf[ms[2]["pair_id"]]["label"] is None and store.count("pair_features") == 18

    # a second run commits nothing
    before = _versions(store)
    again = resolve(store, "u")
    assert again.written == {} and _versions(store) == before

    # later commands see it: a rebuilt pair_features keeps the annotator orientation ...
    build_pairs(store, rebuild=True)
    pf = _features(store, [ms[0]["pair_id"], ms[1]["pair_id"]])
    assert {(r["label"], r["label_source"]) for r in pf.values()} == {(1, "annotator"), (-1, "annotator")}
    # ... and a new selection chooses among the oriented pairs, oriented by the annotators
    sub = select(store, "band", "after", embedding=EMB, min=-1.0, max=1.0)
    assert sub.labelled and sub.counts["selected"] == 2
    assert {m["label_source"] for m in members(store, "after")} == {"annotator"}


def test_fully_resolved_subset_exports_and_trains(labelled_store, tmp_path):
    store = labelled_store
    ms = members(store)
    votes = [("a" if i % 3 else "b", "a" if i % 3 else "b", "tie") for i in range(len(ms))]
    _import(store, tmp_path, votes)
    rep = resolve(store, "u")
    assert rep.oriented == len(ms) and rep.labelled and load_subset(store, "u")[0]["labelled"]
    check_labelled(read_members(store, "u"), "u")  # what `train` checks before streaming
    out = export(store, "u", tmp_path / "trl.jsonl")
    assert out.labelled and {"prompt", "chosen", "rejected"} <= set(out.columns)
    texts = {r["response_id"]: r["text"] for r in store.dataset("responses").to_table().to_pylist()}
    rows = {json.loads(line)["pair_id"]: json.loads(line) for line in (tmp_path / "trl.jsonl").read_text().splitlines()}
    for i, m in enumerate(ms):
        want = m["a_id"] if i % 3 else m["b_id"]
        assert rows[m["pair_id"]]["chosen_id"] == want
        chosen = rows[m["pair_id"]]["chosen"]
        assert (chosen if isinstance(chosen, str) else chosen[-1]["content"]) == texts[want]


def test_withdrawn_label_falls_back_to_the_data(scored_store, tmp_path):
    # scored data: pairs come oriented by score; annotators overrule one, then take it back
    store = scored_store
    ms = members(store)
    m = ms[0]
    assert m["label_source"] == "score"
    by_score = m["chosen_id"]
    against = "a" if by_score == m["b_id"] else "b"
    _import(store, tmp_path, [(against, None, None)])
    resolve(store, "u")
    now = {x["pair_id"]: x for x in members(store)}[m["pair_id"]]
    assert now["label_source"] == "annotator" and now["chosen_id"] != by_score
    assert _features(store, [m["pair_id"]])[m["pair_id"]]["label_source"] == "annotator"

    row = read(store, "u").to_dicts()[0]
    update_existing(store, rows_table([{**row, "undone_at": row["created_at"]}]))
    rep = resolve(store, "u")
    assert rep.oriented == 0 and rep.labelled
    now = {x["pair_id"]: x for x in members(store)}[m["pair_id"]]
    assert (now["chosen_id"], now["label_source"]) == (by_score, "score")
    pf = _features(store, [m["pair_id"]])[m["pair_id"]]
    assert (pf["label_source"], pf["label"]) == ("score", 1 if by_score == m["a_id"] else -1)
    assert store.count("pairs", "label_source = 'annotator'") == 0


def test_votes_pool_across_subsets(labelled_store, tmp_path):
    store = labelled_store
    select(store, "band", "v", embedding=EMB, min=-1.0, max=1.0)  # the same pairs, another subset
    ms = _import(store, tmp_path, [("b", "b", None)], subset="u")
    rep = resolve(store, "v")
    assert rep.oriented == 1
    got = {x["pair_id"]: x for x in members(store, "v")}
    assert got[ms[0]["pair_id"]]["chosen_id"] == ms[0]["b_id"]
    # stats and imports stay per subset: subset v has no labels of its own
    assert read(store, "v").height == 0 and pl.DataFrame(members(store, "u")).height == 18
