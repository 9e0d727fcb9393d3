"""`label import`: rows / CSV / Argilla / Label Studio files into the labels table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pairsift.cli import cli
from pairsift.errors import InvalidRecord, UsageError
from pairsift.label.formats import export_for_annotation
from pairsift.label.importing import import_labels
from pairsift.label.table import effective, read

from .helpers import members


def _count(store) -> int:
    return store.count("labels") if store.has_table("labels") else 0


def test_every_choice_idempotent_and_corrections(labelled_store, tmp_path):
    store = labelled_store
    ms = members(store)
    spellings = ["a", "B", "tie", "both bad", "skip", "both_bad", "Both-Bad"]
    rows = [{"pair_id": m["pair_id"], "label": spellings[i % len(spellings)], "rationale": f"r{i}"}
            for i, m in enumerate(ms[:7])]
    rows.append({"pair_id": ms[7]["pair_id"], "chosen_id": ms[7]["b_id"]})
    path = tmp_path / "l.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    rep = import_labels(store, "u", path, annotator="alice")
    assert (rep.rows, rep.new, rep.changed, rep.unchanged) == (8, 8, 0, 0)
    assert rep.choices == {"a": 1, "b": 2, "tie": 1, "both_bad": 3, "skip": 1}
    # the skip is not a vote: 7 of 18 pairs have one
    assert rep.pairs == 18 and rep.unlabelled_left == 11
    got = {r["pair_id"]: r for r in read(store, "u").to_dicts()}
    assert [got[m["pair_id"]]["choice"] for m in ms[:8]] == ["a", "b", "tie", "both_bad", "skip", "both_bad",
                                                             "both_bad", "b"]
    assert all(r["annotator"] == "alice" and r["origin"] == "file" for r in got.values())

    # the same file again: nothing new, nothing written (issue 9: re-import counted twice)
    version = store.dataset("labels").version
    again = import_labels(store, "u", path, annotator="alice")
    assert (again.new, again.changed, again.unchanged, again.version) == (0, 0, 8, None)
    assert _count(store) == 8 and store.dataset("labels").version == version

    # a corrected file overwrites what it changes, still one row per (pair, annotator)
    rows[0]["label"] = "b"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    fixed = import_labels(store, "u", path, annotator="alice")
    assert (fixed.new, fixed.changed, fixed.unchanged) == (0, 1, 7)
    assert _count(store) == 8
    assert effective(read(store, "u")).filter(pair_id=ms[0]["pair_id"])["choice"].to_list() == ["b"]

    # another annotator's labels of the same pairs are new rows
    other = import_labels(store, "u", path, annotator="bob")
    assert other.new == 8 and _count(store) == 16


def test_csv_with_annotator_column_and_bom(labelled_store, tmp_path):
    ms = members(labelled_store)
    path = tmp_path / "l.csv"
    text = "pair_id,label,annotator,seconds\n" + "".join(
        f"{m['pair_id']},{'ab'[i % 2]},{'carol' if i < 3 else 'dave'},{i + 0.5}\n" for i, m in enumerate(ms[:5]))
    path.write_bytes("\ufeff".encode() + text.encode())
    rep = import_labels(labelled_store, "u", path)
    assert rep.new == 5 and rep.annotators == ["carol", "dave"] and rep.format == "rows"
    secs = sorted(read(labelled_store, "u")["seconds"].to_list())
    assert secs == [0.5, 1.5, 2.5, 3.5, 4.5]


@pytest.mark.parametrize(
    "content, line, field",
    [
        ('{"pair_id": "nope", "label": "a"}\n', 1, "pair_id"),
        ('\n{"pair_id": "P", "label": "c"}\n', 2, "label"),
        ('{"pair_id": "P"}\n', 1, "label"),
        ('{"pair_id": "P", "chosen_id": "x"}\n', 1, "chosen_id"),
        ('{"pair_id": "P", "label": "a"}\n{"pair_id": "P", "label": "b"}\n', 2, "pair_id"),
        ('{"pair_id": "P", "label": "a", "chosen_id": "B"}\n', 1, "chosen_id"),
        ('{"pair_id": "P", "label": "a", "seconds": "soon"}\n', 1, "seconds"),
        ('{"pair_id": "P", "label": "a", "annotator": "no spaces"}\n', 1, "annotator"),
        ('not json\n', 1, None),
    ],
)
def test_errors_name_file_line_field_and_write_nothing(labelled_store, tmp_path, content, line, field):
    m = members(labelled_store)[0]
    path = tmp_path / "bad.jsonl"
    path.write_text(content.replace('"P"', json.dumps(m["pair_id"])).replace('"B"', json.dumps(m["b_id"])))
    with pytest.raises(InvalidRecord) as e:
        import_labels(labelled_store, "u", path, annotator=None if "annotator" in content else "alice")
    assert e.value.line == line and e.value.field == field and str(path) in str(e.value)
    assert _count(labelled_store) == 0  # nothing written


def test_missing_annotator_is_one_clear_error(labelled_store, tmp_path):
    m = members(labelled_store)[0]
    path = tmp_path / "l.jsonl"
    path.write_text(json.dumps({"pair_id": m["pair_id"], "label": "a"}) + "\n")
    with pytest.raises(InvalidRecord, match="--annotator"):
        import_labels(labelled_store, "u", path)


def test_non_utf8_file_is_one_error_line_not_a_traceback(labelled_store, tmp_path):
    ms = members(labelled_store)
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps({"pair_id": ms[0]["pair_id"], "label": "a"}).encode() + b"\n"
                     + b'{"pair_id": "x", "rationale": "caf\xe9"}\n')
    res = CliRunner().invoke(cli, ["label", "import", "u", str(path), "--annotator", "alice",
                                   "--store", labelled_store.uri])
    assert res.exit_code == 1 and res.exception is None or isinstance(res.exception, SystemExit)
    assert res.output.strip().splitlines() == [f"Error: {path}:2: not UTF-8 text (byte 0xe9); save the file as UTF-8"]
    assert "Traceback" not in res.output and _count(labelled_store) == 0


def test_unknown_subset_and_missing_file(labelled_store, tmp_path):
    with pytest.raises(UsageError):
        import_labels(labelled_store, "u", tmp_path / "nope.jsonl", annotator="a")
    res = CliRunner().invoke(cli, ["label", "import", "nosuch", str(tmp_path / "x.jsonl"), "--store", labelled_store.uri])
    assert res.exit_code == 1 and res.output.startswith("Error: ")


def test_argilla_round_trip(labelled_store, tmp_path):
    store = labelled_store
    out = export_for_annotation(store, "u", tmp_path / "records.json", "argilla")
    records = json.loads((tmp_path / "records.json").read_text())
    assert out.pairs == 18 and len(records) == 18
    # blind: texts and the pair id, no sources, scores or features
    assert set(records[0]) == {"id", "fields", "metadata"} and records[0]["metadata"] == {}
    assert set(records[0]["fields"]) == {"prompt", "response_a", "response_b"}
    # what Argilla's dataset.records.to_json writes back: nested responses per question
    values = ["a", "b", "tie", "both_bad"]
    for i, rec in enumerate(records[:6]):
        rec["responses"] = {"preference": [{"value": values[i % 4], "user_id": "u-1"},
                                           {"value": "B is better", "user_id": "u-2"}],
                            "rationale": [{"value": "because", "user_id": "u-1"}]}
    records[6]["responses"] = {"preference": [{"value": None, "user_id": "u-1", "status": "discarded"}]}
    (tmp_path / "argilla-out.json").write_text(json.dumps(records))
    rep = import_labels(store, "u", tmp_path / "argilla-out.json")
    assert rep.format == "argilla" and rep.new == 13 and rep.annotators == ["u-1", "u-2"]
    rows = {(r["pair_id"], r["annotator"]): r for r in read(store, "u").to_dicts()}
    assert rows[(records[0]["id"], "u-1")]["rationale"] == "because"
    assert rows[(records[1]["id"], "u-2")]["choice"] == "b"
    assert rows[(records[6]["id"], "u-1")]["choice"] == "skip" and rows[(records[6]["id"], "u-1")]["origin"] == "argilla"
    # flattened records (to_list(flatten=True)) as JSONL read the same; nothing new
    flat = [{"id": r["id"], "preference.responses": [x["value"] for x in r["responses"]["preference"]],
             "preference.responses.users": [x["user_id"] for x in r["responses"]["preference"]],
             "preference.responses.status": ["submitted"] * len(r["responses"]["preference"]),
             "rationale.responses": ["because"], "rationale.responses.users": ["u-1"]}
            for r in records[:6]]
    (tmp_path / "flat.jsonl").write_text("".join(json.dumps(f) + "\n" for f in flat))
    again = import_labels(store, "u", tmp_path / "flat.jsonl")
    assert again.format == "argilla" and again.new == 0 and again.unchanged == 12
    # only unlabelled pairs are exported next time
    nxt = export_for_annotation(store, "u", tmp_path / "records2.json", "argilla")
    assert nxt.pairs == 12 and nxt.skipped_labelled == 6


def test_label_studio_round_trip_and_reveal(labelled_store, tmp_path):
    store = labelled_store
    rep = export_for_annotation(store, "u", tmp_path / "tasks.json", "label-studio", label_config=tmp_path / "c.xml")
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    assert rep.pairs == 18 and set(tasks[0]["data"]) == {"pair_id", "prompt", "response_a", "response_b"}
    assert 'name="preference"' in (tmp_path / "c.xml").read_text()
    revealed = json.loads(Path(export_for_annotation(store, "u", tmp_path / "r.json", "label-studio",
                                                     reveal=True).path).read_text())
    assert {"source_a", "source_b", "rank", "cos_fake"} <= set(revealed[0]["data"])
    # what Label Studio's JSON export looks like (ids are task ids; completed_by an int or a dict)
    for i, t in enumerate(tasks[:4]):
        t["id"] = i + 1
        t["annotations"] = [{
            "completed_by": 7 if i % 2 else {"id": 3, "email": "eve@example.org"},
            "result": [{"from_name": "preference", "to_name": "prompt", "type": "choices",
                        "value": {"choices": [["a", "Both bad", "tie", "B is better"][i]]}},
                       {"from_name": "rationale", "to_name": "prompt", "type": "textarea", "value": {"text": ["ok"]}}],
            "was_cancelled": False, "lead_time": 4.5 + i,
        }]
    tasks[4]["annotations"] = [{"completed_by": 7, "result": [], "was_cancelled": True, "lead_time": 1.0}]
    (tmp_path / "ls-export.json").write_text(json.dumps(tasks))
    got = import_labels(store, "u", tmp_path / "ls-export.json")
    assert got.format == "label-studio" and got.new == 5
    assert got.annotators == ["eve@example.org", "ls-user-7"]
    rows = {r["pair_id"]: r for r in read(store, "u").to_dicts()}
    assert [rows[t["data"]["pair_id"]]["choice"] for t in tasks[:5]] == ["a", "both_bad", "tie", "b", "skip"]
    assert rows[tasks[0]["data"]["pair_id"]]["seconds"] == 4.5 and rows[tasks[0]["data"]["pair_id"]]["rationale"] == "ok"

