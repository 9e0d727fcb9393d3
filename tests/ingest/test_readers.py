"""Readers: each format's mapping, every bad-input case with its position, detection, real data."""

from __future__ import annotations

import gzip
import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pairsift.errors import InvalidRecord, UsageError
from pairsift.ingest.readers import (
    READERS,
    Bad,
    detect_format,
    read_hh,
    read_multi,
    read_pairs,
    read_shp,
    split_dialogues,
)
from pairsift.ingest.records import RECORD, render_messages
from pairsift.store import ids
from tests.conftest import HH_SAMPLE

A = "\n\nAssistant:"


def write_jsonl(path, records):
    """Records are dicts (dumped) or str lines (written verbatim)."""
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def rows(batches):
    batches = list(batches)
    assert all(b.schema == RECORD for b in batches)
    return pa.Table.from_batches(batches, schema=RECORD).to_pylist()


def read(fmt, path, **kw):
    return rows(READERS[fmt](path, **kw))


def dialogue(*turns):
    """'\\n\\nHuman: a\\n\\nAssistant: b...' from alternating turn texts."""
    speakers = ("Human", "Assistant")
    return "".join(f"\n\n{speakers[i % 2]}: {t}" for i, t in enumerate(turns))


# --- hh -----------------------------------------------------------------------------------


def test_hh_mapping_multi_turn(tmp_path):
    chosen = dialogue("hi", "hello", "how are you?", "fine, thanks")
    rejected = dialogue("hi", "hello", "how are you?", "go away")
    path = write_jsonl(tmp_path / "hh.jsonl", [{"chosen": chosen, "rejected": rejected}])
    (r,) = read("hh", path)
    prompt = dialogue("hi", "hello", "how are you?") + A
    assert r["prompt"] == prompt and r["line"] == 1 and r["meta"] is None
    assert [x["text"] for x in r["responses"]] == [" fine, thanks", " go away"]
    assert prompt + r["responses"][0]["text"] == chosen
    assert r["prompt_id"] == ids.prompt_id(prompt)
    c_id, r_id = (ids.response_id(r["prompt_id"], t) for t in (" fine, thanks", " go away"))
    assert [x["response_id"] for x in r["responses"]] == [c_id, r_id]
    expected_pair = {"pair_id": ids.pair_id(c_id, r_id), "chosen_id": c_id, "rejected_id": r_id, "meta": None}
    assert r["pairs"] == [expected_pair]
    assert all(x["source"] is None and x["score"] is None for x in r["responses"])


def test_hh_diverged_dialogues_share_the_common_prefix_prompt(tmp_path):
    chosen = dialogue("q1", "a1", "q2", "a2 good")
    rejected = dialogue("q1", "a1", "q2 different", "a2 bad")
    rec = {"chosen": chosen, "rejected": rejected, "id": 7}
    (r,) = read("hh", write_jsonl(tmp_path / "hh.jsonl", [rec]))
    assert r["prompt"] == dialogue("q1") + A
    assert [r["prompt"] + x["text"] for x in r["responses"]] == [chosen, rejected]
    assert json.loads(r["meta"]) == {"diverged": True, "id": 7}


def test_hh_whitespace_only_response_is_kept_and_flagged(tmp_path):
    rec = {"chosen": dialogue("q", " "), "rejected": dialogue("q", "an answer")}
    (r,) = read("hh", write_jsonl(tmp_path / "hh.jsonl", [rec]))
    got = [(x["text"], x["blank"]) for x in r["responses"]]
    assert got == [("  ", True), (" an answer", False)]


def ref_split(chosen, rejected):
    """Plain reference: the longest prefix shared by both that ends right after a marker."""
    best = None
    for p in range(len(chosen)):
        end = p + len(A)
        if chosen[p:end] == A and chosen[:end] == rejected[:end]:
            best = end
    if best is None:
        return None
    last_c, last_r = chosen.rfind(A) + len(A), rejected.rfind(A) + len(A)
    diverged = not (best == last_c == last_r)
    return chosen[:best], chosen[best:], rejected[best:], diverged


turn_text = st.sampled_from(["", " ", "a", "b", "ab", " a", "Human:", "\n\nHuman: x", "\n\n"])
turns = st.lists(st.tuples(st.sampled_from(["Human", "Assistant"]), turn_text), max_size=4).map(
    lambda ts: "".join(f"\n\n{who}:{t}" for who, t in ts)
)


@settings(max_examples=400, deadline=None)
@given(turns, turns, turns)
def test_split_dialogues_matches_reference(shared, c_tail, r_tail):
    chosen, rejected = shared + c_tail, shared + r_tail
    if chosen == rejected:
        return
    expected = ref_split(chosen, rejected)
    if A not in chosen or A not in rejected or expected is None:
        with pytest.raises(Bad):
            split_dialogues(chosen, rejected)
        return
    assert split_dialogues(chosen, rejected) == expected


# --- pairs --------------------------------------------------------------------------------


def test_pairs_standard_with_scores_and_meta(tmp_path):
    rec = {
        "prompt": "P",
        "chosen": "good",
        "rejected": "bad",
        "score_chosen": 9,
        "score_rejected": 2.5,
        "id": "x",
    }
    (r,) = read("pairs", write_jsonl(tmp_path / "p.jsonl", [rec]))
    assert r["prompt"] == "P" and r["prompt_messages"] is None
    assert [(x["text"], x["score"]) for x in r["responses"]] == [("good", 9.0), ("bad", 2.5)]
    assert json.loads(r["meta"]) == {"id": "x"}
    assert r["pairs"][0]["chosen_id"] == r["responses"][0]["response_id"]


def test_pairs_conversational(tmp_path):
    prompt = [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hi"}]
    chosen = [{"role": "assistant", "content": "hello"}, {"role": "assistant", "content": "there"}]
    rejected = [{"role": "assistant", "content": "go away", "name": "bot"}]
    rec = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    (r,) = read("pairs", write_jsonl(tmp_path / "p.jsonl", [rec]))
    assert r["prompt_messages"] == prompt
    assert r["prompt"] == render_messages(prompt)
    assert r["prompt_id"] == ids.prompt_id(r["prompt"], prompt)
    c, rj = r["responses"]
    assert c["text"] == "hello\n\nthere" and c["messages"] == chosen
    assert rj["text"] == "go away"
    assert rj["messages"] == [{"role": "assistant", "content": "go away"}]
    assert c["response_id"] == ids.response_id(r["prompt_id"], c["text"], chosen)


# --- multi --------------------------------------------------------------------------------


def test_multi_generic_mapping(tmp_path):
    rec = {
        "prompt": "P",
        "responses": [
            {"text": "a", "score": 1, "source": "m1"},
            {"text": "b", "source": "m2", "extra": [1]},
            "c",
            {"text": "a", "score": 3.0, "source": "m3"},  # duplicate text: merged into the first
        ],
        "dataset": "d",
    }
    (r,) = read("multi", write_jsonl(tmp_path / "m.jsonl", [rec]))
    assert r["prompt"] == "P" and json.loads(r["meta"]) == {"dataset": "d"}
    got = [(x["text"], x["source"], x["score"]) for x in r["responses"]]
    assert got == [("a", "m1", 1.0), ("b", "m2", None), ("c", None, None)]
    metas = [x["meta"] and json.loads(x["meta"]) for x in r["responses"]]
    assert metas == [{"duplicates": [{"source": "m3", "score": 3.0}]}, {"extra": [1]}, None]
    assert r["merged_duplicates"] == 1 and r["pairs"] == []


@pytest.mark.parametrize(
    "preset, rec",
    [
        (
            "ultrafeedback",
            {
                "source": "evol",
                "instruction": "P",
                "models": ["m1", "m2"],
                "completions": [
                    {"model": "m1", "response": "a", "overall_score": 7.5, "annotations": {"x": 1}},
                    {"model": "m2", "response": "b", "overall_score": 3},
                ],
            },
        ),
        (
            "alpaca",
            {
                "instruction": "P",
                "dataset": "helpful_base",
                "reference": {"generator": "g", "output": "ref"},
                "responses": [
                    {"generator": "m1", "output": "a", "score": 7.5, "annotations": {"x": 1}},
                    {"generator": "m2", "output": "b", "score": 3},
                ],
            },
        ),
    ],
)
def test_multi_presets(tmp_path, preset, rec):
    path = write_jsonl(tmp_path / "m.jsonl", [rec])
    assert detect_format(path)[:2] == ("multi", {"preset": preset})
    (r,) = read("multi", path, preset=preset)
    assert r["prompt"] == "P"
    got = [(x["text"], x["source"], x["score"]) for x in r["responses"]]
    assert got == [("a", "m1", 7.5), ("b", "m2", 3.0)]
    assert json.loads(r["responses"][0]["meta"]) == {"annotations": {"x": 1}}
    mapped = ("instruction", "completions", "responses")
    assert json.loads(r["meta"]) == {k: v for k, v in rec.items() if k not in mapped}


def test_multi_custom_fields_and_bad_preset(tmp_path):
    rec = {"q": "P", "outs": [{"body": "a", "rating": 2, "by": "m"}]}
    path = write_jsonl(tmp_path / "m.jsonl", [rec])
    fields = dict(
        prompt_field="q",
        responses_field="outs",
        text_field="body",
        score_field="rating",
        source_field="by",
    )
    (r,) = read("multi", path, **fields)
    (resp,) = r["responses"]
    assert (r["prompt"], resp["text"], resp["score"], resp["source"]) == ("P", "a", 2.0, "m")
    assert r["meta"] is None and resp["meta"] is None
    with pytest.raises(UsageError, match="unknown multi preset 'nope'; choose one of ultrafeedback"):
        read("multi", path, preset="nope")


def test_multi_hf_sequence_of_dicts_is_transposed(tmp_path):
    datasets = pytest.importorskip("datasets")
    item = {"text": datasets.Value("string"), "score": datasets.Value("float64")}
    feats = datasets.Features(
        {"prompt": datasets.Value("string"), "responses": datasets.Sequence(item)}
    )
    ds = datasets.Dataset.from_dict(
        {"prompt": ["P"], "responses": [{"text": ["a", "b"], "score": [1.0, 2.0]}]}, features=feats
    )
    ds.save_to_disk(str(tmp_path / "hf"))
    (r,) = read("multi", tmp_path / "hf")
    assert [(x["text"], x["score"]) for x in r["responses"]] == [("a", 1.0), ("b", 2.0)]


def test_batches_are_bounded_by_responses(tmp_path):
    recs = [{"prompt": f"P{i}", "responses": [f"a{i}", f"b{i}", f"c{i}"]} for i in range(10)]
    batches = list(read_multi(write_jsonl(tmp_path / "m.jsonl", recs), batch_responses=5))
    assert [b.num_rows for b in batches] == [2, 2, 2, 2, 2]
    assert [r["prompt"] for r in rows(batches)] == [f"P{i}" for i in range(10)]
    assert [r["line"] for r in rows(batches)] == list(range(1, 11))


# --- shp ----------------------------------------------------------------------------------


SHP = {
    "post_id": "abc",
    "domain": "askscience",
    "upvote_ratio": 0.98,
    "history": "Why is the sky blue?",
    "c_root_id_A": "ca",
    "c_root_id_B": "cb",
    "created_at": 1600000000,
    "score_A": 52,
    "score_B": 3,
    "human_ref_A": "Rayleigh scattering.",
    "human_ref_B": "Because.",
    "labels": 1,
    "seconds_difference": 100.0,
    "score_ratio": 17.3,
}


@pytest.mark.parametrize("labels", [1, 0])
def test_shp_mapping(tmp_path, labels):
    (r,) = read("shp", write_jsonl(tmp_path / "s.jsonl", [{**SHP, "labels": labels}]))
    assert r["prompt"] == SHP["history"]
    a, b = r["responses"]
    assert (a["text"], a["source"], a["score"]) == ("Rayleigh scattering.", "human", 52.0)
    assert (b["text"], b["source"], b["score"]) == ("Because.", "human", 3.0)
    assert json.loads(a["meta"]) == {"c_root_id": "ca"}
    (pair,) = r["pairs"]
    winner, loser = (a, b) if labels == 1 else (b, a)
    assert (pair["chosen_id"], pair["rejected_id"]) == (winner["response_id"], loser["response_id"])
    assert json.loads(pair["meta"]) == {"seconds_difference": 100.0, "score_ratio": 17.3}
    assert json.loads(r["meta"]) == {
        "post_id": "abc",
        "domain": "askscience",
        "upvote_ratio": 0.98,
        "created_at": 1600000000,
    }


def test_shp_parquet(tmp_path):
    path = tmp_path / "s.parquet"
    rows_ = [SHP, {**SHP, "human_ref_B": "Other.", "labels": 0}]
    pq.write_table(pa.Table.from_pylist(rows_), path)
    assert [r["line"] for r in read("shp", path)] == [1, 2]
    assert detect_format(path)[0] == "shp"


# --- bad input: every case, at its exact position ------------------------------------------

GOOD = {
    "hh": {"chosen": dialogue("q", "yes"), "rejected": dialogue("q", "no")},
    "pairs": {"prompt": "P", "chosen": "yes", "rejected": "no"},
    "multi": {"prompt": "P", "responses": [{"text": "a", "score": 1.0, "source": "m"}]},
    "shp": SHP,
}
NAN = float("nan")
DROP = object()  # remove the field
NO_TURN = "dialogue has no '\\n\\nAssistant:' turn"
SAME = "identical to 'chosen' (a pair needs two different responses)"
MSGS = "a string or a list of chat messages"
# (format, change to a good record, field named in the error, start of the problem)
BAD = [
    ("hh", {"chosen": DROP}, "chosen", "missing"),
    ("hh", {"chosen": None}, "chosen", "is null, expected a string"),
    ("hh", {"rejected": ["x"]}, "rejected", "must be a string, got array ['x']"),
    ("hh", {"chosen": 3}, "chosen", "must be a string, got number 3"),
    ("hh", {"rejected": dialogue("q", "yes")}, "rejected", SAME),
    ("hh", {"chosen": "\n\nHuman: q no answer"}, "chosen", NO_TURN),
    ("hh", {"rejected": "\n\nHuman: q"}, "rejected", NO_TURN),
    ("hh", {"rejected": dialogue("x", "no")}, "rejected", "shares no '\\n\\nAssistant:' turn"),
    ("pairs", {"prompt": DROP}, "prompt", "missing"),
    ("pairs", {"prompt": None}, "prompt", f"is null, expected {MSGS}"),
    ("pairs", {"prompt": 5}, "prompt", f"must be {MSGS}, got number 5"),
    ("pairs", {"chosen": {"text": "x"}}, "chosen", f"must be {MSGS}, got object"),
    ("pairs", {"rejected": "yes"}, "rejected", SAME),
    ("pairs", {"chosen": [{"content": "x"}]}, "chosen[0].role", "missing"),
    (
        "pairs",
        {"chosen": [{"role": "assistant", "content": 1}]},
        "chosen[0].content",
        "must be a string, got number 1",
    ),
    (
        "pairs",
        {"prompt": ["hi"]},
        "prompt[0]",
        "must be a message object with 'role' and 'content', got string",
    ),
    ("pairs", {"rejected": []}, "rejected", "message list is empty"),
    ("pairs", {"score_chosen": "high"}, "score_chosen", "score must be a number, got str 'high'"),
    ("pairs", {"score_rejected": NAN}, "score_rejected", "score must be finite, got nan"),
    ("pairs", {"score_chosen": True}, "score_chosen", "score must be a number, got bool True"),
    ("multi", {"responses": DROP}, "responses", "missing"),
    ("multi", {"responses": "a"}, "responses", "must be a list of responses, got string 'a'"),
    ("multi", {"responses": None}, "responses", "is null, expected a list of responses"),
    ("multi", {"prompt": None}, "prompt", "is null"),
    ("multi", {"prompt": 1}, "prompt", f"must be {MSGS}, got number 1"),
    ("multi", {"responses": ["a", 3]}, "responses[1]", "must be an object or a string, got number"),
    ("multi", {"responses": ["a", {"score": 1}]}, "responses[1].text", "missing"),
    ("multi", {"responses": [{"text": ["a"]}]}, "responses[0].text", "must be a string, got array"),
    (
        "multi",
        {"responses": ["a", {"text": "b", "score": "9"}]},
        "responses[1].score",
        "score must be a number, got str '9'",
    ),
    (
        "multi",
        {"responses": [{"text": "b", "score": False}]},
        "responses[0].score",
        "score must be a number, got bool False",
    ),
    (
        "multi",
        {"responses": [{"text": "b", "score": NAN}]},
        "responses[0].score",
        "score must be finite, got nan",
    ),
    (
        "multi",
        {"responses": [{"text": "b", "score": math.inf}]},
        "responses[0].score",
        "score must be finite, got inf",
    ),
    (
        "multi",
        {"responses": [{"text": "b", "source": 4}]},
        "responses[0].source",
        "must be a string, got number 4",
    ),
    ("shp", {"history": DROP}, "history", "missing"),
    ("shp", {"history": None}, "history", "is null, expected a string"),
    ("shp", {"post_id": None}, "post_id", "is null"),
    ("shp", {"labels": DROP}, "labels", "missing"),
    ("shp", {"labels": 2}, "labels", "must be 0 or 1 (1: A preferred), got 2"),
    ("shp", {"labels": "1"}, "labels", "must be 0 or 1 (1: A preferred), got '1'"),
    ("shp", {"human_ref_B": SHP["human_ref_A"]}, "human_ref_B", "identical to 'human_ref_A'"),
    ("shp", {"score_A": DROP}, "score_A", "missing"),
    ("shp", {"score_A": math.inf}, "score_A", "score must be finite, got inf"),
    ("shp", {"score_B": "lots"}, "score_B", "score must be a number, got str 'lots'"),
    ("shp", {"score_B": None}, "score_B", "is null, expected a number"),
]


def _bad_record(fmt, change):
    rec = {**GOOD[fmt], **change}
    return {k: v for k, v in rec.items() if v is not DROP}


@pytest.mark.parametrize("fmt, change, field, problem", BAD)
def test_bad_record_position_and_message(tmp_path, fmt, change, field, problem):
    rec = _bad_record(fmt, change)
    path = write_jsonl(tmp_path / "in.jsonl", [GOOD[fmt], "", rec, GOOD[fmt]])
    with pytest.raises(InvalidRecord) as exc:
        read(fmt, path)
    err = exc.value
    assert (err.path, err.line, err.field) == (str(path), 3, field)
    assert str(err).startswith(f"{path}:3: field '{field}': {problem}")


@pytest.mark.parametrize("fmt, change, field, problem", BAD)
def test_bad_record_is_skipped_with_on_invalid(tmp_path, fmt, change, field, problem):
    rec = _bad_record(fmt, change)
    path = write_jsonl(tmp_path / "in.jsonl", [GOOD[fmt], rec, "{oops", GOOD[fmt]])
    seen = []
    got = read(fmt, path, on_invalid=lambda err, raw: seen.append((err, raw)))
    assert [r["line"] for r in got] == [1, 4]
    assert [(e.line, e.field) for e, _ in seen] == [(2, field), (3, None)]
    assert json.loads(seen[0][1]) == json.loads(json.dumps(rec))  # raw: the line, no newline
    assert seen[1][1] == "{oops"
    assert str(seen[1][0]).startswith(f"{path}:3: invalid JSON: ")


@pytest.mark.parametrize("fmt", sorted(READERS))
def test_source_errors_reach_every_reader(tmp_path, fmt):
    good = json.dumps(GOOD[fmt]).encode()
    path = tmp_path / "in.jsonl"
    path.write_bytes(good + b"\n" + b'{"x": "\xc3\x28"}\n' + good + b"\n")
    with pytest.raises(InvalidRecord, match=rf"^{path}:2: invalid UTF-8 at byte 8 of the line"):
        read(fmt, path)
    seen = []
    assert len(read(fmt, path, on_invalid=lambda e, raw: seen.append(raw))) == 2
    assert len(seen) == 1 and seen[0].startswith('{"x": "')


def test_truncated_gzip_through_a_reader(tmp_path):
    recs = [
        {"prompt": f"P{i} " + "x" * (i % 97), "responses": [f"{i}" * 50, "b" * (i % 89)]}
        for i in range(3000)
    ]
    whole = gzip.compress("".join(json.dumps(r) + "\n" for r in recs).encode())
    path = tmp_path / "m.jsonl.gz"
    path.write_bytes(whole[: len(whole) * 2 // 3])
    seen = []
    got = read("multi", path, on_invalid=lambda e, raw: seen.append(e))
    (err,) = seen
    assert err.line == len(got) + 1 and err.field is None
    assert str(err).startswith(f"{path}:{len(got) + 1}: truncated gzip stream")
    with pytest.raises(InvalidRecord, match="truncated gzip stream"):
        read("multi", path)


def test_parquet_raw_is_the_row(tmp_path):
    path = tmp_path / "p.parquet"
    bad = {"prompt": "P", "chosen": "same", "rejected": "same"}
    pq.write_table(pa.Table.from_pylist([GOOD["pairs"], bad]), path)
    seen = []
    assert len(read("pairs", path, on_invalid=lambda e, raw: seen.append((e, raw)))) == 1
    assert seen[0][1] == bad
    assert str(seen[0][0]).startswith(f"{path}:2: field 'rejected': identical")


# --- file types through a reader ----------------------------------------------------------


def test_every_file_type_reads_the_same(tmp_path):
    datasets = pytest.importorskip("datasets")
    recs = [{"prompt": f"P{i}", "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(4)]
    paths = [
        write_jsonl(tmp_path / "a.jsonl", recs),
        write_jsonl(tmp_path / "a.jsonl.gz", recs),
        tmp_path / "a.json",
        tmp_path / "a.parquet",
        tmp_path / "hf",
    ]
    paths[2].write_text(json.dumps(recs, indent=1))
    pq.write_table(pa.Table.from_pylist(recs), paths[3])
    datasets.Dataset.from_list(recs).save_to_disk(str(paths[4]))
    expected = read("pairs", paths[0])
    assert len(expected) == 4
    for p in paths[1:]:
        got = read("pairs", p)
        assert [r["prompt_id"] for r in got] == [r["prompt_id"] for r in expected]
        assert [r["responses"] for r in got] == [r["responses"] for r in expected]
        assert detect_format(p)[0] == "pairs"


def test_dataset_dict_split_reaches_the_record(tmp_path):
    datasets = pytest.importorskip("datasets")
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list([GOOD["pairs"]]),
            "test": datasets.Dataset.from_list([{**GOOD["pairs"], "prompt": "Q"}]),
        }
    )
    dd.save_to_disk(str(tmp_path / "dd"))
    got = read("pairs", tmp_path / "dd")
    assert [(r["prompt"], r["split"], r["line"]) for r in got] == [
        ("P", "train", 1),
        ("Q", "test", 1),
    ]
    assert read("pairs", write_jsonl(tmp_path / "x.jsonl", [GOOD["pairs"]]))[0]["split"] is None


# --- detection ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rec, expected",
    [
        (GOOD["hh"], ("hh", {})),
        (GOOD["pairs"], ("pairs", {})),
        (
            {"prompt": [{"role": "user", "content": "q"}], "chosen": [], "rejected": []},
            ("pairs", {}),
        ),
        (GOOD["multi"], ("multi", {})),
        ({"prompt": "P", "responses": ["a", "b"]}, ("multi", {})),
        (SHP, ("shp", {})),
        (
            {"instruction": "P", "completions": [{"response": "a"}]},
            ("multi", {"preset": "ultrafeedback"}),
        ),
        ({"instruction": "P", "completions": []}, ("multi", {"preset": "ultrafeedback"})),
        ({"instruction": "P", "responses": [{"output": "a"}]}, ("multi", {"preset": "alpaca"})),
    ],
)
def test_detect_format(tmp_path, rec, expected):
    path = write_jsonl(tmp_path / "d.jsonl", ["", "not json", rec])
    name, kwargs, reason = detect_format(path)
    assert (name, kwargs) == expected
    assert reason.endswith(f"-> {name}" + (f" (preset {kwargs['preset']})" if kwargs else ""))


def test_detect_hh_reason(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD["hh"]])
    reason = "fields chosen/rejected with '\\n\\nAssistant:' dialogues -> hh"
    assert detect_format(path) == ("hh", {}, reason)


def test_detect_unknown(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(UsageError, match=r"\(answer, question\); pass --format hh\|pairs\|multi\|shp"):
        detect_format(path)
    path = write_jsonl(tmp_path / "e.jsonl", [{"chosen": "a", "rejected": "b"}])  # no dialogue
    with pytest.raises(UsageError, match="chosen, rejected"):
        detect_format(path)
    path = write_jsonl(tmp_path / "f.jsonl", ["nope"])
    with pytest.raises(UsageError, match="no parseable record"):
        detect_format(path)


# --- real data ----------------------------------------------------------------------------


def _check_hh(recs, originals):
    """Every record rebuilds its dialogues; returns (diverged, blank chosen) counts."""
    assert len(recs) == len(originals)
    diverged = 0
    for r, (chosen, rejected) in zip(recs, originals):
        c, rj = r["responses"]
        assert r["prompt"].endswith(A)
        assert (r["prompt"] + c["text"], r["prompt"] + rj["text"]) == (chosen, rejected)
        assert r["pairs"][0]["chosen_id"] == c["response_id"]
        last_c = chosen[: chosen.rfind(A) + len(A)]
        last_r = rejected[: rejected.rfind(A) + len(A)]
        if r["meta"]:
            assert json.loads(r["meta"]) == {"diverged": True}
            assert last_c != last_r  # really diverged: no shared final turn
            diverged += 1
        else:
            assert r["prompt"] == last_c == last_r
    blank = sum(r["responses"][0]["blank"] for r in recs)
    assert sum(r["responses"][1]["blank"] for r in recs) == 0
    return diverged, blank


def _originals(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [(d["chosen"], d["rejected"]) for d in map(json.loads, f)]


def test_shipped_hh_sample():
    recs = read("hh", HH_SAMPLE)
    assert len(recs) == 308
    assert _check_hh(recs, _originals(HH_SAMPLE)) == (5, 4)


@pytest.mark.shared
def test_real_hh_test_split(hh_test):
    seen = []
    recs = rows(read_hh(hh_test, on_invalid=lambda e, raw: seen.append(e)))
    assert seen == []
    assert len(recs) == 2312
    assert _check_hh(recs, _originals(hh_test)) == (5, 4)
    assert detect_format(hh_test)[0] == "hh"


@pytest.mark.shared
def test_real_alpaca_eval(alpaca_dev):
    assert detect_format(alpaca_dev)[:2] == ("multi", {"preset": "alpaca"})
    recs = rows(read_multi(alpaca_dev, preset="alpaca", batch_responses=4096))
    assert len(recs) == 473
    listed = sum(len(r["responses"]) + r["merged_duplicates"] for r in recs)
    assert listed == 28374
    assert all(json.loads(r["meta"]).keys() == {"dataset", "reference"} for r in recs)
    assert all(x["source"] and x["score"] is not None for r in recs for x in r["responses"])


def test_reader_signatures():
    import inspect

    for fn in READERS.values():
        params = inspect.signature(fn).parameters
        assert list(params)[0] == "path"
        assert params["on_invalid"].default is None
        assert params["batch_responses"].default == 65_536
    assert READERS == {"hh": read_hh, "pairs": read_pairs, "multi": read_multi, "shp": read_shp}


@pytest.mark.parametrize("flag,field", [("--score-field", "score_field"), ("--source-field", "source_field")])
def test_multi_misspelt_score_or_source_field_fails_like_text_field(tmp_path, flag, field):
    """A named field that no response has is one clear error naming it and what was found."""
    recs = [{"prompt": "P", "responses": [{"text": "a", "rating": 2, "by": "m"}, {"text": "b"}]},
            {"prompt": "Q", "responses": [{"text": "c", "rating": 1}]}]
    path = write_jsonl(tmp_path / "m.jsonl", recs)
    with pytest.raises(UsageError, match=rf"{flag} 'ratng' matches no response's field \(their fields: by, rating, text\)"):
        read("multi", path, **{field: "ratng"})
    # Present in only some responses is data, not a typo; and the default names are not checked.
    (r, _) = read("multi", path, score_field="rating", source_field="by")
    assert [x["score"] for x in r["responses"]] == [2.0, None]
    assert len(read("multi", path)) == 2


def test_misspelt_score_field_leaves_the_store_untouched(tmp_path):
    from click.testing import CliRunner

    from pairsift.cli import cli

    path = write_jsonl(tmp_path / "m.jsonl", [{"prompt": "P", "responses": [{"text": "a", "score": 2}, {"text": "b"}]}])
    store = tmp_path / "store"
    res = CliRunner().invoke(cli, ["ingest", str(path), "--format", "multi", "--score-field", "scroe",
                                   "--store", str(store)])
    assert res.exit_code == 1
    assert res.output.count("\n") == 1 and "--score-field 'scroe' matches no response's field" in res.output
    from pairsift.store import open_store

    assert not open_store(store).has_table("responses")
