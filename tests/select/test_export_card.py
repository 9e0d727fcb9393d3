"""Oriented exports (features chosen-minus-rejected), the dataset card, and --push-to-hub.

The Hub is unreachable here: the push is tested up to and including the upload call, against a
local server that answers the Hub's API and records what was sent (tests/select/fake_hub.py).
"""

from __future__ import annotations

import io
import json

import numpy as np
import polars as pl
import pytest

from pairsift.features.pairs import build_pairs
from pairsift.select.export import export
from pairsift.select.hub import DATA_FILE, push_to_hub
from pairsift.select.orient import is_gap
from pairsift.select.subsets import load_subset, select

from ..features.test_pairs import P, R, write_store
from .fake_hub import FakeHub
from .strategy_data import EMB, random_world, write_world


def _dcrm_store(store, n_prompts: int = 30, seed: int = 0):
    """A store built by the real `pairs`: scores, log-probs and tokens give every DCRM column."""
    rng = np.random.default_rng(seed)
    prompts = []
    for i in range(n_prompts):
        rs = []
        for j in range(int(rng.integers(3, 6))):
            v = rng.normal(size=3)
            toks = rng.integers(0, 9, size=int(rng.integers(1, 8))).tolist()
            rs.append(R(f"r{j} of {i}", float(rng.normal()), f"m{j % 2}", vec=v.tolist(), tokens=toks,
                        logp=(float(rng.normal(-20, 5)), float(rng.normal(-2, 0.3))), reward=float(rng.normal())))
        prompts.append(P(f"prompt {i}", rs))
    write_store(store, prompts)
    build_pairs(store)


def _features(store, version):
    rows = store.dataset("pair_features", version).to_table().to_pylist()
    return {r["pair_id"]: r for r in rows}


def test_dcrm_export_shows_the_positive_dcrm_it_was_picked_for(tmp_store, tmp_path):
    """Issue 15.6: a best-of-N^2 DCRM pick has a positive DCRM, and the export must say so."""
    _dcrm_store(tmp_store)
    select(tmp_store, "dcrm", "bon2", logprobs="lp")
    out = pl.read_parquet(export(tmp_store, "bon2", tmp_path / "bon2.parquet").path)
    assert out.height > 10
    assert (out["dcrm_score_lp"] > 0).all()
    assert (out["score_margin"] > 0).all() and (out["score_chosen"] > out["score_rejected"]).all()
    # Before, about half the rows (those whose chosen is b) came out negative.
    assert (out["chosen_id"] == out["b_id"]).sum() > 0


def test_every_gap_flips_where_b_is_chosen_and_nothing_else_does(tmp_store, tmp_path):
    _dcrm_store(tmp_store, seed=1)
    select(tmp_store, "top", "t", by="cos_e", k=40)
    manifest, _ = load_subset(tmp_store, "t")
    feats = _features(tmp_store, manifest["store_versions"]["pair_features"])
    export(tmp_store, "t", tmp_path / "t.jsonl")
    out = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    gaps = [c for c in out[0] if is_gap(c)]
    assert {"score_margin", "dlogp_sum_lp", "dlogp_mean_lp", "dreward_rm", "dcrm_score_lp", "dcrm_noedit_rm_lp",
            "dcrm_margin_rm"} <= set(gaps)
    flipped = 0
    for o in out:
        r = feats[o["pair_id"]]
        sign = 1 if o["chosen_id"] == r["a_id"] else -1
        flipped += sign == -1
        for c in gaps:
            assert o[c] == pytest.approx(None if r[c] is None else sign * r[c]), c
        for c in ("cos_e", "edit_lp", "edit_norm_lp"):  # symmetric
            assert o[c] == pytest.approx(r[c]), c
        a_side, b_side = ("a", "b") if sign == 1 else ("b", "a")
        for stem in ("score", "source", "blank"):
            assert o[f"{stem}_chosen"] == r[f"{stem}_{a_side}"] and o[f"{stem}_rejected"] == r[f"{stem}_{b_side}"]
        assert "score_a" not in o and "source_b" not in o
    assert 0 < flipped < len(out)


def test_revealed_annotation_export_keeps_a_minus_b(tmp_store, tmp_path):
    rows = write_world(tmp_store, random_world(np.random.default_rng(2), 12, scored=False))
    select(tmp_store, "easy", "u", embedding=EMB)
    export(tmp_store, "u", tmp_path / "u.jsonl", reveal=True)
    out = [json.loads(x) for x in (tmp_path / "u.jsonl").read_text().splitlines()]
    by_id = {r["pair_id"]: r for r in rows}
    for o in out:
        assert o["dlogp_sum_ref"] == pytest.approx(by_id[o["pair_id"]]["dlogp_sum_ref"])
        assert "score_a" in o and "score_chosen" not in o


def test_hf_folder_export_has_a_dataset_card_with_the_manifest(tmp_store, tmp_path):
    _dcrm_store(tmp_store, seed=2)
    result = select(tmp_store, "dcrm", "bon2", logprobs="lp", seed=7, where="source_a != source_b")
    rep = export(tmp_store, "bon2", tmp_path / "hf")
    card = (tmp_path / "hf" / "README.md").read_text()
    assert "`dcrm` strategy" in card and "- seed: 7" in card
    assert f"- selected: {result.counts['selected']:,} pairs" in card
    assert '"where": "source_a != source_b"' in card and '"logprobs": "lp"' in card
    for table, version in result.store_versions.items():
        assert f"`{table}` v{version}" in card
    for reason, n in result.counts["excluded"].items():
        assert f"{reason} {n:,}" in card
    assert "`dcrm_score_lp`" in card.split("sign flipped")[1].split("\n")[0]
    assert "`cos_e`" in card.split("symmetric, unchanged")[1].split("\n")[0]
    manifest = json.loads(card.split("```json\n")[1].split("\n```")[0])
    assert manifest["name"] == "bon2" and manifest["counts"] == result.counts
    from datasets import load_from_disk

    assert len(load_from_disk(str(tmp_path / "hf"))) == rep.rows  # the card does not disturb the folder


# ---- --push-to-hub, against a local stand-in for the Hub ------------------------------------------


@pytest.fixture
def hub(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    with FakeHub() as fake:
        yield fake


def test_push_to_hub_sends_the_hub_layout_in_one_commit(tmp_store, tmp_path, hub):
    _dcrm_store(tmp_store, seed=3)
    select(tmp_store, "dcrm", "bon2", logprobs="lp")
    keep = tmp_path / "pushed"
    report = push_to_hub(tmp_store, "bon2", "me/bon2-pairs", folder=keep, private=True, token="hf_test",
                         endpoint=hub.endpoint)
    # The repository is created as a private dataset repo, then ONE commit holds both files.
    assert hub.repos == [{"name": "bon2-pairs", "organization": "me", "visibility": "private", "type": "dataset"}]
    assert len(hub.validated) == 1  # the README's YAML header, checked by the Hub before the commit
    (commit,) = hub.commits
    assert commit["repo"] == "me/bon2-pairs" and set(commit["files"]) == {"README.md", DATA_FILE}
    assert "bon2" in commit["header"]["summary"]
    # What was sent is exactly the folder built (and kept with folder=).
    assert commit["files"]["README.md"] == (keep / "README.md").read_bytes()
    assert commit["files"][DATA_FILE] == (keep / DATA_FILE).read_bytes()
    sent = pl.read_parquet(io.BytesIO(commit["files"][DATA_FILE]))
    local = pl.read_parquet(export(tmp_store, "bon2", tmp_path / "local.parquet").path)
    assert sent.equals(local) and (sent["dcrm_score_lp"] > 0).all()
    card = commit["files"]["README.md"].decode()
    assert card.startswith("---\nconfigs:") and "path: data/train-*" in card
    assert 'load_dataset("me/bon2-pairs", split="train")' in card and "`dcrm` strategy" in card
    assert report.rows == sent.height and report.commit == "1" * 40
    paths = [r["path"].split("?")[0] for r in hub.requests]
    assert paths == ["/api/repos/create", "/api/validate-yaml", "/api/datasets/me/bon2-pairs/preupload/main",
                     "/api/datasets/me/bon2-pairs/commit/main"]
    assert all(r["headers"].get("authorization") == "Bearer hf_test" for r in hub.requests)


def test_cli_push_to_hub_and_its_errors(tmp_store, tmp_path, hub):
    """The command in a fresh process: huggingface_hub reads HF_ENDPOINT and HF_TOKEN at import."""
    import os
    import subprocess
    import sys

    _dcrm_store(tmp_store, seed=4)
    select(tmp_store, "dcrm", "bon2", logprobs="lp")
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": "hf_test"}
    env.pop("HF_HUB_OFFLINE", None)

    def run(*args):
        return subprocess.run([sys.executable, "-m", "pairsift.cli", "export", "bon2", "--store", tmp_store.uri,
                               *args], capture_output=True, text=True, env=env, timeout=300)

    res = run("--push-to-hub", "me/bon2", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["repo"] == "me/bon2" and len(hub.commits) == 1
    assert hub.requests[-1]["headers"].get("authorization") == "Bearer hf_test"
    res = run("--push-to-hub", "no-owner")
    assert res.returncode == 1 and res.stderr.strip().endswith("give the dataset repository as OWNER/NAME")
    res = run()
    assert res.returncode != 0 and "--out" in res.stderr
