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


# ---- streaming: the same bytes as the implementation it replaced ---------------------------------


def materialised_query_band(store, lo, hi, embedding=None, limit=None):
    """`query_band` as it was before it streamed (issue 12): whole band read, sorted, texts joined
    with IN filters. The reference the streamed output must match byte for byte."""
    import polars as pl
    import pyarrow as pa
    import pyarrow.compute as pc

    from pairsift.features.query import PAIR_COLUMNS, cosine_column, pair_features
    from pairsift.store.sql import is_in

    def texts(table, key, ids, name):
        t = store.dataset(table).to_table(columns=[key, "text"], filter=is_in(key, ids.to_pylist()))
        return pl.from_arrow(t).unique(key, keep="first").rename({"text": name})

    ds = pair_features(store)
    col = cosine_column(ds.schema, embedding)
    band = f"{col} >= {float(lo)!r} AND {col} <= {float(hi)!r}"
    tbl = ds.scanner(columns=PAIR_COLUMNS + [col], filter=band, late_materialization=True).to_table()
    tbl = tbl.sort_by([(col, "ascending"), ("pair_id", "ascending")])
    if limit is not None:
        tbl = tbl.slice(0, limit)
    rids = pc.unique(pa.concat_arrays([tbl.column("a_id").combine_chunks(), tbl.column("b_id").combine_chunks()]))
    pids = pc.unique(tbl.column("prompt_id").combine_chunks())
    rtext = texts("responses", "response_id", rids, "text")
    out = (
        pl.from_arrow(tbl)
        .join(texts("prompts", "prompt_id", pids, "prompt"), on="prompt_id", how="left", maintain_order="left")
        .join(rtext.rename({"response_id": "a_id", "text": "text_a"}), on="a_id", how="left", maintain_order="left")
        .join(rtext.rename({"response_id": "b_id", "text": "text_b"}), on="b_id", how="left", maintain_order="left")
    )
    return out.to_dicts()


@pytest.mark.parametrize("band,limit", [((-1.0, 1.0), None), ((0.1, 0.7), None), ((-1.0, 1.0), 17), ((2.0, 3.0), None)])
def test_cli_json_streams_the_same_bytes_as_before(built, monkeypatch, band, limit):
    import pairsift.features.query as q

    store, _ = built
    want = json.dumps(materialised_query_band(store, *band, limit=limit), indent=2, sort_keys=True, default=str) + "\n"
    for batch_rows in (5, 8192):  # many batches, and one
        monkeypatch.setattr(q, "BATCH_ROWS", batch_rows)
        args = ["query", "--store", store.uri, "--band", str(band[0]), str(band[1]), "--limit", str(limit or 0), "--json"]
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 0, res.output
        assert res.stdout == want


def test_iter_band_batches_are_bounded_and_ordered(built):
    from pairsift.features.query import iter_band

    store, _ = built
    batches = list(iter_band(store, -1, 1, batch_rows=4))
    assert len(batches) > 3 and all(b.num_rows <= 4 for b in batches)
    rows = [r for b in batches for r in b.to_pylist()]
    assert rows == query_band(store, -1, 1).to_pylist()
    keys = [(r["cos_e"], r["pair_id"]) for r in rows]
    assert keys == sorted(keys)


def _tie_dataset(tmp_path, rows):
    import lance
    import pyarrow as pa

    t = pa.table({"pair_id": [r[0] for r in rows], "cos_e": pa.array([r[1] for r in rows], pa.float32())})
    return lance.write_dataset(t, str(tmp_path / "ties.lance"), max_rows_per_file=3)


def test_band_order_breaks_64_bit_key_ties_by_the_full_id(tmp_path):
    """Pair ids equal on their first 16 hex digits (one 64-bit key) and equal cosines still come
    out in pair_id order; an id present twice keeps scan order; nulls never match."""
    from pairsift.features.query import band_order

    head = "0123456789abcdef"
    rows = [(head + "f" * 16, 0.5), (head + "0" * 16, 0.5), ("ffff" + "0" * 28, 0.1), (head + "8" * 16, 0.5),
            (head + "0" * 16, 0.5), ("0000" + "0" * 28, 0.5), (head + "1" * 16, 0.25), ("aaaa" + "0" * 28, None)]
    ds = _tie_dataset(tmp_path, rows)
    got = band_order(ds, "cos_e", -1.0, 1.0, batch_rows=2)
    ref = sorted((i for i, r in enumerate(rows) if r[1] is not None), key=lambda i: (rows[i][1], rows[i][0]))
    assert got.tolist() == ref  # Python's sort is stable: the duplicate id keeps scan order
    assert band_order(ds, "cos_e", 0.2, 0.3).tolist() == [6]
