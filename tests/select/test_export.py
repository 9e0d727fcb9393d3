"""Export (TRL / annotation formats, recorded versions); label import is tested in tests/label."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from pairsift.cli import cli
from pairsift.select.export import export
from pairsift.select.subsets import load_subset, select

from .strategy_data import EMB, random_world, write_world


def _texts(store):
    resp = store.dataset("responses").to_table().to_pylist()
    return {r["response_id"]: r for r in resp}


def test_labelled_export_is_trl_format(tmp_store, tmp_path):
    rows = write_world(tmp_store, random_world(np.random.default_rng(0), 15))
    select(tmp_store, "hard", "h", embedding=EMB)
    # texts come from the versions the subset recorded, even after the table changed
    texts = _texts(tmp_store)
    tmp_store.table("responses").delete("true")
    rep = export(tmp_store, "h", tmp_path / "h.jsonl")
    assert rep.labelled and not rep.conversational and rep.format == "jsonl"
    out = [json.loads(line) for line in (tmp_path / "h.jsonl").read_text().splitlines()]
    _, members = load_subset(tmp_store, "h")
    assert [o["pair_id"] for o in out] == members.column("pair_id").to_pylist()
    by_id = {r["pair_id"]: r for r in rows}
    for o in out:
        r = by_id[o["pair_id"]]
        assert o["chosen"] == texts[o["chosen_id"]]["text"] and o["rejected"] == texts[o["rejected_id"]]["text"]
        assert texts[o["chosen_id"]]["score"] > texts[o["rejected_id"]]["score"]
        assert o["prompt"] == f"prompt {int(o['chosen'].split()[-1])}"
        sign = 1 if o["chosen_id"] == r["a_id"] else -1  # gaps are chosen minus rejected (test_export_card.py)
        assert o[f"cos_{EMB}"] == pytest.approx(r[f"cos_{EMB}"])
        assert o["dlogp_sum_ref"] == pytest.approx(sign * r["dlogp_sum_ref"])
        assert {"rank", "score", "a_id", "b_id", "label_source", "edit_ref", "dreward_rm"} <= set(o)
    pq = pl.read_parquet(export(tmp_store, "h", tmp_path / "h.parquet").path)
    assert pq["chosen"].to_list() == [o["chosen"] for o in out]


def test_conversational_and_hf(tmp_store, tmp_path):
    write_world(tmp_store, random_world(np.random.default_rng(1), 6), chat=True)
    select(tmp_store, "easy", "e", embedding=EMB)
    rep = export(tmp_store, "e", tmp_path / "hf")
    assert rep.format == "hf" and rep.conversational
    from datasets import load_from_disk

    ds = load_from_disk(str(tmp_path / "hf"))
    row = ds[0]
    assert row["prompt"][0]["role"] == "user" and row["chosen"][0]["role"] == "assistant"
    assert row["chosen"][0]["content"] != row["rejected"][0]["content"]
    assert len(ds) == rep.rows


def test_unlabelled_export_is_blind_unless_revealed(tmp_store, tmp_path):
    write_world(tmp_store, random_world(np.random.default_rng(2), 12, scored=False))
    select(tmp_store, "easy", "u", embedding=EMB)
    rep = export(tmp_store, "u", tmp_path / "u.jsonl")
    assert not rep.labelled and "chosen" not in rep.columns
    # annotators see texts and ids only: no generator names, scores or features to bias them
    assert rep.columns == ["prompt", "response_a", "response_b", "prompt_id", "pair_id", "a_id", "b_id"]
    out = [json.loads(line) for line in (tmp_path / "u.jsonl").read_text().splitlines()]
    texts = _texts(tmp_store)
    assert all(o["response_a"] == texts[o["a_id"]]["text"] for o in out)
    revealed = export(tmp_store, "u", tmp_path / "r.jsonl", reveal=True)
    assert {"source_a", "score", "rank", f"cos_{EMB}"} <= set(revealed.columns)
