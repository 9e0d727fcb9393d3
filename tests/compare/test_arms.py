"""Arms: the spec syntax, and the in-memory picks equal what `pairsift select` saves (same seed)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from pairsift.cli import cli
from pairsift.compare.arms import is_per_prompt, parse_arm, parse_arms, resolve_arm
from pairsift.errors import UsageError
from pairsift.select.subsets import load_subset, select
from pairsift.store.splits import read_split
from tests.select.strategy_data import EMB, LP, RM, random_world, write_world

COS = f"cos_{EMB}"

#: Every registered strategy, several parameterisations (as tests/select/test_strategies.py runs them).
CASES = [
    ("easy", dict(embedding=EMB)),
    ("hard", dict(embedding=EMB)),
    ("centroid", dict(embedding=EMB)),
    ("random", {}),
    ("easy-half", dict(embedding=EMB)),
    ("hard-half", dict(embedding=EMB)),
    ("random-half", {}),
    ("band", dict(embedding=EMB, min=-0.5, max=0.9, per_prompt=2)),
    ("dcrm", {}),
    ("dcrm", dict(reward=RM, different_source=True)),
    ("dcrm", dict(ablation="margin-only")),
    ("map", {}),
    ("map", dict(variant="rand", ratio=0.5)),
    ("map", dict(variant="logp_margin_norm_abs", logprobs=LP)),
    ("top", dict(by=COS, k=7)),
    ("top", dict(by="score_margin", k=1, per_prompt=True, descending=True)),
]

COLUMNS = ["pair_id", "prompt_id", "rank", "score", "chosen_id", "rejected_id", "label_source", "a_id", "b_id"]


@pytest.fixture
def split_world(tmp_store):
    from pairsift.compare.split import make_split

    write_world(tmp_store, random_world(np.random.default_rng(5), 60, tie_prob=0.2, nan_prob=0.05))
    make_split(tmp_store, holdout=0.3, seed=2)
    return tmp_store


def _spec(strategy: str, params: dict) -> str:
    return ":".join([strategy, *(f"{k}={v}" for k, v in params.items())]) + "@arm"


@pytest.mark.parametrize("strategy,params", CASES, ids=[f"{s}-{i}" for i, (s, _) in enumerate(CASES)])
def test_in_memory_picks_equal_select(split_world, strategy, params):
    store = split_world
    spec = parse_arm(_spec(strategy, params))
    assert spec.strategy == strategy and spec.params == params
    versions = store.versions(["pair_features", "prompts", "responses"])
    arm = resolve_arm(store, spec, versions, read_split(store))
    for seed in (0, 11):
        got = arm.picks(seed)
        select(store, strategy, f"s{seed}", seed=seed, **params)
        _, want = load_subset(store, f"s{seed}")
        assert got.num_rows == want.num_rows > 0
        for c in COLUMNS:
            assert got.column(c).to_pylist() == want.column(c).to_pylist(), (strategy, seed, c)
        # and the pool the arm drew from excluded exactly what select counted
        assert arm.excluded.get("held_out") == load_subset(store, f"s{seed}")[0]["counts"]["excluded"]["held_out"]


def test_cli_select_gives_the_same_picks(split_world):
    store = split_world
    r = CliRunner().invoke(cli, ["select", "random-half", "--store", store.uri, "--name", "cli", "--seed", "4"])
    assert r.exit_code == 0, r.output
    _, want = load_subset(store, "cli")
    arm = resolve_arm(store, parse_arm("random-half"), store.versions(["pair_features"]), read_split(store))
    assert arm.picks(4).column("pair_id").to_pylist() == want.column("pair_id").to_pylist()


def test_spec_syntax():
    a = parse_arm("map:variant=rand:ratio=0.4@uniform")
    assert (a.label, a.strategy, a.params) == ("uniform", "map", {"variant": "rand", "ratio": 0.4})
    assert parse_arm("dcrm:ablation=margin-only").label == "dcrm-margin-only"
    b = parse_arm("top:by=score_margin:k=1:per-prompt=true:descending=yes")
    assert b.params == {"by": "score_margin", "k": 1, "per_prompt": True, "descending": True}
    assert [x.label for x in parse_arms(["easy,hard", "random"], subsets=["mine"])] == ["easy", "hard", "random", "mine"]
    with pytest.raises(UsageError, match="unknown strategy 'eazy'"):
        parse_arm("eazy")
    with pytest.raises(UsageError, match="KEY=VALUE"):
        parse_arm("map:ratio")
    with pytest.raises(UsageError, match="distinct @LABEL"):
        parse_arms(["random,random"])
    with pytest.raises(UsageError, match="label"):
        parse_arm("easy@bad label")


def test_per_prompt_classification():
    assert all(is_per_prompt(s, {}) for s in ("easy", "hard", "centroid", "random", "dcrm"))
    assert not any(is_per_prompt(s, {}) for s in ("easy-half", "hard-half", "random-half", "map", "band"))
    assert is_per_prompt("top", {"per_prompt": True, "k": 1}) and not is_per_prompt("top", {"k": 1})
    assert is_per_prompt("band", {"per_prompt": 1}) and not is_per_prompt("band", {"per_prompt": 2})


def test_bad_strategy_options_name_the_arm(split_world):
    store = split_world
    versions = store.versions(["pair_features"])
    with pytest.raises(UsageError, match="arm 'x'.*--ratio"):
        resolve_arm(store, parse_arm("easy:ratio=0.3@x"), versions, read_split(store))
    with pytest.raises(UsageError, match="arm 'y'.*pairsift score"):
        resolve_arm(store, parse_arm("dcrm:logprobs=nope@y"), versions, read_split(store))
