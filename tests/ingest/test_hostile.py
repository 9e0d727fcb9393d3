"""Issue 9 #5, #9, #10 (ingest side): hostile input gets one `Error:` line naming file, line and
field; nothing is written on failure; the input file is never opened for writing."""

from __future__ import annotations

import datetime as dt
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from pairsift.cli import cli
from pairsift.errors import UsageError
from pairsift.ingest.pipeline import ingest
from pairsift.store import open_store

HH = {"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: go away"}
HH2 = {"chosen": "\n\nHuman: yo\n\nAssistant: hey", "rejected": "\n\nHuman: yo\n\nAssistant: no"}
PAIR = {"prompt": "p", "chosen": "a", "rejected": "b"}


def lines(path, rows, prefix: bytes = b""):
    path.write_bytes(prefix + "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode())
    return path


def cli_ingest(store_dir, *args):
    return CliRunner().invoke(cli, ["ingest", *map(str, args), "--store", str(store_dir)])


def one_error(res, *expect: str) -> str:
    """Exit 1 with a single `Error:` line (the CLI's clean exit, never an escaped exception)."""
    assert res.exit_code == 1, res.output
    assert isinstance(res.exception, SystemExit), repr(res.exception)
    err = [x for x in res.output.splitlines() if x.startswith("Error: ")]
    assert len(err) == 1 and "Traceback" not in res.output, res.output
    for e in expect:
        assert e in err[0], err[0]
    return err[0]


def nothing_written(store_dir) -> bool:
    return not store_dir.exists() or open_store(store_dir).table_names() == []


def test_rejects_file_that_is_the_input_is_refused_and_input_untouched(tmp_path):
    """#5: `--skip-invalid X.jsonl` on input `X.jsonl` emptied the input."""
    data = lines(tmp_path / "X.jsonl", [HH, "{broken", HH2])
    before = data.read_bytes()
    store = tmp_path / "s"
    for same in (data, tmp_path / "." / "X.jsonl", os.path.relpath(data)):
        res = cli_ingest(store, data, "--skip-invalid", same)
        one_error(res, "--skip-invalid", "that is the input file")
        assert data.read_bytes() == before
    link = tmp_path / "link.jsonl"
    link.symlink_to(data)
    one_error(cli_ingest(store, data, "--skip-invalid", link), "input file")
    assert data.read_bytes() == before and nothing_written(store)


def test_rejects_file_is_created_only_when_a_record_is_rejected(tmp_path):
    rej = tmp_path / "rej.jsonl"
    report = ingest(open_store(tmp_path / "s"), lines(tmp_path / "ok.jsonl", [HH]), skip_invalid=rej)
    assert report.rejected == 0 and report.rejects_path is None and not rej.exists()


def test_unwritable_rejects_path_is_one_error_line(tmp_path):
    data = lines(tmp_path / "d.jsonl", [HH, "{broken"])
    res = cli_ingest(tmp_path / "s", data, "--skip-invalid", tmp_path / "missing/dir/rej.jsonl")
    one_error(res, "--skip-invalid", "does not exist")
    (tmp_path / "adir").mkdir()
    with pytest.raises(UsageError, match="is a folder"):
        ingest(open_store(tmp_path / "s"), data, skip_invalid=tmp_path / "adir")
    assert nothing_written(tmp_path / "s")


def test_fifo_input_is_refused(tmp_path):
    fifo = tmp_path / "in.jsonl"
    os.mkfifo(fifo)
    one_error(cli_ingest(tmp_path / "s", fifo), "not a regular file")


def test_a_400_digit_score_is_an_invalid_record(tmp_path):
    """#9: a score with 400 digits overflowed with a traceback, even under --skip-invalid."""
    big = "1" + "0" * 399
    data = tmp_path / "m.jsonl"
    data.write_text(
        json.dumps({"prompt": "q", "responses": [{"text": "a", "score": 1}, {"text": "b", "score": 2}]}) + "\n"
        + '{"prompt": "q2", "responses": [{"text": "a", "score": ' + big + '}, {"text": "b"}]}\n'
    )
    one_error(cli_ingest(tmp_path / "s", data), "m.jsonl:2", "responses[0].score", "out of range")
    assert nothing_written(tmp_path / "s")
    rej = tmp_path / "rej.jsonl"
    res = cli_ingest(tmp_path / "s", data, "--skip-invalid", rej)
    assert res.exit_code == 0, res.output
    assert json.loads(rej.read_text())["line"] == 2
    big_pair = tmp_path / "p.jsonl"
    big_pair.write_text('{"prompt": "p", "chosen": "a", "rejected": "b", "score_chosen": -' + big + "}\n")
    one_error(cli_ingest(tmp_path / "s2", big_pair), "p.jsonl:1", "score_chosen")


def test_parquet_extra_columns_of_timestamp_and_binary_type_land_in_meta(tmp_path):
    """#9: Parquet extra columns of timestamp or binary type raised a traceback."""
    when = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone.utc)
    table = pa.table(
        {
            "prompt": ["p1", "p2"],
            "chosen": ["a", "c"],
            "rejected": ["b", "d"],
            "when": pa.array([when, when], pa.timestamp("us", tz="UTC")),
            "day": pa.array([dt.date(2024, 5, 1)] * 2, pa.date32()),
            "blob": pa.array([b"\x00\xff", b"text"], pa.binary()),
        }
    )
    path = tmp_path / "d.parquet"
    pq.write_table(table, path)
    store = open_store(tmp_path / "s")
    report = ingest(store, path)
    assert report.prompts_added == 2
    metas = {r["text"]: json.loads(r["meta"]) for r in store.scan("prompts").collect().to_dicts()}
    assert metas["p1"] == {"when": "2024-05-01T12:30:00+00:00", "day": "2024-05-01", "blob": "base64:AP8="}
    assert metas["p2"]["blob"] == "text"


def hf_folder(tmp_path, name="hf", num_shards=2):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / name
    datasets.Dataset.from_list([PAIR, {**PAIR, "prompt": "q"}, {**PAIR, "prompt": "r"}]).save_to_disk(
        str(folder), num_shards=num_shards
    )
    return folder


def test_broken_hf_folders_are_one_error_line(tmp_path):
    """#9: missing or corrupt shard, bad state.json, missing split raised tracebacks."""
    store = tmp_path / "s"
    missing = hf_folder(tmp_path, "missing")
    shard = sorted(missing.glob("*.arrow"))[1]
    shard.unlink()
    one_error(cli_ingest(store, missing, "--format", "pairs"), str(shard), "missing")

    corrupt = hf_folder(tmp_path, "corrupt")
    shard = sorted(corrupt.glob("*.arrow"))[1]
    shard.write_bytes(shard.read_bytes()[:40])  # truncated
    one_error(cli_ingest(store, corrupt, "--format", "pairs"), str(shard), "not a readable Arrow file")

    bad_state = hf_folder(tmp_path, "badstate")
    (bad_state / "state.json").write_text('{"_data_files": [\n  {"filename": }\n]}')
    one_error(cli_ingest(store, bad_state, "--format", "pairs"), f"{bad_state / 'state.json'}:2", "invalid JSON")

    datasets = pytest.importorskip("datasets")
    dd = tmp_path / "dd"
    datasets.DatasetDict({"train": datasets.Dataset.from_list([PAIR])}).save_to_disk(str(dd))
    (dd / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    one_error(cli_ingest(store, dd, "--format", "pairs"), "dataset_dict.json", "'splits'", "test")
    assert nothing_written(store)


def test_utf8_bom_on_jsonl_is_read(tmp_path):
    """#10: a UTF-8 BOM failed the file (or dropped record 1 under --skip-invalid)."""
    data = lines(tmp_path / "bom.jsonl", [HH, HH2], prefix=b"\xef\xbb\xbf")
    report = ingest(open_store(tmp_path / "s"), data, skip_invalid=tmp_path / "rej.jsonl")
    assert report.records == 2 and report.rejected == 0 and report.pairs_added == 2


def test_json_array_bad_element_skips_only_that_element(tmp_path):
    """#10: one bad element made --skip-invalid drop the rest of the file silently."""
    path = tmp_path / "d.json"
    path.write_text(
        '[\n  {"prompt": "p1", "chosen": "a", "rejected": "b"},\n'
        '  {"prompt": "p2", "chosen": "a", "rejected": },\n'
        '  {"prompt": "p3", "chosen": "a", "rejected": "b"},\n'
        '  {"prompt": "p4", "chosen": "a \n  {"prompt": "p5", "chosen": "a", "rejected": "b"}\n]'
    )
    rej = tmp_path / "rej.jsonl"
    report = ingest(open_store(tmp_path / "s"), path, skip_invalid=rej)
    assert report.pairs_added == 3  # p1, p3, p5
    assert [json.loads(x)["line"] for x in rej.read_text().splitlines()] == [3, 5]
    res = cli_ingest(tmp_path / "s2", path)  # without --skip-invalid: the first problem, one line
    one_error(res, "d.json:3", "invalid JSON")


def test_json_array_that_cannot_be_resynchronised_stops_with_a_clear_error(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[{"prompt": "p1", "chosen": "a", "rejected": "b"} {"prompt": "p2", "chosen": "a", "rejected": "b"} ? ]')
    res = cli_ingest(tmp_path / "s", path, "--skip-invalid", tmp_path / "rej.jsonl")
    one_error(res, "nothing after it can be read")
    assert nothing_written(tmp_path / "s")


def test_multi_prompt_with_no_responses_is_reported(tmp_path):
    """#10: a multi prompt with 0 responses was stored without a word."""
    data = lines(tmp_path / "m.jsonl", [
        {"prompt": "q", "responses": [{"text": "a", "score": 1.0}, {"text": "b", "score": 2.0}]},
        {"prompt": "lonely", "responses": []},
    ])
    report = ingest(open_store(tmp_path / "s"), data, format="multi")
    assert report.prompts_without_responses == 1 and report.first_without_responses == 2
    assert "1 record with no responses (first at line 2)" in report.summary()


def test_report_separates_repeats_in_the_input_from_rows_already_stored(tmp_path):
    """Issue 12 #5: HH said "+2,310 (2 already present)" when both repeats were inside the file,
    and a re-run "2,312 already present" for a table of 2,310 rows; "1 pairs from 1 prompts"."""
    data = lines(tmp_path / "d.jsonl", [HH, HH2, HH])  # record 3 repeats record 1
    store = open_store(tmp_path / "s")
    first = ingest(store, data)
    assert (first.prompts_added, first.prompts_present, first.prompts_repeated) == (2, 0, 1)
    assert (first.pairs_added, first.pairs_present, first.pairs_repeated) == (2, 0, 1)
    assert "prompts   +2 (1 repeated in this input)" in first.summary()
    again = ingest(store, data)
    assert (again.prompts_added, again.prompts_present, again.prompts_repeated) == (0, 2, 1)
    assert store.count("prompts") == again.prompts_present
    assert "prompts   +0 (2 already in the store, 1 repeated in this input)" in again.summary()
    one = ingest(open_store(tmp_path / "s1"), lines(tmp_path / "one.jsonl", [HH]))
    assert "1 record in" in one.summary()
