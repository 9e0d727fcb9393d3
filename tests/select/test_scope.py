"""`select --dataset/--split`, the one-pair-per-prompt hint, and random-half --embedding."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pairsift.errors import UsageError
from pairsift.select.subsets import load_subset, select
from pairsift.store.sql import is_in

from . import reference as ref
from .strategy_data import EMB, random_world, write_world

COS = f"cos_{EMB}"


def _two_datasets(store, seed: int = 0, ks=(2, 3, 4)):
    """A world whose prompts 0, 2, 4, ... become dataset 'b' / split 'test'; the rest stay 't'/'train'."""
    rows = write_world(store, random_world(np.random.default_rng(seed), 24, ks=ks))
    prompts = store.dataset("prompts").to_table(columns=["prompt_id", "text"]).to_pylist()
    moved = [p["prompt_id"] for p in prompts if int(p["text"].split()[1]) % 2 == 0]
    store.table("prompts").update(where=is_in("prompt_id", moved), values={"dataset": "b", "split": "test"})
    return rows, set(moved)


def _members(store, name):
    return load_subset(store, name)[1].to_pylist()


def test_dataset_filter_keeps_only_that_datasets_prompts(tmp_store):
    rows, moved = _two_datasets(tmp_store)
    result = select(tmp_store, "easy", "b-easy", embedding=EMB, dataset="b")
    got = _members(tmp_store, "b-easy")
    want = ref.easy([r for r in rows if r["prompt_id"] in moved], COS)
    assert [m["pair_id"] for m in got] == [w[0] for w in want]
    assert result.params["dataset"] == "b" and "split" not in result.params
    outside = sum(r["prompt_id"] not in moved for r in rows)
    assert result.counts["excluded"]["dataset"] == outside
    assert result.counts["selected"] + sum(result.counts["excluded"].values()) == result.counts["rows_read"]
    # The manifest records it (what export's dataset card and training read back).
    assert json.loads(tmp_store.dataset("subsets").to_table().to_pylist()[-1]["params"])["dataset"] == "b"


def test_split_alone_and_with_where(tmp_store):
    rows, moved = _two_datasets(tmp_store)
    train = select(tmp_store, "random", "tr", split="train")
    assert {m["prompt_id"] for m in _members(tmp_store, "tr")} == {r["prompt_id"] for r in rows} - moved
    assert train.params["split"] == "train"
    both = select(tmp_store, "band", "bw", embedding=EMB, min=-1.0, max=1.0, dataset="b", split="test",
                  where=f"{COS} > 0")
    in_b = [r for r in rows if r["prompt_id"] in moved]
    assert both.counts["excluded"]["dataset"] == len(rows) - len(in_b)
    assert both.counts["excluded"]["where"] == sum(not (r[COS] is not None and r[COS] > 0) for r in in_b)
    assert {m["prompt_id"] for m in _members(tmp_store, "bw")} <= moved


def test_unknown_dataset_names_the_ones_present(tmp_store):
    _two_datasets(tmp_store)
    with pytest.raises(UsageError, match=r"no prompt in hh/test \(the store holds b/test, t/train\)"):
        select(tmp_store, "easy", "x", embedding=EMB, dataset="hh", split="test")


@pytest.mark.parametrize("strategy,half", [("easy", "easy-half"), ("hard", "hard-half"), ("random", "random-half"),
                                           ("centroid", "easy-half, hard-half or random-half")])
def test_per_prompt_strategy_on_single_pair_data_suggests_the_half(tmp_store, strategy, half):
    write_world(tmp_store, random_world(np.random.default_rng(1), 9, ks=(2,), tie_prob=0.0, nan_prob=0.0))
    params = {} if strategy == "random" else {"embedding": EMB}
    result = select(tmp_store, strategy, "s", **params)
    assert result.counts["selected"] == 9
    assert len(result.notes) == 1 and f"use {half}" in result.notes[0]
    assert f"hint: 9 prompts of 9 have a single candidate pair, so '{strategy}' kept 9 of 9 pairs" in result.summary()


def test_the_hint_also_fires_on_nearly_single_pair_data(tmp_store):
    """HH-RLHF's test split: 2,312 pairs over 2,310 prompts; a couple of prompts have two."""
    world = random_world(np.random.default_rng(5), 20, ks=(2,), tie_prob=0.0, nan_prob=0.0)
    world[0] = world[0] + random_world(np.random.default_rng(6), 1, ks=(1,), tie_prob=0.0, nan_prob=0.0)[0]
    write_world(tmp_store, world)
    result = select(tmp_store, "easy", "s", embedding=EMB)
    assert result.counts["selected"] == 20 and result.counts["candidates"] == 22
    assert "19 prompts of 20 have a single candidate pair" in result.notes[0]


def test_no_hint_when_prompts_have_several_pairs(tmp_store):
    write_world(tmp_store, random_world(np.random.default_rng(2), 9, ks=(3, 4)))
    assert select(tmp_store, "easy", "s", embedding=EMB).notes == []


def test_random_half_with_an_embedding_draws_from_the_halves_pool(tmp_store):
    """--embedding X: the pairs with a cosine under X, as easy-half/hard-half; comparable N."""
    world = random_world(np.random.default_rng(3), 15, ks=(2,), tie_prob=0.0, nan_prob=0.0)
    for prompt in world[:4]:
        prompt[0]["vec"] = None  # no embedding: a null cosine
    rows = write_world(tmp_store, world, dim=8)
    with_cos = [r for r in rows if r[COS] is not None]
    rh = select(tmp_store, "random-half", "rh", embedding=EMB, seed=5)
    eh = select(tmp_store, "easy-half", "eh", embedding=EMB)
    hh = select(tmp_store, "hard-half", "hh", embedding=EMB)
    assert rh.counts["selected"] == eh.counts["selected"] == hh.counts["selected"] == len(with_cos) // 2
    assert rh.counts["excluded"][f"null_{COS}"] == eh.counts["excluded"][f"null_{COS}"] == 4
    want = ref.halves(with_cos, COS, "random", seed=5)
    assert [m["pair_id"] for m in _members(tmp_store, "rh")] == [w[0] for w in want]
    assert rh.params["embedding"] == EMB
    # Without it: every pair can be drawn, and no embedding is recorded.
    plain = select(tmp_store, "random-half", "rh0", seed=5)
    assert plain.counts["selected"] == len(rows) // 2 and "embedding" not in plain.params


def test_cli_dataset_option_and_hint_on_stderr(tmp_store):
    from click.testing import CliRunner

    from pairsift.cli import cli

    write_world(tmp_store, random_world(np.random.default_rng(4), 6, ks=(2,), tie_prob=0.0, nan_prob=0.0))
    res = CliRunner().invoke(cli, ["select", "easy", "--name", "e", "--store", tmp_store.uri, "--dataset", "t",
                                   "--split", "train", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["params"]["dataset"] == "t"
    assert "Warning: 6 prompts of 6 have a single candidate pair" in res.stderr and "easy-half" in res.stderr
