"""Export (TRL / annotation formats, recorded versions) and the label-import round trip."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from pairsift.cli import cli
from pairsift.errors import InvalidRecord
from pairsift.select.export import export
from pairsift.select.labels import import_labels
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
        assert o[f"cos_{EMB}"] == pytest.approx(r[f"cos_{EMB}"]) and o["dlogp_sum_ref"] == pytest.approx(r["dlogp_sum_ref"])
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


def test_annotation_round_trip(tmp_store, tmp_path):
    write_world(tmp_store, random_world(np.random.default_rng(2), 12, scored=False))
    select(tmp_store, "easy", "u", embedding=EMB)
    rep = export(tmp_store, "u", tmp_path / "u.jsonl")
    assert not rep.labelled and "response_a" in rep.columns and "chosen" not in rep.columns
    out = [json.loads(line) for line in (tmp_path / "u.jsonl").read_text().splitlines()]
    texts = _texts(tmp_store)
    assert all(o["response_a"] == texts[o["a_id"]]["text"] for o in out)

    # half labelled by letter (JSONL), the rest by chosen_id (CSV)
    first, rest = out[:5], out[5:]
    (tmp_path / "l.jsonl").write_text("".join(json.dumps({"pair_id": o["pair_id"], "label": "ab"[i % 2]}) + "\n"
                                              for i, o in enumerate(first)))
    r1 = import_labels(tmp_store, "u", tmp_path / "l.jsonl")
    assert (r1.labelled_now, r1.unlabelled_left, r1.subset_labelled) == (5, 7, False)
    assert load_subset(tmp_store, "u")[0]["labelled"] is False
    (tmp_path / "l.csv").write_text("pair_id,chosen_id\n" + "".join(f"{o['pair_id']},{o['b_id']}\n" for o in rest))
    res = CliRunner().invoke(cli, ["label", "import", "u", str(tmp_path / "l.csv"), "--store", tmp_store.uri])
    assert res.exit_code == 0 and "fully labelled" in res.output, res.output

    manifest, members = load_subset(tmp_store, "u")
    assert manifest["labelled"] and manifest["counts"]["annotated"] == 12
    got = {m["pair_id"]: m for m in members.to_pylist()}
    for i, o in enumerate(out):
        m = got[o["pair_id"]]
        want = (o["a_id"] if i < 5 and i % 2 == 0 else o["b_id"])
        assert m["chosen_id"] == want
        assert m["rejected_id"] == (o["b_id"] if want == o["a_id"] else o["a_id"])
        assert m["label_source"] == "annotator"
    final = export(tmp_store, "u", tmp_path / "final.jsonl")
    assert final.labelled
    rows = [json.loads(line) for line in (tmp_path / "final.jsonl").read_text().splitlines()]
    assert all(r["chosen"] == texts[r["chosen_id"]]["text"] for r in rows)


@pytest.mark.parametrize(
    "content, line, field",
    [
        ('{"pair_id": "nope", "label": "a"}\n', 1, "pair_id"),
        ('\n{"pair_id": "P", "label": "c"}\n', 2, "label"),
        ('{"pair_id": "P"}\n', 1, "label"),
        ('{"pair_id": "P", "chosen_id": "x"}\n', 1, "chosen_id"),
        ('{"pair_id": "P", "label": "a"}\n{"pair_id": "P", "label": "b"}\n', 2, "pair_id"),
        ('{"pair_id": "P", "label": "a", "chosen_id": "B"}\n', 1, "chosen_id"),
        ('not json\n', 1, None),
    ],
)
def test_label_import_errors_name_file_and_line(tmp_store, tmp_path, content, line, field):
    write_world(tmp_store, random_world(np.random.default_rng(3), 4, scored=False))
    select(tmp_store, "easy", "u", embedding=EMB)
    m = load_subset(tmp_store, "u")[1].to_pylist()[0]
    path = tmp_path / "bad.jsonl"
    path.write_text(content.replace('"P"', json.dumps(m["pair_id"])).replace('"B"', json.dumps(m["b_id"])))
    with pytest.raises(InvalidRecord) as e:
        import_labels(tmp_store, "u", path)
    assert e.value.line == line and e.value.field == field and str(path) in str(e.value)
    assert load_subset(tmp_store, "u")[1].column("chosen_id").null_count == 4  # nothing written
