"""Raw record sources: every file type, and the position of every record and every error."""

from __future__ import annotations

import gzip
import json
from itertools import islice

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pairsift.errors import InvalidRecord, UsageError
from pairsift.ingest import sources
from pairsift.ingest.sources import iter_records

RECORDS = [{"prompt": f"p{i}", "responses": [{"text": f"r{i}", "score": float(i)}]} for i in range(5)]


def items(path):
    return list(iter_records(path))


def valid(path):
    return [(line, rec) for line, rec, _raw, _o in iter_records(path) if isinstance(rec, dict)]


def errors(path):
    return [rec for _line, rec, _raw, _o in iter_records(path) if isinstance(rec, InvalidRecord)]


def write_lines(path, lines: list[bytes]):
    data = b"".join(line + b"\n" for line in lines)
    if path.name.endswith(".gz"):
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


# --- JSON Lines ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["d.jsonl", "d.jsonl.gz", "d.ndjson"])
def test_jsonl_lines_and_raw(tmp_path, name):
    lines = [json.dumps(r).encode() for r in RECORDS]
    lines.insert(2, b"")  # blank lines are skipped but counted
    lines.insert(4, b"   \t")
    path = write_lines(tmp_path / name, lines)
    got = items(path)
    assert [g[0] for g in got] == [1, 2, 4, 6, 7]
    assert [g[1] for g in got] == RECORDS
    assert got[0][2].rstrip("\n") == json.dumps(RECORDS[0])
    assert got[0][3] == sources.Origin(str(path), None)


def test_jsonl_invalid_json_and_non_object(tmp_path):
    path = write_lines(
        tmp_path / "d.jsonl", [b'{"a": 1}', b'{"a": 1,}', b"[1, 2]", b'"text"', b"null", b'{"a": 2}']
    )
    got = items(path)
    assert [g[0] for g in got] == [1, 2, 3, 4, 5, 6]
    err = got[1][1]
    assert isinstance(err, InvalidRecord)
    assert str(err).startswith(f"{path}:2: invalid JSON: ")
    assert got[1][2].rstrip("\n") == '{"a": 1,}'
    assert str(got[2][1]) == f"{path}:3: record is a JSON array, expected an object"
    assert str(got[3][1]) == f"{path}:4: record is a JSON string, expected an object"
    assert str(got[4][1]) == f"{path}:5: record is a JSON null, expected an object"
    assert got[5][1] == {"a": 2}


def test_jsonl_undecodable_bytes(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [b'{"a": "ok"}', b'{"a": "caf\xe9"}', b'{"a": "b"}'])
    got = items(path)
    err = got[1][1]
    assert isinstance(err, InvalidRecord) and err.line == 2
    assert str(err).startswith(f"{path}:2: invalid UTF-8 at byte 11 of the line")
    assert "\ufffd" in got[1][2]  # raw is the line with the bad byte replaced
    assert got[2][1] == {"a": "b"}


def test_jsonl_lone_surrogate_escape(tmp_path):
    path = write_lines(
        tmp_path / "d.jsonl",
        [b'{"a": "\\ud83d\\ude00 fine pair"}', b'{"b": 1, "a": ["x", {"c": "\\udc00"}]}'],
    )
    got = items(path)
    assert got[0][1] == {"a": "\U0001f600 fine pair"}
    assert str(got[1][1]) == f"{path}:2: field 'a': " + sources._SURROGATE


def _gzip_lines(n):
    # Incompressible-ish text so the stream is long enough to cut in the middle.
    import random

    rng = random.Random(0)
    return [
        json.dumps({"i": i, "t": "".join(rng.choice("abcdefghij ") for _ in range(200))}).encode()
        for i in range(n)
    ]


def test_truncated_gzip_reports_the_line_where_it_broke(tmp_path):
    lines = _gzip_lines(2000)
    whole = gzip.compress(b"".join(line + b"\n" for line in lines))
    path = tmp_path / "d.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])
    got = items(path)
    good, last = got[:-1], got[-1]
    assert good and all(isinstance(g[1], dict) for g in good)
    assert [g[0] for g in good] == list(range(1, len(good) + 1))
    assert [g[1]["i"] for g in good] == list(range(len(good)))
    assert isinstance(last[1], InvalidRecord) and last[2] is None
    assert last[0] == len(good) + 1 < 2000
    assert str(last[1]).startswith(f"{path}:{len(good) + 1}: truncated gzip stream")


def test_not_a_gzip_file(tmp_path):
    path = tmp_path / "d.jsonl.gz"
    path.write_bytes(b'{"a": 1}\n')
    (err,) = errors(path)
    assert str(err).startswith(f"{path}:1: corrupt gzip stream")


def test_jsonl_streams_lazily(tmp_path):
    # The first record comes out before the bad line 2 is even read.
    path = write_lines(tmp_path / "d.jsonl", [b'{"a": 1}', b"\xff\xfe"] + [b'{"a": 1}'] * 1000)
    ((line, rec, _raw, _o),) = list(islice(iter_records(path), 1))
    assert (line, rec) == (1, {"a": 1})


# --- JSON arrays --------------------------------------------------------------------------


def _array_text(records, indent):
    """A JSON array and the 1-based line where each element starts (plain reference)."""
    parts, starts, line = ["[\n"], [], 2
    for i, r in enumerate(records):
        text = json.dumps(r, indent=indent)
        starts.append(line)
        parts.append(text + (",\n" if i < len(records) - 1 else "\n"))
        line += text.count("\n") + 1
    parts.append("]\n")
    return "".join(parts), starts


@pytest.mark.parametrize("indent", [None, 2])
@pytest.mark.parametrize("name", ["d.json", "d.json.gz"])
def test_json_array_element_lines(tmp_path, indent, name):
    text, starts = _array_text(RECORDS, indent)
    path = tmp_path / name
    data = text.encode()
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    got = items(path)
    assert [g[1] for g in got] == RECORDS
    assert [g[0] for g in got] == starts
    assert json.loads(got[1][2]) == RECORDS[1]


def test_json_array_compact_one_line(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(RECORDS))
    assert valid(path) == [(1, r) for r in RECORDS]


def test_json_array_errors(tmp_path):
    text, starts = _array_text(RECORDS[:2], 2)
    path = tmp_path / "d.json"
    path.write_text(text.replace('"p1"', '"p1" oops'))
    got = items(path)
    assert got[0][1] == RECORDS[0]
    err = got[1][1]
    assert isinstance(err, InvalidRecord) and err.line == starts[1] + 1
    assert str(err).startswith(f"{path}:{starts[1] + 1}: invalid JSON: ")

    path.write_text('[\n  {"a": 1},\n  7,\n  {"a": 2}\n]')
    got = items(path)
    assert [g[0] for g in got] == [2, 3, 4]
    assert str(got[1][1]) == f"{path}:3: record is a JSON number, expected an object"

    path.write_text('[\n  {"a": 1}\n')
    assert str(items(path)[-1][1]) == f"{path}:3: invalid JSON: unterminated array"
    path.write_text("[]")
    assert items(path) == []


def test_json_file_holding_json_lines(tmp_path):
    # datasets.Dataset.to_json writes JSON Lines under a .json name.
    path = write_lines(tmp_path / "d.json", [json.dumps(r).encode() for r in RECORDS])
    assert valid(path) == [(i + 1, r) for i, r in enumerate(RECORDS)]


def test_json_array_undecodable(tmp_path):
    path = tmp_path / "d.json"
    path.write_bytes(b'[\n{"a": 1},\n{"a": "\xff"}\n]')
    (err,) = errors(path)
    assert str(err).startswith(f"{path}:3: invalid UTF-8 at byte 8 of the line")


# --- Parquet, Arrow, Hugging Face folders --------------------------------------------------


def test_parquet_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "ROW_BATCH", 2)
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(RECORDS), path, row_group_size=3)
    got = items(path)
    assert [g[0] for g in got] == [1, 2, 3, 4, 5]
    assert [g[1] for g in got] == RECORDS
    assert got[3][2] == RECORDS[3]  # raw is the row dict


def test_not_a_parquet_file(tmp_path):
    path = tmp_path / "d.parquet"
    path.write_text("nope")
    (err,) = errors(path)
    assert str(err).startswith(f"{path}: not a readable Parquet file")


def test_arrow_ipc_file_and_stream(tmp_path):
    table = pa.Table.from_pylist(RECORDS)
    for writer, name in ((pa.ipc.new_file, "f.arrow"), (pa.ipc.new_stream, "s.arrow")):
        path = tmp_path / name
        with writer(str(path), table.schema) as w:
            w.write_table(table, max_chunksize=2)
        assert valid(path) == [(i + 1, r) for i, r in enumerate(RECORDS)]


def test_hf_dataset_folder(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(sources, "ROW_BATCH", 2)
    folder = tmp_path / "hf"
    datasets.Dataset.from_list(RECORDS).save_to_disk(str(folder), num_shards=2)
    got = items(folder)
    assert [g[0] for g in got] == [1, 2, 3, 4, 5]
    assert [g[1] for g in got] == RECORDS
    assert {g[3] for g in got} == {sources.Origin(str(folder), None)}


def test_hf_dataset_dict_folder_has_splits(tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "hfdd"
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(RECORDS[:3]),
            "test": datasets.Dataset.from_list(RECORDS[3:]),
        }
    )
    dd.save_to_disk(str(folder))
    got = items(folder)
    assert [(g[0], g[1], g[3].split) for g in got] == [
        (1, RECORDS[0], "train"),
        (2, RECORDS[1], "train"),
        (3, RECORDS[2], "train"),
        (1, RECORDS[3], "test"),
        (2, RECORDS[4], "test"),
    ]
    assert got[0][3].path == str(folder / "train")


def test_unsupported_inputs(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        items(tmp_path / "missing.jsonl")
    (tmp_path / "d.csv").write_text("a,b\n")
    with pytest.raises(UsageError, match="unsupported file type"):
        items(tmp_path / "d.csv")
    (tmp_path / "folder").mkdir()
    with pytest.raises(UsageError, match="save_to_disk"):
        items(tmp_path / "folder")
