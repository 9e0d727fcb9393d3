"""`pairsift optimize` (issue 9 #10): compacts, collects what crashed runs left, never a tagged
version; and the store looks tables up without listing them (issue 8 #2)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from pairsift.cli import cli
from pairsift.store import PROMPTS, content_id
from pairsift.store.maintenance import optimize
from pairsift.store.schema import SUBSET_MEMBERS
from pairsift.store.subsets import new_run, tag_for
from tests.select.strategy_data import EMB, random_world, write_world


def prompts(*texts: str) -> pa.Table:
    n = len(texts)
    return pa.table({"prompt_id": [content_id(t) for t in texts], "text": list(texts), "messages": [None] * n,
                     "dataset": ["d"] * n, "split": ["train"] * n, "meta": [None] * n}, schema=PROMPTS)


def test_optimize_compacts_and_prunes_but_keeps_tagged_versions(tmp_store):
    from pairsift.select.subsets import load_subset, select

    write_world(tmp_store, random_world(np.random.default_rng(3), 12))
    for i in range(5):  # small appends: many fragments
        with tmp_store.writer() as w:
            w.append("prompts", prompts(f"extra {i}"))
    subset = select(tmp_store, "centroid", "keep", embedding=EMB)
    for i in range(3):  # versions after the subset's
        with tmp_store.writer() as w:
            w.append("prompts", prompts(f"later {i}"))
    before = len(tmp_store.dataset("prompts").get_fragments())
    report = optimize(tmp_store, keep_versions=timedelta(0))
    assert report.tables["prompts"]["fragments_before"] == before > report.tables["prompts"]["fragments_after"] == 1
    assert report.tables["prompts"]["versions_removed"] > 0
    # every version the subset tagged is still there: its texts export at the recorded versions
    for table, version in subset.store_versions.items():
        assert tmp_store.dataset(table, version).version == version
    out = CliRunner().invoke(cli, ["export", "keep", "--store", tmp_store.uri, "--out", str(tmp_store.uri) + "-x.jsonl"])
    assert out.exit_code == 0, out.output
    assert load_subset(tmp_store, "keep")[1].num_rows == subset.counts["selected"]
    assert tmp_store.count("prompts") == 12 + 5 + 3


def test_optimize_collects_orphan_runs_tags_and_aborted_files(tmp_store):
    from pairsift.select.subsets import load_subset, select

    write_world(tmp_store, random_world(np.random.default_rng(5), 10))
    live = select(tmp_store, "random", "live", seed=1)
    # A select that died after its tag and members commits, two hours ago (no manifest names it).
    old_run = "20000101T000000-deadbeef"
    tag = tag_for("ghost", old_run)
    tmp_store.tag(tag, {"pair_features": tmp_store.dataset("pair_features").version})
    members = load_subset(tmp_store, "live")[1].to_pylist()
    for m in members:
        m.update(subset="ghost", run=old_run)
    with tmp_store.writer() as w:
        w.append("subset_members", pa.Table.from_pylist(members, SUBSET_MEMBERS))
    # and one that is still running (young): left alone
    young = new_run()
    for m in members:
        m.update(run=young)
    with tmp_store.writer() as w:
        w.append("subset_members", pa.Table.from_pylist(members, SUBSET_MEMBERS))
    # an aborted write: data files written, never committed
    with pytest.raises(RuntimeError), tmp_store.writer(rows_per_file=1) as w:
        w.append("prompts", prompts("a", "b", "c"))
        raise RuntimeError("killed")
    data_dir = Path(tmp_store.table_uri("prompts")) / "data"
    files_before = list(data_dir.iterdir())

    report = optimize(tmp_store, keep_versions=timedelta(0), remove_orphans_now=True)
    assert report.subsets["member_runs"] == 1 and report.subsets["tags"] == 1
    assert tag not in tmp_store.dataset("pair_features").tags.list()
    runs = set(tmp_store.dataset("subset_members").to_table(columns=["run"]).column(0).to_pylist())
    assert runs == {live.run, young}
    files_after = list(data_dir.iterdir())
    assert len(files_after) < len(files_before)  # the aborted write's files are gone
    assert tmp_store.count("prompts") == 10
    assert load_subset(tmp_store, "live")[1].num_rows == live.counts["selected"]


def test_optimize_cli_json(tmp_store):
    with tmp_store.writer() as w:
        w.append("prompts", prompts("a"), PROMPTS)
    res = CliRunner().invoke(cli, ["optimize", "--store", tmp_store.uri, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["tables"]["prompts"]["fragments_after"] == 1


def test_looking_up_a_table_does_not_list_the_store(tmp_store, monkeypatch):
    """Issue 8 #2: each lookup listed and opened every table (a round trip per table on s3)."""
    with tmp_store.writer() as w:
        w.append("prompts", prompts("a", "b"), PROMPTS)

    def no_listing(*args, **kwargs):
        raise AssertionError("a lookup listed the store")

    monkeypatch.setattr(type(tmp_store.db), "list_tables", no_listing)
    assert tmp_store.has_table("prompts") and not tmp_store.has_table("responses")
    assert tmp_store.count("prompts") == 2
    assert tmp_store.table("prompts").count_rows() == 2
    assert tmp_store.versions(["prompts"]) == {"prompts": 2}
    with tmp_store.writer() as w:
        w.append("prompts", prompts("c"))
    assert tmp_store.scan("prompts").collect().height == 3
