"""pair_features against a slow plain-Python reference (per-pair loops, math cosine, DP Levenshtein)."""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pairsift.errors import IntegrityError, TableNotFound, UsageError
from pairsift.features.pairs import TABLE, build_pairs
from pairsift.store import open_store
from pairsift.store.ids import pair_id, prompt_id, response_id
from pairsift.store.schema import PAIRS, PROMPTS, RESPONSES, embeddings_schema, logprobs_schema, rewards_schema
from pairsift.store.schema import features_meta as read_meta
from tests.select.reference import levenshtein

MISSING = "missing"  # no row in the set's table (vs None: a row with a null value)


@dataclass
class R:
    text: str
    score: float | None = None
    source: str | None = None
    blank: bool = False
    vec: object = MISSING  # list[float] | None | MISSING
    vec2: object = MISSING
    tokens: object = MISSING  # list[int] | None | MISSING
    logp: tuple | None = None  # (sum, mean)
    reward: object = MISSING


@dataclass
class P:
    text: str
    responses: list[R]
    labels: list[tuple[int, int]] = field(default_factory=list)  # (chosen index, rejected index)


def write_store(store, prompts: list[P], dim: int = 3, sets=("e", "lp", "rm")) -> None:
    """Put the spec's rows into the store with the real writer."""
    pr, rs, pa_rows, emb, emb2, lps, rws = [], [], [], [], [], [], []
    for p in prompts:
        pid = prompt_id(p.text)
        pr.append({"prompt_id": pid, "text": p.text, "messages": None, "dataset": "t", "split": "train", "meta": None})
        rids = [response_id(pid, r.text) for r in p.responses]
        for rid, r in zip(rids, p.responses):
            rs.append({"response_id": rid, "prompt_id": pid, "text": r.text, "messages": None, "source": r.source,
                       "score": r.score, "blank": r.blank, "meta": None})
            if r.vec is not MISSING:
                emb.append({"id": rid, "vector": r.vec, "n_tokens": 1, "truncated": False})
            if r.vec2 is not MISSING:
                emb2.append({"id": rid, "vector": r.vec2, "n_tokens": 1, "truncated": False})
            if r.tokens is not MISSING or r.logp is not None:
                s, m = r.logp if r.logp is not None else (None, None)
                toks = None if r.tokens is MISSING else r.tokens
                lps.append({"response_id": rid, "logp_sum": s, "logp_mean": m, "n_tokens": len(toks or []),
                            "token_ids": toks, "truncated": False})
            if r.reward is not MISSING:
                rws.append({"response_id": rid, "reward": r.reward, "truncated": False})
        for c, j in p.labels:
            pa_rows.append({"pair_id": pair_id(rids[c], rids[j]), "prompt_id": pid, "chosen_id": rids[c],
                            "rejected_id": rids[j], "label_source": "dataset", "meta": None})
    with store.writer() as w:
        w.append("responses", pa.Table.from_pylist(rs, RESPONSES), RESPONSES)
        w.append("pairs", pa.Table.from_pylist(pa_rows, PAIRS), PAIRS)
        w.append("prompts", pa.Table.from_pylist(pr, PROMPTS), PROMPTS)
        if "e" in sets:
            sch = embeddings_schema(dim, {"model": "fake", "target": "responses"})
            w.append("embeddings_e", pa.Table.from_pylist(emb, sch), sch)
        if "e2" in sets:
            sch = embeddings_schema(dim, {"model": "fake2", "target": "responses"})
            w.append("embeddings_e2", pa.Table.from_pylist(emb2, sch), sch)
        if "lp" in sets:
            sch = logprobs_schema({"model": "fake"})
            w.append("logprobs_lp", pa.Table.from_pylist(lps, sch), sch)
        if "rm" in sets:
            sch = rewards_schema({"model": "fake"})
            w.append("rewards_rm", pa.Table.from_pylist(rws, sch), sch)


# ---- the slow reference ----------------------------------------------------------------------


def ref_cos(u, v):
    if u is MISSING or v is MISSING or u is None or v is None:
        return None
    if any(x is None or not math.isfinite(x) for x in list(u) + list(v)):
        return None
    nu, nv = math.sqrt(sum(x * x for x in u)), math.sqrt(sum(x * x for x in v))
    if nu == 0 or nv == 0 or not math.isfinite(nu) or not math.isfinite(nv):
        return None
    return sum(x * y for x, y in zip(u, v)) / (nu * nv)


def fin(x):
    return x is not None and x is not MISSING and math.isfinite(x)


def reference(prompts: list[P], labelled_only=False, sets=("e", "lp", "rm")) -> dict[str, dict]:
    out = {}
    for p in prompts:
        pid = prompt_id(p.text)
        items = sorted(((response_id(pid, r.text), r) for r in p.responses), key=lambda t: t[0])
        labels = {}
        for c, j in p.labels:
            cid, jid = response_id(pid, p.responses[c].text), response_id(pid, p.responses[j].text)
            key = (min(cid, jid), max(cid, jid))
            lab = 1 if cid < jid else -1
            # The pairs table is keyed by (pair_id, label_source): a source's first label of a
            # pair is the one stored (a second, opposite one is a duplicate key, dropped).
            labels.setdefault(key, lab)
        for i in range(len(items)):
            for j in range(i + 1, len(items)):
                (aid, a), (bid, b) = items[i], items[j]
                if labelled_only and (aid, bid) not in labels:
                    continue
                both = fin(a.score) and fin(b.score)
                row = {
                    "prompt_id": pid, "a_id": aid, "b_id": bid, "source_a": a.source, "source_b": b.source,
                    "score_a": a.score, "score_b": b.score, "blank_a": a.blank, "blank_b": b.blank,
                    "tie": both and a.score == b.score,
                    "score_margin": a.score - b.score if both else None,
                }
                if (aid, bid) in labels:
                    lab = labels[(aid, bid)]
                    row["label"], row["label_source"] = (None, "conflict") if lab == "conflict" else (lab, "dataset")
                elif both and a.score != b.score:
                    row["label"], row["label_source"] = (1 if a.score > b.score else -1), "score"
                else:
                    row["label"], row["label_source"] = None, None
                row["orientable"] = row["label"] is not None
                if "e" in sets:
                    row["cos_e"] = ref_cos(a.vec, b.vec)
                if "e2" in sets:
                    row["cos_e2"] = ref_cos(a.vec2, b.vec2)
                if "lp" in sets:
                    ta = None if a.tokens is MISSING else a.tokens
                    tb = None if b.tokens is MISSING else b.tokens
                    if ta is None or tb is None:
                        row["edit_lp"] = row["edit_norm_lp"] = None
                    else:
                        d = levenshtein(ta, tb)
                        row["edit_lp"] = d
                        row["edit_norm_lp"] = d / max(len(ta), len(tb)) if max(len(ta), len(tb)) else 0.0
                    for k, idx in (("sum", 0), ("mean", 1)):
                        va = a.logp[idx] if a.logp else None
                        vb = b.logp[idx] if b.logp else None
                        row[f"dlogp_{k}_lp"] = va - vb if fin(va) and fin(vb) else None
                if "rm" in sets:
                    row["dreward_rm"] = a.reward - b.reward if fin(a.reward) and fin(b.reward) else None
                margins = [("score", row["score_margin"])]
                if "rm" in sets:
                    margins.append(("rm", row["dreward_rm"]))
                for r, m in margins:
                    row[f"dcrm_margin_{r}"] = ref_dcrm(m, 0, 0, "margin-only")
                    if "lp" in sets:
                        e, p_ = row["edit_lp"], row["dlogp_sum_lp"]
                        row[f"dcrm_{r}_lp"] = ref_dcrm(m, e, p_, None)
                        row[f"dcrm_noedit_{r}_lp"] = ref_dcrm(m, e, p_, "no-edit")
                        row[f"dcrm_nologp_{r}_lp"] = ref_dcrm(m, e, p_, "no-logp")
                out[pair_id(aid, bid)] = row
    return out


def ref_dcrm(r, e, p, ablation):
    """docs/METHODS.md §2, one pair: (sigma(r) - 0.5) / (e + |p| + 1); None when a part it uses is missing."""
    uses = {None: (r, e, p), "no-edit": (r, p), "no-logp": (r, e), "margin-only": (r,)}[ablation]
    if any(x is None for x in uses):
        return None
    num = 1.0 / (1.0 + math.exp(-r)) - 0.5
    den = {None: lambda: e + abs(p) + 1, "no-edit": lambda: abs(p) + 1, "no-logp": lambda: e + 1,
           "margin-only": lambda: 1.0}[ablation]()
    return num / den


def assert_matches(store, want: dict[str, dict]) -> None:
    got = store.dataset(TABLE).to_table().to_pylist()
    assert len(got) == len({r["pair_id"] for r in got}), "duplicate pair ids"
    got = {r["pair_id"]: r for r in got}
    assert set(got) == set(want)
    for pid, w in want.items():
        g = got[pid]
        assert g["a_id"] < g["b_id"]
        for k, v in w.items():
            if isinstance(v, float) and math.isnan(v):
                assert g[k] is not None and math.isnan(g[k]), (k, g[k])
            elif isinstance(v, float) and k.startswith(("cos", "edit_norm", "dcrm")):
                assert g[k] == pytest.approx(v, abs=1e-5), (k, g, w)
            elif isinstance(v, float):
                assert g[k] == pytest.approx(v, rel=1e-12, abs=1e-12), (k, g, w)
            else:
                assert g[k] == v, (k, g[k], v)


# ---- fixtures ----------------------------------------------------------------------------------


def fixture_prompts() -> list[P]:
    return [
        P("p1", [R("x", 3.0, "m1", vec=[1, 0, 0], tokens=[1, 2, 3], logp=(-3.0, -1.0), reward=0.5),
                 R("y", 1.0, "m2", vec=[1, 1, 0], tokens=[1, 3], logp=(-2.0, -1.0), reward=1.5),
                 R("z", 3.0, "m1", vec=[0, 0, 2], tokens=[], logp=(-1.0, -0.5), reward=-1.0),
                 R("w", None, None, vec=None, tokens=None, logp=None)]),
        # A labelled pair whose chosen response has the LARGER id and the LOWER score: orientation must
        # come from the label, never from index order or scores.
        P("p2", [R("good", 1.0, vec=[0.5, 0.5, 0.5], tokens=[7, 8, 9, 10]),
                 R("bad", 9.0, vec=[0.5, -0.5, 0.5], tokens=[7, 9, 10])], labels=[(0, 1)]),
        P("p3", [R("only one", 5.0, vec=[1, 2, 3])]),
        P("p4", [R("n1", 2.0, vec=[float("nan"), 0, 0], tokens=[1 << 30, -5]),
                 R("n2", 2.0, vec=[0, 0, 0], tokens=[1 << 30, 4]),
                 R("n3", float("nan"), vec=[1, 0, 0], tokens=[4, -5], reward=float("nan"))]),
    ]


@pytest.fixture
def store(tmp_path):
    return open_store(tmp_path / "store")


def test_all_pairs_match_reference(store):
    prompts = fixture_prompts()
    write_store(store, prompts)
    report = build_pairs(store)
    assert report.pairs_added == 6 + 1 + 0 + 3
    assert report.prompts_single == 1
    assert_matches(store, reference(prompts))
    meta = read_meta(store.dataset(TABLE).schema)
    assert meta["mode"] == "all" and meta["sets"]["embeddings"] == ["e"]
    assert meta["inputs"]["embeddings_e"]["provenance"]["model"] == "fake"


def test_orientation_from_label_not_index_or_score(store):
    prompts = fixture_prompts()
    write_store(store, prompts)
    build_pairs(store)
    pid = prompt_id("p2")
    good, bad = response_id(pid, "good"), response_id(pid, "bad")
    row = store.dataset(TABLE).to_table(filter=f"pair_id = '{pair_id(good, bad)}'").to_pylist()[0]
    chosen = row["a_id"] if row["label"] == 1 else row["b_id"]
    assert chosen == good and row["label_source"] == "dataset"
    assert (row["score_margin"] > 0) == (row["a_id"] == bad)  # the score disagrees; the label wins


def test_labelled_only(store):
    prompts = fixture_prompts()
    write_store(store, prompts)
    report = build_pairs(store, labelled_only=True)
    assert report.pairs_added == 1 and report.mode == "labelled"
    assert_matches(store, reference(prompts, labelled_only=True))
    with pytest.raises(UsageError, match="--labelled-only"):
        build_pairs(store)  # mixing modes in one table is refused
    build_pairs(store, rebuild=True)
    assert_matches(store, reference(prompts))


def test_incremental_rerun_adds_and_recomputes_nothing(store, monkeypatch):
    import pairsift.features.pairs as pairs_module

    prompts = fixture_prompts()
    write_store(store, prompts[:2])
    build_pairs(store)
    v = store.dataset(TABLE).version

    def no_reads(*args, **kwargs):
        raise AssertionError("a re-run with nothing new must not read any input set")

    with monkeypatch.context() as m:
        m.setattr(pairs_module, "read_inputs", no_reads)
        again = build_pairs(store)
    assert again.pairs_added == 0 and again.prompts_present == 2
    assert store.dataset(TABLE).version == v  # no commit at all
    write_store(store, prompts[2:])  # new prompts arrive
    more = build_pairs(store)
    assert more.prompts_added == 1 and more.pairs_added == 3 and more.prompts_present == 2
    assert store.dataset(TABLE).version == v + 1  # one commit
    assert_matches(store, reference(prompts))


def test_new_set_adds_columns_to_existing_rows(store):
    prompts = fixture_prompts()
    for p in prompts:
        for i, r in enumerate(p.responses):
            r.vec2 = [float(i), 1.0, -1.0]
    write_store(store, prompts[:2], sets=("e", "lp", "rm"))
    build_pairs(store)
    write_store(store, prompts[2:], sets=("e", "lp", "rm"))
    # A second embedding set for every response, computed later.
    e2 = [{"id": response_id(prompt_id(p.text), r.text), "vector": r.vec2, "n_tokens": 1, "truncated": False}
          for p in prompts for r in p.responses]
    sch = embeddings_schema(3, {"model": "fake2", "target": "responses"})
    with store.writer() as w:
        w.append("embeddings_e2", pa.Table.from_pylist(e2, sch), sch)
    v = store.dataset(TABLE).version
    report = build_pairs(store)
    assert report.columns_added == ["cos_e2"]  # DCRM columns do not depend on embeddings
    # one Merge commit adds the column to existing rows (never an Overwrite: a concurrent append
    # would make it fail, not vanish), one keyed commit appends the new prompts
    assert store.dataset(TABLE).version == v + 2
    assert_matches(store, reference(prompts, sets=("e", "e2", "lp", "rm")))


def test_prompt_embedding_sets_are_not_response_features(store):
    write_store(store, fixture_prompts()[:1])
    sch = embeddings_schema(3, {"model": "minilm", "target": "prompts"})
    with store.writer() as w:
        w.append("embeddings_prompt_minilm", pa.Table.from_pylist(
            [{"id": prompt_id("p1"), "vector": [1, 0, 0], "n_tokens": 1, "truncated": False}], sch), sch)
    build_pairs(store)
    assert "cos_prompt_minilm" not in store.dataset(TABLE).schema.names


def test_errors_name_the_fix(store, tmp_path):
    with pytest.raises(TableNotFound, match="pairsift ingest"):
        build_pairs(store)
    write_store(store, fixture_prompts()[:1], sets=())
    with pytest.raises(TableNotFound, match="pairsift embed"):
        build_pairs(store, embeddings=["nope"])
    report = build_pairs(store, embeddings=[], logprobs=[], rewards=[])
    assert report.pairs_added == 6
    assert "cos_e" not in store.dataset(TABLE).schema.names


def test_small_blocks_match_one_block(store):
    prompts = fixture_prompts() + [P(f"q{i}", [R(f"r{j}", float(j % 3), vec=[j, 1, i]) for j in range(i % 5)])
                                   for i in range(30)]
    write_store(store, prompts)
    build_pairs(store, block_rows=4, block_pairs=3)
    assert_matches(store, reference(prompts))


# ---- hypothesis: random K, NaN/null vectors, ties, labels --------------------------------------

maybe_float = st.one_of(st.none(), st.floats(-3, 3, allow_nan=False), st.just(float("nan")))
vec = st.one_of(st.just(MISSING), st.none(),
                st.lists(st.one_of(st.floats(-2, 2, allow_nan=False), st.just(float("nan"))), min_size=3, max_size=3))
tokens = st.one_of(st.just(MISSING), st.none(), st.lists(st.integers(0, 5), max_size=12),
                   st.lists(st.integers(-(2**31), 2**31 - 1), max_size=3))


@st.composite
def prompt_specs(draw):
    n = draw(st.integers(1, 6))
    prompts = []
    for i in range(n):
        k = draw(st.integers(0, 6))
        rs = [R(f"r{j}", score=draw(st.one_of(st.none(), st.integers(0, 2).map(float))),
                source=draw(st.sampled_from([None, "a", "b"])), blank=draw(st.booleans()),
                vec=draw(vec), tokens=draw(tokens),
                logp=draw(st.one_of(st.none(), st.tuples(maybe_float, maybe_float))),
                reward=draw(st.one_of(st.just(MISSING), maybe_float)))
              for j in range(k)]
        labels = []
        if k >= 2:
            for _ in range(draw(st.integers(0, 2))):
                c, r = draw(st.lists(st.integers(0, k - 1), min_size=2, max_size=2, unique=True))
                labels.append((c, r))
        prompts.append(P(f"prompt {i}", rs, labels))
    return prompts


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prompt_specs(), st.booleans(), st.integers(1, 40))
def test_hypothesis_matches_reference(prompts, labelled_only, block_rows):
    with tempfile.TemporaryDirectory() as d:
        store = open_store(d)
        write_store(store, prompts)
        build_pairs(store, labelled_only=labelled_only, block_rows=block_rows, block_pairs=block_rows)
        assert_matches(store, reference(prompts, labelled_only=labelled_only))


def test_missing_input_table_is_reported(store):
    prompts = fixture_prompts()
    write_store(store, prompts[:1])
    build_pairs(store)
    store.db.drop_table("rewards_rm")
    with pytest.raises(IntegrityError, match="--rebuild"):
        build_pairs(store)
    build_pairs(store, rebuild=True)
    assert "dreward_rm" not in store.dataset(TABLE).schema.names


def test_pair_ids_match_store_ids():
    from pairsift.store.ids import sorted_pair_ids as pair_ids

    a = np.array(["a" * 32, "0" * 32], dtype=object)
    b = np.array(["b" * 32, "1" * 32], dtype=object)
    assert pair_ids(a, b) == [pair_id("a" * 32, "b" * 32), pair_id("1" * 32, "0" * 32)]


def test_new_reward_set_adds_its_dcrm_columns(store):
    prompts = fixture_prompts()
    write_store(store, prompts, sets=("e", "lp"))
    build_pairs(store)
    assert "dcrm_score_lp" in store.dataset(TABLE).schema.names
    rws = [{"response_id": response_id(prompt_id(p.text), r.text), "reward": r.reward, "truncated": False}
           for p in prompts for r in p.responses if r.reward is not MISSING]
    sch = rewards_schema({"model": "fake"})
    with store.writer() as w:
        w.append("rewards_rm", pa.Table.from_pylist(rws, sch), sch)
    report = build_pairs(store)
    assert report.columns_added == ["dreward_rm", "dcrm_rm_lp", "dcrm_noedit_rm_lp", "dcrm_nologp_rm_lp",
                                    "dcrm_margin_rm"]
    assert_matches(store, reference(prompts))
