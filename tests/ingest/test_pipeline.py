"""The ingest pipeline end to end on a real LanceDB store: counts, idempotence, atomicity, resume."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys

import polars as pl
import pytest
from click.testing import CliRunner

from pairsift.cli import cli
from pairsift.errors import InvalidRecord, UsageError
from pairsift.ingest.pipeline import default_names, ingest
from pairsift.store import open_store
from tests.conftest import HH_SAMPLE

HH_OK = {"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: go away"}
HH_OK2 = {"chosen": "\n\nHuman: yo\n\nAssistant: hey", "rejected": "\n\nHuman: yo\n\nAssistant: no"}
MULTI_OK = {"prompt": "q", "responses": [{"text": "a", "score": 1.0}, {"text": "b", "score": 2.0}]}


def write_jsonl(path, lines, gz=False):
    data = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines).encode()
    if gz:
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def state(store):
    """Everything a failed ingest must not change: table versions and row counts."""
    return {name: (v, store.count(name)) for name, v in store.versions().items()}


def test_hh_sample_counts(tmp_store):
    report = ingest(tmp_store, HH_SAMPLE)
    n = sum(1 for line in open(HH_SAMPLE) if line.strip())
    assert report.format == "hh"
    assert report.records == n
    assert tmp_store.count("pairs") == n
    assert tmp_store.count("responses") == 2 * n
    assert report.blank_responses == tmp_store.count("responses", "blank") == 4
    pairs = tmp_store.scan("pairs").collect()
    responses = tmp_store.scan("responses").collect()
    # every pair links two responses of its own prompt
    joined = pairs.join(responses.select("response_id", pl.col("prompt_id").alias("c_pid")),
                        left_on="chosen_id", right_on="response_id")
    joined = joined.join(responses.select("response_id", pl.col("prompt_id").alias("r_pid")),
                         left_on="rejected_id", right_on="response_id")
    assert joined.height == n
    assert (joined["prompt_id"] == joined["c_pid"]).all() and (joined["prompt_id"] == joined["r_pid"]).all()


def test_reingest_is_a_noop(tmp_store):
    ingest(tmp_store, HH_SAMPLE)
    before = state(tmp_store)
    report = ingest(tmp_store, HH_SAMPLE)
    assert state(tmp_store) == before
    assert report.prompts_added == report.responses_added == report.pairs_added == 0
    assert report.responses_present == before["responses"][1]


def test_overlapping_input_adds_only_new_rows(tmp_store, tmp_path):
    ingest(tmp_store, write_jsonl(tmp_path / "a.jsonl", [HH_OK]))
    report = ingest(tmp_store, write_jsonl(tmp_path / "b.jsonl", [HH_OK, HH_OK2]))
    assert (report.pairs_added, report.pairs_present) == (1, 1)
    assert tmp_store.count("pairs") == 2 and tmp_store.count("responses") == 4


@pytest.mark.parametrize(
    "name, lines, where",
    [
        ("json.jsonl", [HH_OK, '{"chosen": "x", ', HH_OK2], ":2: invalid JSON"),
        ("missing.jsonl", [HH_OK, {"chosen": HH_OK["chosen"]}], ":2: field 'rejected'"),
        ("null.jsonl", [HH_OK, {"chosen": None, "rejected": "x"}], ":2: field 'chosen'"),
        ("type.jsonl", [HH_OK, {"chosen": 3, "rejected": "x"}], ":2: field 'chosen'"),
        ("same.jsonl", [HH_OK, {"chosen": HH_OK["chosen"], "rejected": HH_OK["chosen"]}], ":2:"),
        ("noturn.jsonl", [HH_OK, {"chosen": "\n\nHuman: a", "rejected": "\n\nHuman: b"}], ":2:"),
        ("score.jsonl", [MULTI_OK, {"prompt": "p", "responses": [{"text": "a", "score": "high"}]}], ":2:"),
        ("inf.jsonl", [MULTI_OK, '{"prompt": "p", "responses": [{"text": "a", "score": Infinity}]}'], ":2:"),
        ("notlist.jsonl", [MULTI_OK, {"prompt": "p", "responses": "a"}], ":2: field 'responses'"),
        ("bytes.jsonl", [MULTI_OK, b'{"prompt": "\xff\xfe", "responses": []}'.decode("latin-1")], ":2:"),
    ],
)
def test_invalid_record_leaves_store_unchanged(tmp_store, tmp_path, name, lines, where):
    fmt = "multi" if "prompt" in (lines[0] if isinstance(lines[0], dict) else {}) else "hh"
    ingest(tmp_store, HH_SAMPLE)  # an existing store with data
    ingest(tmp_store, write_jsonl(tmp_path / "ok.jsonl", [MULTI_OK]), "multi")
    before = state(tmp_store)
    path = tmp_path / name
    if name == "bytes.jsonl":  # write raw undecodable bytes on line 2
        path.write_bytes(json.dumps(MULTI_OK).encode() + b"\n" + b'{"prompt": "\xff\xfe", "responses": []}\n')
    else:
        write_jsonl(path, lines)
    with pytest.raises(InvalidRecord) as err:
        ingest(tmp_store, path, fmt)
    assert f"{path}{where}" in str(err.value)
    assert state(tmp_store) == before


def test_truncated_gzip_leaves_store_unchanged(tmp_store, tmp_path):
    ingest(tmp_store, HH_SAMPLE)
    before = state(tmp_store)
    full = gzip.compress(HH_SAMPLE.read_bytes())
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(InvalidRecord, match="truncated"):
        ingest(tmp_store, path, "hh")
    assert state(tmp_store) == before


def test_failed_first_ingest_leaves_no_tables(tmp_path):
    store = open_store(tmp_path / "fresh")
    path = write_jsonl(tmp_path / "bad.jsonl", [HH_OK] * 3 + ["not json"])
    with pytest.raises(InvalidRecord):
        ingest(store, path, batch_responses=2)  # forces data files to be written before the error
    assert store.table_names() == []
    assert open_store(tmp_path / "fresh").info()["tables"] == {}


def test_skip_invalid_writes_rejects_and_ingests_the_rest(tmp_store, tmp_path):
    path = write_jsonl(tmp_path / "mixed.jsonl", [HH_OK, "{oops", {"chosen": "x"}, HH_OK2])
    rejects = tmp_path / "rejects.jsonl"
    report = ingest(tmp_store, path, "hh", skip_invalid=rejects)
    assert (report.records, report.rejected) == (2, 2)
    assert tmp_store.count("pairs") == 2
    rows = [json.loads(x) for x in rejects.read_text().splitlines()]
    assert [r["line"] for r in rows] == [2, 3]
    assert rows[0]["record"] == "{oops" and "invalid JSON" in rows[0]["error"]
    assert rows[1]["field"] == "rejected" and rows[1]["message"].startswith(f"{path}:3: field 'rejected'")


def test_interrupted_ingest_resumes_without_duplicates(tmp_path):
    """kill -9 mid-stream commits nothing; a crash between table commits is finished by a re-run."""
    store_dir = tmp_path / "store"
    corpus = tmp_path / "big.jsonl"
    with open(corpus, "w") as fh:
        for p in range(20_000):
            fh.write(json.dumps({"prompt": f"p{p}", "responses": [f"a{p}", f"b{p}", f"c{p}"]}) + "\n")
    code = (
        "import sys; from pairsift.store import open_store; from pairsift.ingest.pipeline import ingest\n"
        "ingest(open_store(sys.argv[1]), sys.argv[2], 'multi', batch_responses=1000,\n"
        "       progress=lambda r, n: (print(r, flush=True) if r >= 5000 else None))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(store_dir), str(corpus)], stdout=subprocess.PIPE)
    proc.stdout.readline()  # streaming is under way, data files are being written
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = open_store(store_dir)
    assert store.table_names() == []  # nothing committed

    # A crash after the responses commit but before the prompts commit (tables commit in the
    # order responses, pairs, prompts): the re-run adds only what is missing.
    ingest(store, corpus, "multi")
    store.db.drop_table("prompts")
    report = ingest(store, corpus, "multi")
    assert report.responses_added == 0 and report.prompts_added == 20_000
    assert store.count("responses") == 60_000 and store.count("prompts") == 20_000
    ids = store.scan("responses").select("response_id").collect()["response_id"]
    assert ids.n_unique() == ids.len()


def test_shp_pair_fields_reach_the_pairs_table(tmp_store, tmp_path):
    row = {"post_id": "p1", "history": "Why?", "human_ref_A": "Because A.", "human_ref_B": "Because B.",
           "labels": 0, "score_A": 2, "score_B": 9, "score_ratio": 4.5, "seconds_difference": 60.0}
    ingest(tmp_store, write_jsonl(tmp_path / "shp.jsonl", [row]))
    (pair,) = tmp_store.scan("pairs").collect().to_dicts()
    assert json.loads(pair["meta"]) == {"score_ratio": 4.5, "seconds_difference": 60.0}
    chosen = tmp_store.scan("responses").filter(pl.col("response_id") == pair["chosen_id"]).collect()
    assert chosen["text"].to_list() == ["Because B."] and chosen["score"].to_list() == [9.0]


def test_default_names():
    assert default_names("x/hh-rlhf/test.jsonl.gz") == ("hh-rlhf", "test")
    assert default_names("x/ultrafeedback.parquet") == ("ultrafeedback", "train")


def test_preset_only_with_multi(tmp_store):
    with pytest.raises(UsageError, match="--preset only apply to --format multi"):
        ingest(tmp_store, HH_SAMPLE, "hh", reader_options={"preset": "alpaca"})


@pytest.mark.shared
def test_real_hh_test_split(tmp_store, hh_test):
    report = ingest(tmp_store, hh_test)
    assert report.records == 2312 and report.rejected == 0
    assert tmp_store.count("pairs") == 2312
    assert tmp_store.count("responses") == 4624
    prompts = tmp_store.count("prompts")
    assert prompts == 2310  # two prompts repeat in the split, each with other responses
    assert report.blank_responses == 4
    assert tmp_store.info()["datasets"] == {"hh-rlhf-harmless-base": {"test": prompts}}


@pytest.mark.shared
def test_real_alpaca_eval(tmp_store, alpaca_dev):
    listed = sum(len(json.loads(x)["responses"]) for x in gzip.open(alpaca_dev, "rt"))
    report = ingest(tmp_store, alpaca_dev)
    assert report.format == "multi/alpaca"
    assert tmp_store.count("prompts") == 473
    # exact duplicates (same prompt, same text) are stored once and counted as merged
    assert report.responses_added + report.responses_merged == listed == 28_374
    assert tmp_store.count("responses") == report.responses_added
    assert 26_000 < report.responses_added < 28_374
    assert tmp_store.count("responses", "source IS NULL") == 0


def test_cli_ingest_and_info(tmp_path):
    runner = CliRunner()
    store = str(tmp_path / "s")
    result = runner.invoke(cli, ["ingest", str(HH_SAMPLE), "--store", store, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["format"] == "hh" and report["pairs_added"] > 0
    result = runner.invoke(cli, ["info", "--store", store, "--json"])
    info = json.loads(result.output)
    assert info["tables"]["pairs"]["rows"] == report["pairs_added"]
    assert info["datasets"] == {"hh_harmless_sample": {"train": report["prompts_added"]}}
    result = runner.invoke(cli, ["info", "--store", store])
    assert "pairs" in result.output and "hh_harmless_sample" in result.output


def test_cli_errors_are_one_line(tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [HH_OK, {"chosen": 1, "rejected": "x"}])
    result = CliRunner().invoke(cli, ["ingest", str(bad), "--store", str(tmp_path / "s"), "--format", "hh"])
    assert result.exit_code == 1
    assert f"{bad}:2: field 'chosen'" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["ingest", str(HH_SAMPLE), "--store", str(tmp_path / "s"), "--format", "hh", "--preset", "alpaca"])
    assert result.exit_code == 1 and "only apply to --format multi" in result.output


def test_help_does_not_import_torch():
    code = "import sys; from pairsift.cli import cli; cli(['--help'], standalone_mode=False); " \
           "print(sorted(m for m in ('torch', 'transformers', 'trl') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
