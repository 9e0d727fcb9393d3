"""`compare` end to end: numbers equal a plain reference, re-runs reproduce them, outputs, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from pairsift.cli import cli
from pairsift.compare.runner import compare
from pairsift.compare.split import make_split, uniform_hash
from pairsift.errors import TableNotFound, UsageError
from pairsift.select.subsets import list_subsets, load_subset, select
from pairsift.store.ids import id_keys
from tests.select.strategy_data import EMB, random_world, write_world

from .conftest import signal_world


def _heldout_ids(store) -> set[str]:
    t = store.dataset("splits").to_table()
    return {p for p, h in zip(t.column("prompt_id").to_pylist(), t.column("heldout").to_pylist()) if h}


def _vectors(store) -> dict[str, np.ndarray]:
    t = store.dataset(f"embeddings_{EMB}").to_table()
    return {i: np.asarray(v, dtype=np.float64) for i, v in zip(t.column("id").to_pylist(), t.column("vector").to_pylist())}


def _reference_accuracy(store, rows, train_pairs: list[tuple[str, str]]) -> float:
    """Plain route: sklearn on chosen-minus-rejected (both orientations, no intercept), scored on
    every labelled pair of a held-out prompt read from the python-side rows."""
    from sklearn.linear_model import LogisticRegression

    vec = _vectors(store)
    held = _heldout_ids(store)
    d = np.array([vec[c] - vec[r] for c, r in train_pairs])
    lr = LogisticRegression(C=1.0, fit_intercept=False, max_iter=1000).fit(np.r_[d, -d], np.r_[np.ones(len(d)), np.zeros(len(d))])
    w = lr.coef_[0]
    hits = []
    for r in rows:
        if r["prompt_id"] in held and r["label"] is not None:
            c, j = (r["a_id"], r["b_id"]) if r["label"] == 1 else (r["b_id"], r["a_id"])
            hits.append(float((vec[c] - vec[j]) @ w > 0))
    return float(np.mean(hits))


def test_reward_head_numbers_equal_a_plain_reference(world_store, tmp_path):
    store, rows = world_store
    arms = ["easy", "hard", "random", "centroid", "dcrm:ablation=margin-only@maxmargin", "map:variant=rand:ratio=0.5@uniform"]
    res = compare(store, arms, "10,25,max", 3, "reward-head", tmp_path / "out", embedding=EMB)
    per_prompt = ["easy", "hard", "random", "centroid", "maxmargin"]
    strategies = {"easy": ("easy", {"embedding": EMB}), "hard": ("hard", {"embedding": EMB}), "random": ("random", {}),
                  "centroid": ("centroid", {"embedding": EMB}), "maxmargin": ("dcrm", {"ablation": "margin-only"})}
    for seed in (0, 2):
        picks = {}
        for label, (strategy, params) in strategies.items():
            select(store, strategy, f"{label}-{seed}", seed=seed, **params)
            _, m = load_subset(store, f"{label}-{seed}")
            picks[label] = {p: (c, r) for p, c, r in zip(*(m.column(k).to_pylist() for k in ("prompt_id", "chosen_id", "rejected_id")))}
        eligible = set.intersection(*(set(p) for p in picks.values()))
        ranked = sorted(eligible, key=lambda p: (uniform_hash(id_keys([p]), seed, 1)[0], p))
        for budget in (10, 25):
            for label in per_prompt:
                want = _reference_accuracy(store, rows, [picks[label][p] for p in ranked[:budget]])
                got = [r for r in res.runs if (r["arm"], r["budget"], r["seed"]) == (label, budget, seed)]
                assert len(got) == 1 and got[0]["n_pairs"] == budget == got[0]["n_prompts"]
                assert got[0]["accuracy"] == pytest.approx(want, abs=1e-12), (label, budget, seed)
    # every cell: one run per seed; a linear reward is learnable here, so accuracy is far above chance
    assert len(res.cells) == len(arms) * 3 * 2
    assert all(c["n"] == 3 for c in res.cells)
    top = max(b for b in {c["budget"] for c in res.cells})
    assert all(c["mean"] > 0.8 for c in res.cells if c["metric"] == "accuracy" and c["budget"] == top)
    # the uniform arm (pool level) drew its pairs inside its own 50% selection
    select(store, "map", "u0", seed=0, variant="rand", ratio=0.5)
    assert res.manifest["baseline"] == "random"
    assert res.manifest["heldout"]["prompts"] == len(_heldout_ids(store) & {r["prompt_id"] for r in rows})


def test_rerun_gives_the_same_numbers_and_outputs(world_store, tmp_path):
    store, _ = world_store
    args = (["easy,hard,random", "map@map40"], "8,16", "0,4,9", "reward-head")
    a = compare(store, args[0], args[1], args[2], args[3], tmp_path / "a", embedding=EMB)
    b = compare(store, args[0], args[1], args[2], args[3], tmp_path / "b", embedding=EMB)
    assert (tmp_path / "a" / "results.json").read_bytes() == (tmp_path / "b" / "results.json").read_bytes()
    assert a.table == b.table
    for name in ("results.json", "manifest.json", "table.txt", "curve.png"):
        assert (tmp_path / "a" / name).stat().st_size > 0
    assert (tmp_path / "a" / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert m["seeds"] == [0, 4, 9] and m["budgets"] == [8, 16] and m["learner"]["embedding"] == EMB
    assert m["store_versions"]["splits"] == store.table("splits").version
    assert [x["label"] for x in m["arms"]] == ["easy", "hard", "random", "map40"]
    assert m["arms"][3]["params"]["ratio"] == 0.4 and m["arms"][0]["draw"] == "shared prompts"
    with pytest.raises(UsageError, match="--overwrite"):
        compare(store, ["easy"], "8", 2, out=tmp_path / "a", embedding=EMB)


def test_single_pair_halves_are_drawn_from(single_store, tmp_path):
    store, rows = single_store
    res = compare(store, ["easy-half", "hard-half", "random-half", "random"], "10,max", 3, out=tmp_path / "o",
                  embedding=EMB)
    held = _heldout_ids(store)
    n_train = sum(r["prompt_id"] not in held for r in rows)
    assert max(c["budget"] for c in res.cells) == n_train // 2
    assert res.manifest["baseline"] == "random-half"
    table = res.table.splitlines()
    assert "accuracy - random-half" in table[2] and any("(baseline)" in line for line in table)
    cell = next(c for c in res.cells if c["arm"] == "easy-half" and c["metric"] == "accuracy" and c["budget"] == 10)
    assert cell["vs_baseline"]["n"] == 3 and cell["lo"] <= cell["mean"] <= cell["hi"]


def test_bad_input_names_the_fix_and_writes_nothing(world_store, tmp_path):
    store, _ = world_store
    out = tmp_path / "never"
    cases = [
        (dict(arms=["easy", "eazy"]), UsageError, "unknown strategy 'eazy'"),
        (dict(budgets="10,100000"), UsageError, r"larger than the pool.*largest budget every arm can take is \d+"),
        (dict(embedding="nope"), TableNotFound, "pairsift embed --model MODEL --name nope"),
        (dict(arms=["dcrm:logprobs=smol"]), UsageError, "compute log-probs `smol` with `pairsift score`"),
        (dict(learner="dpo"), UsageError, "needs --model"),
        (dict(baseline="nobody"), UsageError, "--baseline"),
        (dict(budgets="ten"), UsageError, "--budgets"),
        (dict(seeds="x"), UsageError, "--seeds"),
    ]
    before = store.versions()
    for over, err, msg in cases:
        kw = dict(arms=["easy", "random"], budgets="10", seeds=2, learner="reward-head", embedding=EMB)
        kw.update(over)
        if kw["learner"] == "dpo":
            kw.pop("embedding")
        with pytest.raises(err, match=msg):
            compare(store, kw.pop("arms"), kw.pop("budgets"), kw.pop("seeds"), kw.pop("learner"), out, **kw)
        assert not out.exists()
    assert store.versions() == before  # the store is untouched too


def test_refuses_without_split_and_subsets_from_before_it(tmp_store, tmp_path):
    write_world(tmp_store, signal_world(3, 60))
    with pytest.raises(UsageError, match="pairsift split --holdout"):
        compare(tmp_store, ["easy"], "5", 2, embedding=EMB)
    select(tmp_store, "easy", "old", embedding=EMB)
    make_split(tmp_store, holdout=0.3, seed=0)
    with pytest.raises(UsageError, match="'old' was selected .* before the held-out split"):
        compare(tmp_store, ["easy"], "5", 2, subsets=["old"], embedding=EMB)
    select(tmp_store, "random", "new", seed=1)
    res = compare(tmp_store, ["easy"], "5", 2, subsets=["new"], embedding=EMB)
    assert {r["arm"] for r in res.runs} == {"easy", "new"}


def test_no_embedding_set_at_all(tmp_store, tmp_path):
    write_world(tmp_store, signal_world(4, 30))
    make_split(tmp_store, holdout=0.3, seed=0)
    tmp_store.db.drop_table(f"embeddings_{EMB}")
    with pytest.raises(TableNotFound, match="has none: run `pairsift embed --model MODEL --name NAME`"):
        compare(tmp_store, ["random"], "5", 2, out=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_cli_compare(world_store, tmp_path):
    store, _ = world_store
    runner = CliRunner()
    base = ["compare", "--store", store.uri, "--embedding", EMB, "--budgets", "8,16", "--seeds", "2"]
    r = runner.invoke(cli, [*base, "-s", "easy,hard", "-s", "random", "--out", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    assert "budget" in r.stdout and "easy" in r.stdout and "accuracy - random" in r.stdout
    assert "wrote " in r.stderr and "results.json" in r.stderr  # stdout carries only the table
    r = runner.invoke(cli, [*base, "-s", "easy,random", "--out", str(tmp_path / "j"), "--json"])
    out = json.loads(r.stdout)
    assert {c["arm"] for c in out["cells"]} == {"easy", "random"} and len(out["runs"]) == 8
    bad = runner.invoke(cli, [*base, "-s", "easy,nope", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 1 and bad.output.count("Error:") == 1 and "Traceback" not in bad.output
    assert not (tmp_path / "bad").exists()
    bad = runner.invoke(cli, [*base, "-s", "easy", "--reg", "2", "--learner", "dpo", "--out", str(tmp_path / "b2")])
    assert bad.exit_code != 0 and "--reg" in bad.output
    assert "Example:" in runner.invoke(cli, ["compare", "--help"]).output


@pytest.mark.slow
def test_dpo_learner_trains_and_evaluates_with_the_products_train_and_eval(world_store, tmp_path):
    pytest.importorskip("trl")
    from tests.train.helpers import save_tiny

    store, _ = world_store
    model = save_tiny(tmp_path / "tiny")
    res = compare(store, ["easy", "random"], "4", "1", "dpo", tmp_path / "d", model=model, device="cpu",
                  batch_size=2, max_length=64, learning_rate=1e-3, eval_pairs=12)
    assert len(res.runs) == 2
    for r in res.runs:
        assert 0.0 <= r["accuracy"] <= 1.0 and math.isfinite(r["loss"]) and r["n_pairs"] == 4
        assert r["margin_beta"] == pytest.approx(0.1 * r["margin_raw"], rel=1e-6, abs=1e-12)
        assert 0 < r["eval_pairs"] <= 12
    assert res.manifest["heldout"]["pairs"] == 12 and res.manifest["learner"]["name"] == "dpo"
    assert list_subsets(store) == []  # run and held-out subsets are removed after the comparison
    assert "loss" in (tmp_path / "d" / "table.txt").read_text()


def test_a_rerun_removes_what_an_interrupted_dpo_comparison_left(tmp_store):
    """A killed dpo compare leaves its temporary subsets; the same comparison removes them when it
    starts again, and touches nothing else (another comparison's, the user's)."""
    from pairsift.compare.learners import drop_leftovers

    write_world(tmp_store, random_world(np.random.default_rng(4), 12))
    for name in ("cmp-0123abcd-heldout", "cmp-0123abcd-easy-n4-s0", "cmp-0123abce-heldout", "mine"):
        select(tmp_store, "easy", name, embedding=EMB)
    assert drop_leftovers(tmp_store, "cmp-0123abcd") == ["cmp-0123abcd-easy-n4-s0", "cmp-0123abcd-heldout"]
    assert sorted(m.name for m in list_subsets(tmp_store)) == ["cmp-0123abce-heldout", "mine"]
