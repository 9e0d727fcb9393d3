"""Subsets: manifest contents, version tags, counts that add up, replace, listing, CLI, no torch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from pairsift.cli import cli, select_cmd
from pairsift.errors import SubsetNotFound, UsageError
from pairsift.select.strategies import STRATEGIES
from pairsift.select.subsets import list_subsets, load_subset, select, subset_exists

from .strategy_data import EMB, random_world, write_world


@pytest.fixture
def world_store(tmp_store):
    rows = write_world(tmp_store, random_world(np.random.default_rng(4), 25, nan_prob=0.1))
    return tmp_store, rows


def test_manifest_records_everything(world_store):
    store, rows = world_store
    before = store.versions(["pair_features", "embeddings_fake", "prompts", "responses"])
    r = select(store, "centroid", "c1", seed=5, where="source_a != 'm3'", embedding=EMB)
    manifest, members = load_subset(store, "c1")
    assert manifest.strategy == "centroid" and manifest.seed == 5
    assert manifest.params == {"embedding": EMB, "where": "source_a != 'm3'"}
    assert manifest.store_versions == before
    assert manifest.tag == f"subset-c1.{manifest.run}" and manifest.labelled is True
    for table, version in before.items():  # every table read is pinned by the run's tag
        assert store.dataset(table).tags.list()[manifest.tag]["version"] == version
    c = manifest.counts
    assert c == r.counts
    assert c["selected"] == members.num_rows == c["prompts_selected"]
    assert c["selected"] + sum(c["excluded"].values()) == c["rows_read"] == len(rows)
    assert c["excluded"]["where"] == sum(r_["source_a"] == "m3" for r_ in rows)
    assert members.column("rank").to_pylist() == list(range(members.num_rows))
    assert manifest.created_at.tzinfo is not None


def test_replace_and_list(world_store):
    store, _ = world_store
    select(store, "easy", "s", embedding=EMB)
    with pytest.raises(UsageError, match="--replace"):
        select(store, "hard", "s", embedding=EMB)
    # a new version of pair_features is read by the replacement; the tag moves with it
    store.table("pair_features").delete("prompt_id < '4'")
    old = load_subset(store, "s")[0]
    select(store, "hard", "s", embedding=EMB, replace=True)
    manifest, members = load_subset(store, "s")
    assert manifest.strategy == "hard" and manifest.revision == old.revision + 1
    tags = store.dataset("pair_features").tags.list()
    assert tags[manifest.tag]["version"] == manifest.store_versions["pair_features"]
    assert old.tag not in tags  # the replaced run's tag is gone: its versions are collectable
    assert len(set(members.column("pair_id").to_pylist())) == members.num_rows == manifest.counts["selected"]
    # the replaced run's members are gone too
    assert store.count("subset_members", "subset = 's'") == members.num_rows
    select(store, "random", "r")
    assert [m["name"] for m in list_subsets(store)] == ["s", "r"]
    with pytest.raises(SubsetNotFound, match="no subset named 'nope'"):
        load_subset(store, "nope")
    with pytest.raises(UsageError, match="--name"):
        select(store, "easy", "bad name'; drop", embedding=EMB)


def test_empty_subset_is_saved(world_store):
    store, _ = world_store
    r = select(store, "band", "empty", min=2.0, max=3.0, embedding=EMB)
    assert r.counts["selected"] == 0 and r.counts["excluded"]["outside_band"] > 0
    assert load_subset(store, "empty")[1].num_rows == 0


def test_where_matching_nothing_is_refused_and_saves_nothing(world_store):
    """Issue 9: a filter that matches nothing saved an empty subset (export: 0 rows, exit 0)."""
    store, _ = world_store
    with pytest.raises(UsageError, match=r"--where \"source_a = 'nobody'\" matches no pair .*Nothing saved"):
        select(store, "centroid", "nothing", where="source_a = 'nobody'", embedding=EMB)
    assert not subset_exists(store, "nothing")
    assert not store.has_table("subset_members") and not store.has_table("subsets")


@pytest.mark.parametrize(
    "where, problem",
    [
        ("source_a != 'm3'; DROP TABLE pairs", "no ';'"),
        ("random() < 0.5", "random\\(\\) changes between runs"),
        ("RAND () < 0.5", "rand\\(\\) changes between runs"),
        ("now() > 0", "now\\(\\)"),
    ],
)
def test_where_must_be_one_deterministic_expression(world_store, where, problem):
    """Issue 9: `--where` silently dropped text after ';' and accepted random() (not reproducible)."""
    store, _ = world_store
    with pytest.raises(UsageError, match=problem):
        select(store, "centroid", "w", where=where, embedding=EMB)
    # a ';' or a function name inside a string literal is just text
    select(store, "centroid", "w", where="source_a != 'a;random()'", embedding=EMB)


def test_unlabelled_data_goes_out_for_annotation(tmp_store):
    write_world(tmp_store, random_world(np.random.default_rng(1), 10, scored=False))
    r = select(tmp_store, "easy", "u", embedding=EMB)
    _, members = load_subset(tmp_store, "u")
    assert r.labelled is False and members.num_rows == 10
    assert members.column("chosen_id").null_count == 10 and members.column("label_source").null_count == 10


def test_cli_select_subsets_json(world_store):
    store, _ = world_store
    runner = CliRunner()
    res = runner.invoke(cli, ["select", "map", "--store", store.uri, "--name", "m", "--ratio", "0.5",
                              "--logprobs", "policy", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["params"]["ratio"] == 0.5
    res = runner.invoke(cli, ["select", "band", "--store", store.uri, "--name", "b", "--min", "0", "--max", "0.5",
                              "--per-prompt", "1", "--embedding", EMB])
    assert res.exit_code == 0 and "subset 'b' (band)" in res.output
    res = runner.invoke(cli, ["select", "top", "--store", store.uri, "--name", "t", "--by", f"cos_{EMB}",
                              "--per-prompt", "--k", "2", "--descending"])
    assert res.exit_code == 0, res.output
    assert load_subset(store, "t")[0].params["per_prompt"] is True
    res = runner.invoke(cli, ["subsets", "--store", store.uri, "--json"])
    assert [r["name"] for r in json.loads(res.output)] == ["m", "b", "t"]
    res = runner.invoke(cli, ["select", "easy", "--store", store.uri, "--name", "x", "--k", "3"])
    assert res.exit_code == 1 and "does not take --k" in res.output and "Traceback" not in res.output


def test_cli_strategy_list_matches_registry():
    choice = next(p for p in select_cmd.params if p.name == "strategy").type.choices
    assert list(choice) == list(STRATEGIES)


def test_select_never_imports_torch(world_store):
    store, _ = world_store
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom pairsift.cli import cli\n"
        f"r = CliRunner().invoke(cli, ['select', 'centroid', '--store', {store.uri!r}, '--name', 'nt'])\n"
        "assert r.exit_code == 0, r.output\n"
        "bad = [m for m in ('torch', 'transformers', 'trl', 'datasets') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_strategy_whose_input_is_missing_everywhere_says_what_to_run(tmp_store):
    """HH has labels but no scores: dcrm without --reward must explain, not save an empty subset."""
    from pairsift.errors import UsageError
    from pairsift.features.pairs import build_pairs
    from pairsift.ingest.pipeline import ingest
    from pairsift.select.subsets import select, subset_exists
    from tests.conftest import HH_SAMPLE
    from tests.select.test_select_shared import add_fake_sets

    ingest(tmp_store, HH_SAMPLE)
    add_fake_sets(tmp_store)
    build_pairs(tmp_store)
    with pytest.raises(UsageError, match=r"'score_margin'.*--reward NAME"):
        select(tmp_store, "dcrm", "bon", logprobs="ref")
    assert not subset_exists(tmp_store, "bon")
    result = select(tmp_store, "dcrm", "bon", logprobs="ref", reward="fake")
    assert result.counts["selected"] > 0


def test_subsets_written_before_runs_existed_still_read_and_upgrade(world_store):
    """A store whose subset tables an older pairsift wrote (no `run`, no `revision` columns)."""
    import pyarrow as pa

    from pairsift.store.schema import SUBSET_MEMBERS, SUBSETS

    store, _ = world_store
    select(store, "random", "fresh", seed=1)
    manifest, members = load_subset(store, "fresh")
    old_members = pa.schema([f for f in SUBSET_MEMBERS if f.name != "run"])
    old_subsets = pa.schema([f for f in SUBSETS if f.name not in ("run", "revision")])
    row = {k: v for k, v in manifest.row().items() if k in old_subsets.names}
    row.update(name="legacy", tag="subset-legacy")
    legacy_members = members.drop_columns(["run"]).set_column(
        0, "subset", pa.array(["legacy"] * members.num_rows, pa.string()))
    for name in ("subsets", "subset_members"):  # an older store: only the legacy subset
        store.db.drop_table(name)
    with store.writer() as w:
        w.append("subset_members", legacy_members, old_members)
        w.append("subsets", pa.Table.from_pylist([row], old_subsets), old_subsets)
    got, got_members = load_subset(store, "legacy")
    assert got.run is None and got.revision == 0
    assert got_members.column("pair_id").to_pylist() == members.column("pair_id").to_pylist()
    # writing upgrades the tables in place (nullable columns added), and replace works
    select(store, "random", "legacy", seed=2, replace=True)
    new, new_members = load_subset(store, "legacy")
    assert new.run is not None and new.revision == 1 and new_members.num_rows == new.counts["selected"]
    assert store.count("subset_members", "subset = 'legacy'") == new_members.num_rows
    assert "run" in store.dataset("subsets").schema.names


def test_summary_counts_read_as_english(world_store):
    """Issue 12 #5: "1 pairs from 1 prompts"."""
    store, _ = world_store
    one = select(store, "top", "one", by=f"cos_{EMB}", k=1)
    assert "subset 'one' (top): 1 pair from 1 prompt," in one.summary()
