"""Every strategy against its slow plain-Python reference (tests/select/reference.py), on fixtures
and hypothesis-generated worlds, plus the invariants: output ⊆ candidates, thresholds hold,
<= k per prompt, same seed -> same subset, orientation from label/score, NaN never selected."""

from __future__ import annotations

import math
import tempfile
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pairsift.errors import UsageError
from pairsift.select.subsets import load_subset, select
from pairsift.store import open_store

from . import reference as ref
from .strategy_data import EMB, LP, POLICY, RM, random_world, write_world

COS = f"cos_{EMB}"


def picks(store, name):
    _, members = load_subset(store, name)
    rows = members.to_pylist()
    return rows


def check_against(store, rows, name, want, tol=1e-9):
    """Members of subset `name` equal the reference picks (ids, rank order, orientation, score)."""
    got = picks(store, name)
    assert [m["pair_id"] for m in got] == [w[0] for w in want]
    by_id = {r["pair_id"]: r for r in rows}
    for m, (pid, o, score) in zip(got, want):
        r = by_id[pid]
        assert m["a_id"] == r["a_id"] and m["b_id"] == r["b_id"] and m["prompt_id"] == r["prompt_id"]
        if o == 0:
            assert m["chosen_id"] is None and m["rejected_id"] is None
        else:
            assert (m["chosen_id"], m["rejected_id"]) == ((r["a_id"], r["b_id"]) if o == 1 else (r["b_id"], r["a_id"]))
        assert m["score"] == pytest.approx(score, rel=tol, abs=tol)
    assert [m["rank"] for m in got] == list(range(len(got)))
    return got


def run_all(store, rows, world, seed=0):
    """Run every strategy (several parameterisations) and compare with the reference."""
    cases = [
        ("easy", dict(embedding=EMB), ref.easy(rows, COS)),
        ("hard", dict(embedding=EMB), ref.easy(rows, COS, hard=True)),
        ("random", {}, ref.random(rows, seed)),
        ("easy-half", dict(embedding=EMB), ref.halves(rows, COS, "easy")),
        ("hard-half", dict(embedding=EMB), ref.halves(rows, COS, "hard")),
        ("random-half", {}, ref.halves(rows, COS, "random", seed)),
        ("band", dict(embedding=EMB, min=-0.3, max=0.4), ref.band(rows, COS, -0.3, 0.4)),
        ("band", dict(embedding=EMB, min=-0.5, max=0.9, per_prompt=2), ref.band(rows, COS, -0.5, 0.9, 2, seed)),
        ("dcrm", {}, ref.dcrm(rows, "score_margin", f"edit_{LP}", f"dlogp_sum_{LP}")),
        ("dcrm", dict(reward=RM, different_source=True), ref.dcrm(rows, f"dreward_{RM}", f"edit_{LP}", f"dlogp_sum_{LP}", different_source=True)),
        ("dcrm", dict(ablation="no-edit"), ref.dcrm(rows, "score_margin", f"edit_{LP}", f"dlogp_sum_{LP}", "no-edit")),
        ("dcrm", dict(ablation="no-logp"), ref.dcrm(rows, "score_margin", f"edit_{LP}", f"dlogp_sum_{LP}", "no-logp")),
        ("dcrm", dict(ablation="margin-only", reward=RM), ref.dcrm(rows, f"dreward_{RM}", ablation="margin-only")),
        ("map", {}, ref.map_ap(rows, "score_margin", f"dlogp_mean_{POLICY}")),
        ("map", dict(weight=2.5, ratio=0.3, reward=RM), ref.map_ap(rows, f"dreward_{RM}", f"dlogp_mean_{POLICY}", 0.3, 2.5, orient_margin=f"dreward_{RM}")),
        ("map", dict(variant="rm_margin"), ref.map_ap(rows, "score_margin", f"dlogp_mean_{POLICY}", variant="rm_margin")),
        ("map", dict(variant="logp_margin_norm_abs", logprobs=LP), ref.map_ap(rows, "score_margin", f"dlogp_mean_{LP}", variant="logp_margin_norm_abs")),
        ("map", dict(variant="rand", ratio=0.5), ref.map_ap(rows, None, None, 0.5, variant="rand", seed=seed)),
        ("top", dict(by=COS, k=7), ref.top(rows, COS, k=7)),
        ("top", dict(by=f"edit_norm_{LP}", ratio=0.5, per_prompt=True, descending=True), ref.top(rows, f"edit_norm_{LP}", ratio=0.5, per_prompt=True, descending=True)),
        ("top", dict(by="score_margin", k=1, per_prompt=True), ref.top(rows, "score_margin", k=1, per_prompt=True)),
    ]
    results = {}
    for i, (strategy, params, want) in enumerate(cases):
        name = f"t{i}"
        try:
            result = select(store, strategy, name, seed=seed, **params)
        except UsageError as e:
            # Every candidate lacks the strategy's input (e.g. all NaN rewards): an error naming
            # the column and the command, where the reference returns nothing.
            assert "no candidate pair has a value in" in str(e) and not want, (strategy, params, e)
            continue
        got = check_against(store, rows, name, want)
        c = result.counts
        assert c["selected"] + sum(c["excluded"].values()) == c["rows_read"] == len(rows), (strategy, c)
        results[name] = (strategy, params, got)
    return results


def vectors_of(world):
    from pairsift.store import ids

    out = {}
    for pi, resp in enumerate(world):
        pid = ids.prompt_id(f"prompt {pi}")
        for ri, r in enumerate(resp):
            out[ids.response_id(pid, f"response {ri} of prompt {pi}")] = np.float32(r["vec"]).tolist()
    return out


def test_every_strategy_matches_reference_on_fixture(tmp_store):
    world = random_world(np.random.default_rng(1), 40)
    rows = write_world(tmp_store, world)
    run_all(tmp_store, rows, world, seed=7)
    select(tmp_store, "centroid", "c", seed=7, embedding=EMB)
    check_against(tmp_store, rows, "c", ref.centroid(rows, COS, vectors_of(world), seed=7), tol=1e-5)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(1, 25),
    ks=st.sampled_from([(2,), (3,), (2, 3), (2, 3, 5, 8)]),
    tie_prob=st.sampled_from([0.0, 0.3, 0.9]),
    nan_prob=st.sampled_from([0.0, 0.2]),
    scored=st.booleans(),
)
def test_strategies_match_reference_hypothesis(seed, n, ks, tie_prob, nan_prob, scored):
    world = random_world(np.random.default_rng(seed), n, ks=ks, tie_prob=tie_prob, nan_prob=nan_prob, scored=scored)
    with tempfile.TemporaryDirectory() as d:
        store = open_store(d)
        rows = write_world(store, world)
        if scored:
            run_all(store, rows, world, seed=seed % 1000)
        else:
            # Unlabelled: REAL/band/top/map(rand) choose among all pairs; the subset is unlabelled.
            for strategy, params, want in [
                ("easy", dict(embedding=EMB), ref.easy(rows, COS)),
                ("random", {}, ref.random(rows, 3)),
                ("hard-half", dict(embedding=EMB), ref.halves(rows, COS, "hard")),
                ("top", dict(by=f"edit_{LP}", k=3), ref.top(rows, f"edit_{LP}", k=3)),
                ("map", dict(variant="logp_margin_norm_abs"), ref.map_ap(rows, None, f"dlogp_mean_{POLICY}", variant="logp_margin_norm_abs")),
            ]:
                if strategy == "map" and all(ref.bad(r[f"dlogp_mean_{POLICY}"]) for r in rows):
                    # every pair lacks the log-probs: an error naming the command, not an empty subset
                    with pytest.raises(UsageError, match="no candidate pair has a value"):
                        select(store, strategy, strategy, seed=3, **params)
                    continue
                r = select(store, strategy, strategy, seed=3, **params)
                assert r.labelled is False
                check_against(store, rows, strategy, want)
        select(store, "centroid", "c", seed=seed % 1000, embedding=EMB)
        check_against(store, rows, "c", ref.centroid(rows, COS, vectors_of(world), seed=seed % 1000), tol=1e-5)


def test_invariants(tmp_store):
    world = random_world(np.random.default_rng(2), 60, ks=(2, 3, 4, 6), tie_prob=0.3, nan_prob=0.1)
    rows = write_world(tmp_store, world)
    by_id = {r["pair_id"]: r for r in rows}
    cands = {r["pair_id"] for r in rows if r["label"] is not None}

    # per-prompt strategies: one per prompt, from the orientable candidates, oriented by score
    for strategy in ("easy", "hard", "random", "centroid"):
        select(tmp_store, strategy, strategy, **({} if strategy == "random" else {"embedding": EMB}))
        got = picks(tmp_store, strategy)
        assert {m["pair_id"] for m in got} <= cands
        assert max(Counter(m["prompt_id"] for m in got).values()) == 1
        for m in got:
            r = by_id[m["pair_id"]]
            assert not ref.bad(r[COS]) or strategy == "random"
            score = {r["a_id"]: r["score_a"], r["b_id"]: r["score_b"]}
            assert score[m["chosen_id"]] > score[m["rejected_id"]]  # never by index
            assert m["label_source"] == "score"
            assert m["chosen_id"] != m["rejected_id"]

    # band thresholds and per-prompt cap
    select(tmp_store, "band", "b", min=0.0, max=0.5, per_prompt=1, embedding=EMB)
    got = picks(tmp_store, "b")
    assert got and all(0.0 <= by_id[m["pair_id"]][COS] <= 0.5 for m in got)
    assert max(Counter(m["prompt_id"] for m in got).values()) == 1

    # top per prompt: <= k per prompt
    select(tmp_store, "top", "tk", by=COS, k=2, per_prompt=True)
    assert max(Counter(m["prompt_id"] for m in picks(tmp_store, "tk")).values()) <= 2

    # same seed -> same subset; another seed -> (almost surely) another one
    select(tmp_store, "random", "r1", seed=11)
    select(tmp_store, "random", "r2", seed=11)
    select(tmp_store, "random", "r3", seed=12)
    ids = lambda n: [m["pair_id"] for m in picks(tmp_store, n)]  # noqa: E731
    assert ids("r1") == ids("r2") != ids("r3")

    # NaN never selected (the reference M_AP code sorts NaN first and selects it)
    select(tmp_store, "map", "m", logprobs=POLICY, ratio=1.0)
    assert all(not ref.bad(by_id[m["pair_id"]][f"dlogp_mean_{POLICY}"]) for m in picks(tmp_store, "m"))


def test_half_split_odd_and_even(tmp_store):
    rng = np.random.default_rng(5)
    world = random_world(rng, 7, ks=(2,), tie_prob=0.0, nan_prob=0.0)  # 7 single-pair prompts
    rows = write_world(tmp_store, world)
    e = select(tmp_store, "easy-half", "e", embedding=EMB)
    h = select(tmp_store, "hard-half", "h", embedding=EMB)
    assert e.counts["selected"] == h.counts["selected"] == 3
    assert e.counts["excluded"]["middle_of_odd"] == 1 == e.counts["middle_of_odd"]
    ce = {m["pair_id"] for m in picks(tmp_store, "e")}
    chh = {m["pair_id"] for m in picks(tmp_store, "h")}
    assert not ce & chh
    middle = sorted(rows, key=lambda r: (r[COS], r["pair_id"]))[3]["pair_id"]
    assert middle not in ce | chh
    assert max(rows_[COS] for rows_ in rows if rows_["pair_id"] in ce) <= min(r[COS] for r in rows if r["pair_id"] in chh)
    rh = select(tmp_store, "random-half", "rh", seed=1)
    assert rh.counts["selected"] == 3


def test_ties_are_broken_by_pair_id(tmp_store):
    # Every response of a prompt has the same vector: all cosines tie; the smallest pair id wins.
    v = [1.0, 0.0, 0.0, 0.0]
    world = [[{"vec": v, "score": float(i), "tokens": [1], "lp_sum": 0.0, "lp_mean": 0.0, "reward": 0.0} for i in range(4)]]
    rows = write_world(tmp_store, world)
    for s in ("easy", "hard"):
        select(tmp_store, s, s, embedding=EMB)
        assert picks(tmp_store, s)[0]["pair_id"] == min(r["pair_id"] for r in rows)
    # centroid on identical points: one cluster empty, the fallback still returns two different responses
    r = select(tmp_store, "centroid", "c", embedding=EMB)
    m = picks(tmp_store, "c")[0]
    assert m["a_id"] != m["b_id"] and r.counts["fallback_same_cluster"] == 1
    # all rewards tie: dcrm yields no pair for the prompt, and says so
    d = select(tmp_store, "dcrm", "d", reward=RM, ablation="margin-only")
    assert d.counts["selected"] == 0 and d.counts["prompts_excluded"] == {"reward_tie": 1}


def test_centroid_k2_k3(tmp_store):
    world = random_world(np.random.default_rng(9), 20, ks=(2, 3))
    rows = write_world(tmp_store, world)
    select(tmp_store, "centroid", "c", seed=4, embedding=EMB)
    got = check_against(tmp_store, rows, "c", ref.centroid(rows, COS, vectors_of(world), seed=4), tol=1e-5)
    assert all(m["a_id"] != m["b_id"] for m in got)


def test_centroid_reads_vectors_when_pairs_are_missing(tmp_store):
    # --where removes some pairs, so those prompts' Gram matrices cannot come from the stored
    # cosines: their vectors are read from embeddings_<set> (exact float64 path).
    world = random_world(np.random.default_rng(8), 30, ks=(3, 4, 5))
    rows = write_world(tmp_store, world)
    r = select(tmp_store, "centroid", "cw", seed=2, embedding=EMB, where="source_a != 'm1'")
    assert r.counts["prompts_gram_from_vectors"] > 0 and r.counts["prompts_gram_from_cosines"] > 0
    kept = [x for x in rows if x["source_a"] != "m1"]
    check_against(tmp_store, rows, "cw", ref.centroid(kept, COS, vectors_of(world), seed=2), tol=1e-5)


def test_where_is_pushed_down_and_counted(tmp_store):
    world = random_world(np.random.default_rng(3), 30)
    rows = write_world(tmp_store, world)
    r = select(tmp_store, "top", "w", by=COS, ratio=1.0, where=f"{COS} > 0.2 AND source_a = 'm1'")
    want = [x for x in rows if x[COS] is not None and x[COS] > 0.2 and x["source_a"] == "m1"]
    assert r.counts["excluded"]["where"] == len(rows) - len(want)
    assert {m["pair_id"] for m in picks(tmp_store, "w")} == {x["pair_id"] for x in want if x["label"] is not None}
    with pytest.raises(UsageError, match="--where"):
        select(tmp_store, "easy", "bad", embedding=EMB, where="no_such_column > 1")


def test_errors_name_the_option_and_fix(tmp_store):
    with pytest.raises(Exception, match="pairsift pairs"):
        select(tmp_store, "easy", "x")
    write_world(tmp_store, random_world(np.random.default_rng(0), 3))
    with pytest.raises(UsageError, match="cos_nope.*pairsift embed"):
        select(tmp_store, "easy", "x", embedding="nope")
    with pytest.raises(UsageError, match="--k"):
        select(tmp_store, "easy", "x", k=3)
    with pytest.raises(UsageError, match="--min"):
        select(tmp_store, "band", "x", min=0.5, max=0.1)
    with pytest.raises(UsageError, match="exactly one"):
        select(tmp_store, "top", "x", by=COS)
    with pytest.raises(UsageError, match="not a number"):
        select(tmp_store, "top", "x", by="source_a", k=1)
    with pytest.raises(UsageError, match="unknown strategy"):
        select(tmp_store, "nope", "x")
    with pytest.raises(UsageError, match="--ratio"):
        select(tmp_store, "map", "x", ratio=1.5)
    assert math.isfinite(select(tmp_store, "easy", "ok", embedding=EMB).counts["selected"])
