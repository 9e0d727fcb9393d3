"""Export (TRL / annotation formats, recorded versions); label import is tested in tests/label."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

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


# ---- streaming: the same output as the whole-frame export it replaced ----------------------------


def materialised_export(store, name, out):
    """`export` as it was before it streamed (issue 12): the whole subset joined in one Polars frame,
    then written. The reference the streamed export must match."""
    from pairsift.select.export import _NOT_FEATURES, guess_format
    from pairsift.select.orient import oriented

    def as_messages(msgs, text, role):
        one = pl.concat_list(pl.struct(role=pl.lit(role), content=pl.col(text)))
        return pl.when(pl.col(msgs).is_null()).then(one).otherwise(pl.col(msgs))

    manifest, members = load_subset(store, name)
    versions = manifest["store_versions"]
    m = pl.from_arrow(members).drop("subset", "run", strict=False)
    feats = store.scan("pair_features", versions["pair_features"])
    keep = [c for c in feats.collect_schema().names() if c not in _NOT_FEATURES]
    feats = feats.select("pair_id", *keep).join(m.lazy().select("pair_id"), on="pair_id", how="semi")
    resp = store.scan("responses", versions["responses"]).select("response_id", "text", "messages")
    resp = resp.join(pl.concat([m.lazy().select(response_id="a_id"), m.lazy().select(response_id="b_id")]).unique(),
                     on="response_id", how="semi")
    prompts = store.scan("prompts", versions["prompts"]).select("prompt_id", p_text="text", p_msgs="messages")
    prompts = prompts.join(m.lazy().select("prompt_id").unique(), on="prompt_id", how="semi")
    resp_df = resp.collect()
    df = (
        m.join(prompts.collect(), on="prompt_id", how="left")
        .join(resp_df.rename({"response_id": "a_id", "text": "a_text", "messages": "a_msgs"}), on="a_id", how="left")
        .join(resp_df.rename({"response_id": "b_id", "text": "b_text", "messages": "b_msgs"}), on="b_id", how="left")
        .join(feats.collect(), on="pair_id", how="left")
        .sort("rank")
    )
    labelled = bool(manifest["labelled"]) and df["chosen_id"].is_not_null().all()
    if df["p_msgs"].is_not_null().any():
        prompt = as_messages("p_msgs", "p_text", "user")
        a, b = as_messages("a_msgs", "a_text", "assistant"), as_messages("b_msgs", "b_text", "assistant")
    else:
        prompt, a, b = pl.col("p_text"), pl.col("a_text"), pl.col("b_text")
    a_chosen = pl.col("chosen_id") == pl.col("a_id")
    if labelled:
        texts = [prompt.alias("prompt"), pl.when(a_chosen).then(a).otherwise(b).alias("chosen"),
                 pl.when(a_chosen).then(b).otherwise(a).alias("rejected")]
    else:
        texts = [prompt.alias("prompt"), a.alias("response_a"), b.alias("response_b")]
    ids = ["prompt_id", "pair_id", "a_id", "b_id", "chosen_id", "rejected_id", "label_source", "rank", "score"]
    text_cols = {"p_text", "p_msgs", "a_text", "a_msgs", "b_text", "b_msgs"}
    feats = [c for c in df.columns if c not in set(ids) | text_cols]
    sign = pl.when(a_chosen).then(1).otherwise(-1)
    df = df.select(*texts, *ids, *(oriented(feats, sign) if labelled else feats))
    fmt = guess_format(out)
    if fmt == "hf":
        from datasets import Dataset

        Dataset(df.to_arrow()).save_to_disk(str(out))
    elif fmt == "jsonl":
        df.write_ndjson(out)
    else:
        df.write_parquet(out)
    return df


@pytest.mark.parametrize("chat,scored,strategy", [(False, True, "hard"), (True, True, "easy"), (False, False, "easy"),
                                                  (True, False, "hard")])
def test_streamed_export_equals_the_whole_frame_export(tmp_store, tmp_path, chat, scored, strategy):
    from datasets import load_from_disk

    write_world(tmp_store, random_world(np.random.default_rng(7), 23, scored=scored), chat=chat)
    select(tmp_store, strategy, "s", embedding=EMB)
    want = materialised_export(tmp_store, "s", tmp_path / "want.jsonl")
    materialised_export(tmp_store, "s", tmp_path / "want.parquet")
    materialised_export(tmp_store, "s", tmp_path / "want-hf")
    assert want.height > 5
    for batch_rows in (3, None):  # many batches, and one
        got = export(tmp_store, "s", tmp_path / "got.jsonl", reveal=True, batch_rows=batch_rows)
        assert (tmp_path / "got.jsonl").read_bytes() == (tmp_path / "want.jsonl").read_bytes()
        assert got.rows == want.height and got.columns == want.columns
        export(tmp_store, "s", tmp_path / "got.parquet", reveal=True, batch_rows=batch_rows)
        a, b = pl.read_parquet(tmp_path / "got.parquet"), pl.read_parquet(tmp_path / "want.parquet")
        assert a.schema == b.schema and a.equals(b, null_equal=True)
        export(tmp_store, "s", tmp_path / "got-hf", reveal=True, batch_rows=batch_rows)
        a, b = load_from_disk(str(tmp_path / "got-hf")), load_from_disk(str(tmp_path / "want-hf"))
        assert a.features == b.features and len(a) == len(b)
        assert pl.from_arrow(a.data.table).equals(pl.from_arrow(b.data.table), null_equal=True)  # NaN == NaN
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_export_with_missing_texts_writes_nothing(tmp_store, tmp_path, monkeypatch):
    import pairsift.select.export as ex
    from pairsift.errors import TableNotFound

    write_world(tmp_store, random_world(np.random.default_rng(8), 6))
    select(tmp_store, "hard", "h", embedding=EMB)
    manifest, _ = load_subset(tmp_store, "h")
    # Texts gone at the recorded version: point the manifest export reads at a version of
    # `responses` that has no rows.
    tmp_store.table("responses").delete("true")
    bad = dict(manifest["store_versions"], responses=tmp_store.table("responses").version)
    real = ex.read_manifest
    monkeypatch.setattr(ex, "read_manifest", lambda store, name: real(store, name).with_changes(store_versions=bad))
    with pytest.raises(TableNotFound, match="texts of 6 pairs are missing"):
        export(tmp_store, "h", tmp_path / "x.jsonl", batch_rows=2)
    assert list(tmp_path.iterdir()) == [tmp_path / "store"]


def test_empty_subset_exports_an_empty_loadable_output(tmp_store, tmp_path):
    from datasets import load_from_disk

    write_world(tmp_store, random_world(np.random.default_rng(9), 5))
    select(tmp_store, "band", "none", embedding=EMB, min=2.0, max=3.0)
    rep = export(tmp_store, "none", tmp_path / "none.jsonl")
    assert rep.rows == 0 and (tmp_path / "none.jsonl").read_bytes() == b""
    assert pl.read_parquet(export(tmp_store, "none", tmp_path / "none.parquet").path).height == 0
    assert len(load_from_disk(export(tmp_store, "none", tmp_path / "none-hf").path)) == 0
