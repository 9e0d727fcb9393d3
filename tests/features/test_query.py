"""`pairsift query --band` and the `pairs` CLI, against plain-Python filtering of the same rows."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner
from pairsift.cli import cli
from pairsift.errors import SchemaError, TableNotFound, UsageError
from pairsift.features.pairs import build_pairs
from pairsift.features.query import query_band
from pairsift.store import open_store
from pairsift.store.ids import prompt_id, response_id

from .test_pairs import P, R, fixture_prompts, reference, write_store


def many_prompts(n=40):
    out = fixture_prompts()
    for i in range(n):
        out.append(P(f"q{i}", [R(f"r{j} of {i}", float(j), vec=[math.cos(i * 0.3 + j), math.sin(j * 1.7), 0.2 * i])
                                for j in range(2 + i % 4)]))
    return out


@pytest.fixture
def built(tmp_path):
    store = open_store(tmp_path / "s")
    prompts = many_prompts()
    write_store(store, prompts)
    build_pairs(store)
    return store, prompts


def texts_by_id(prompts):
    t = {}
    for p in prompts:
        pid = prompt_id(p.text)
        t[pid] = p.text
        for r in p.responses:
            t[response_id(pid, r.text)] = r.text
    return t


@pytest.mark.parametrize("lo,hi", [(-1.0, 1.0), (0.2, 0.6), (0.5, 0.5), (0.99, 1.0)])
def test_band_matches_reference(built, lo, hi):
    store, prompts = built
    ref = reference(prompts)
    texts = texts_by_id(prompts)
    # float32 storage: compare on the stored value's side of the boundary with a small margin.
    want = {k for k, r in ref.items() if r["cos_e"] is not None and lo + 1e-6 <= r["cos_e"] <= hi - 1e-6}
    maybe = {k for k, r in ref.items() if r["cos_e"] is not None and lo - 1e-6 <= r["cos_e"] <= hi + 1e-6}
    got = query_band(store, lo, hi).to_pylist()
    ids = {r["pair_id"] for r in got}
    assert want <= ids <= maybe
    assert [r["cos_e"] for r in got] == sorted(r["cos_e"] for r in got)
    for r in got:
        assert lo <= r["cos_e"] <= hi
        assert r["prompt"] == texts[r["prompt_id"]]
        assert r["text_a"] == texts[r["a_id"]] and r["text_b"] == texts[r["b_id"]]
        assert r["label"] == ref[r["pair_id"]]["label"]


def test_band_limit_and_no_texts(built):
    store, _ = built
    full = query_band(store, -1, 1, texts=False)
    assert "text_a" not in full.column_names
    top = query_band(store, -1, 1, limit=5)
    assert top.column("pair_id").to_pylist() == full.column("pair_id").to_pylist()[:5]
    assert query_band(store, 2.0, 3.0).num_rows == 0


def test_band_errors(built, tmp_path):
    store, _ = built
    with pytest.raises(UsageError, match="LO <= HI"):
        query_band(store, 0.6, 0.2)
    with pytest.raises(SchemaError, match="pairsift embed --name other"):
        query_band(store, 0, 1, embedding="other")
    with pytest.raises(TableNotFound, match="pairsift pairs"):
        query_band(open_store(tmp_path / "empty"), 0, 1)


def test_cli_pairs_and_query(tmp_path):
    store = open_store(tmp_path / "s")
    prompts = many_prompts(10)
    write_store(store, prompts)
    runner = CliRunner()
    res = runner.invoke(cli, ["pairs", "--store", str(tmp_path / "s"), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["pairs_added"] == len(reference(prompts)) and report["mode"] == "all"
    res = runner.invoke(cli, ["pairs", "--store", str(tmp_path / "s")])
    assert res.exit_code == 0 and "0 pairs added" in res.output
    res = runner.invoke(cli, ["query", "--store", str(tmp_path / "s"), "--band", "-1", "1", "--limit", "3", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert len(rows) == 3 and {"prompt", "text_a", "text_b", "cos_e"} <= set(rows[0])
    res = runner.invoke(cli, ["query", "--store", str(tmp_path / "s"), "--band", "-1", "1"])
    assert res.exit_code == 0 and "prompt:" in res.output
    res = runner.invoke(cli, ["query", "--store", str(tmp_path / "s"), "--band", "1", "0"])
    assert res.exit_code == 1 and "LO <= HI" in res.output
    res = runner.invoke(cli, ["pairs", "--store", str(tmp_path / "s"), "--embedding", "nope"])
    assert res.exit_code == 1 and "pairsift embed" in res.output and "Traceback" not in res.output


def test_cli_labelled_only(tmp_path):
    store = open_store(tmp_path / "s")
    write_store(store, fixture_prompts())
    res = CliRunner().invoke(cli, ["pairs", "--store", str(tmp_path / "s"), "--labelled-only", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["pairs_added"] == 1
