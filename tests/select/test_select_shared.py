"""Selection on the real corpora under ../shared (skipped when absent): ingest -> fake embeddings,
log-probs and rewards (deterministic, hashed) -> build_pairs -> every strategy end to end."""

from __future__ import annotations

from hashlib import blake2b

import numpy as np
import pyarrow as pa
import pytest

from pairsift.features.pairs import build_pairs
from pairsift.select.subsets import load_subset, select
from pairsift.store.schema import embeddings_schema, logprobs_schema, rewards_schema

DIM = 16


def _seed(rid: str) -> int:
    return int.from_bytes(blake2b(rid.encode(), digest_size=8).digest(), "little")


def add_fake_sets(store, logprobs=("ref", "policy"), reward="fake") -> None:
    """embeddings_fake (hashed random unit vectors), logprobs_<lp> (hashed word ids, <= 64 tokens),
    rewards_<reward>: deterministic stand-ins for the compute engine."""
    resp = store.dataset("responses").to_table(columns=["response_id", "text"]).to_pylist()
    ids = [r["response_id"] for r in resp]
    vecs = np.stack([np.random.default_rng(_seed(i)).standard_normal(DIM) for i in ids]).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    n = len(ids)
    es = embeddings_schema(DIM, {"model": "fake-hash"})
    emb = pa.table({"id": ids, "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), DIM),
                    "n_tokens": np.full(n, 3, np.int32), "truncated": np.zeros(n, bool)}, schema=es)
    toks = [[_seed(w) % 5000 for w in r["text"].split()[:64]] for r in resp]
    with store.writer() as w:
        w.append("embeddings_fake", emb, es)
        for k, lp in enumerate(logprobs):
            mean = np.array([np.random.default_rng(_seed(i) + k).normal(-2, 0.5) for i in ids])
            ls = logprobs_schema({"model": f"fake-{lp}"})
            w.append(f"logprobs_{lp}", pa.table({
                "response_id": ids, "logp_sum": mean * np.array([max(len(t), 1) for t in toks]), "logp_mean": mean,
                "n_tokens": np.array([len(t) for t in toks], np.int32), "token_ids": toks,
                "truncated": np.zeros(n, bool)}, schema=ls), ls)
        rs = rewards_schema({"model": "fake-rm"})
        w.append(f"rewards_{reward}", pa.table({
            "response_id": ids, "reward": [np.random.default_rng(_seed(i) + 7).normal() for i in ids],
            "truncated": np.zeros(n, bool)}, schema=rs), rs)


def test_hh_half_splits_have_half_the_pairs_each(tmp_store, hh_test):
    from pairsift.ingest.pipeline import ingest

    ingest(tmp_store, hh_test)
    add_fake_sets(tmp_store, logprobs=(), reward="fake")
    build_pairs(tmp_store, embeddings=["fake"], logprobs=[], rewards=[])
    n = tmp_store.count("pair_features", "label IS NOT NULL")
    assert n > 2000
    halves = {}
    for s in ("easy-half", "hard-half", "random-half"):
        r = select(tmp_store, s, s, seed=1)
        assert r.labelled and r.counts["selected"] == n // 2, (s, r.counts)
        assert r.counts["selected"] + sum(r.counts["excluded"].values()) == r.counts["rows_read"]
        halves[s] = {m["pair_id"] for m in load_subset(tmp_store, s)[1].to_pylist()}
    assert not halves["easy-half"] & halves["hard-half"]
    assert len(halves["easy-half"] | halves["hard-half"]) == 2 * (n // 2)
    # HH labels come from the dataset, never from the order of the two responses
    _, m = load_subset(tmp_store, "easy-half")
    pairs = {r["pair_id"]: r for r in tmp_store.dataset("pairs").to_table().to_pylist()}
    for row in m.to_pylist()[:200]:
        assert row["chosen_id"] == pairs[row["pair_id"]]["chosen_id"] and row["label_source"] == "dataset"


@pytest.mark.slow
def test_alpaca_eval_every_strategy_end_to_end(tmp_store, alpaca_dev, tmp_path):
    from pairsift.ingest.pipeline import ingest
    from pairsift.select.export import export
    from pairsift.select.strategies import STRATEGIES

    ingest(tmp_store, alpaca_dev)
    add_fake_sets(tmp_store)
    report = build_pairs(tmp_store)
    assert report.pairs_total > 700_000  # ~60 responses per prompt; duplicate responses are merged at ingest
    prompts = tmp_store.count("prompts")
    cases = {
        "easy": {}, "hard": {}, "centroid": {}, "random": {}, "easy-half": {}, "hard-half": {}, "random-half": {},
        "band": dict(min=-0.2, max=0.2, per_prompt=3),
        "dcrm": dict(reward="fake", different_source=True),
        "map": dict(ratio=0.4, weight=1.0),
        "top": dict(by="edit_norm_ref", k=5, per_prompt=True, descending=True),
    }
    assert set(cases) == set(STRATEGIES)
    for strategy, params in cases.items():
        r = select(tmp_store, strategy, strategy, seed=3, **params)
        c = r.counts
        assert c["selected"] > 0 and c["selected"] + sum(c["excluded"].values()) == c["rows_read"], strategy
        _, members = load_subset(tmp_store, strategy)
        assert members.column("chosen_id").null_count == 0
        if strategy in ("easy", "hard", "centroid", "random", "dcrm"):
            assert c["selected"] <= prompts and len(set(members.column("prompt_id").to_pylist())) == c["selected"]
    out = export(tmp_store, "dcrm", tmp_path / "dcrm.jsonl")
    assert out.labelled and out.rows == load_subset(tmp_store, "dcrm")[0]["counts"]["selected"]
