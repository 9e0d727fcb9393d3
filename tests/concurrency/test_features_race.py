"""The pair-features column add under a concurrent append (issue 8 #2: "never as a stale
Overwrite that could drop a concurrent Append"). In one process, deterministic: the concurrent
job commits while this run computes the new columns."""

from __future__ import annotations

from pairsift.features import pairs as features_pairs
from pairsift.features.pairs import build_pairs
from pairsift.ingest.pipeline import ingest
from pairsift.store import open_store

from .helpers import check_store, pairs_records, write_pairs_file
from .test_crashes import add_fake_embeddings


def test_adding_a_set_never_drops_a_concurrent_append(tmp_path, monkeypatch):
    store = open_store(tmp_path / "s")
    ingest(store, write_pairs_file(tmp_path / "a.jsonl", pairs_records(0, 20)))
    add_fake_embeddings(store, "e1")
    build_pairs(store)
    add_fake_embeddings(store, "e2")  # a new set: this run adds cos_e2 to every row
    original = features_pairs._new_columns
    raced = []

    def with_a_concurrent_job(*args, **kwargs):
        if not raced:
            raced.append(True)
            # Another job ingests 5 new prompts and pairs them (with the old sets) right now.
            ingest(store, write_pairs_file(tmp_path / "b.jsonl", pairs_records(100, 105)))
            add_fake_embeddings(store, "e1")
            add_fake_embeddings(store, "e2")
            build_pairs(store, embeddings=["e1"])
        return original(*args, **kwargs)

    monkeypatch.setattr(features_pairs, "_new_columns", with_a_concurrent_job)
    report = build_pairs(store)
    assert raced and report.columns_added == ["cos_e2"]
    df = store.scan("pair_features").select("pair_id", "cos_e1", "cos_e2").collect()
    assert df.height == 25 and df["pair_id"].n_unique() == 25  # the concurrent rows are there, once
    assert df["cos_e1"].null_count() == 0 and df["cos_e2"].null_count() == 0
    check_store(store)


def test_two_first_pairs_runs_store_each_pair_once(tmp_path, monkeypatch):
    """Both runs saw no pair_features; the second to commit must drop every row the first
    committed (it promised its rows new as of "no table", not as of the table it met)."""
    store = open_store(tmp_path / "s")
    ingest(store, write_pairs_file(tmp_path / "a.jsonl", pairs_records(0, 30)))
    original = features_pairs.read_inputs
    raced = []

    def with_a_concurrent_job(*args, **kwargs):
        if not raced:
            raced.append(True)
            build_pairs(store)  # the other run: creates the table and commits every pair
        return original(*args, **kwargs)

    monkeypatch.setattr(features_pairs, "read_inputs", with_a_concurrent_job)
    report = build_pairs(store)
    assert raced and report.pairs_added == 0 and report.pairs_total == 30
    check_store(store)
