"""`pairsift split`: by prompt, deterministic from the seed, stable when prompts are added, and
enforced where every selection's candidate pool is built."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from pairsift.cli import cli
from pairsift.compare.split import make_split, splitmix64, uniform_hash
from pairsift.errors import TableNotFound, UsageError
from pairsift.select.subsets import load_subset, select
from pairsift.store.ids import id_keys
from pairsift.store.schema import PROMPTS
from pairsift.store.splits import read_split
from tests.select.strategy_data import EMB, random_world, write_world


def _mix(x: int) -> int:
    """SplitMix64's finaliser in plain Python integers (the reference)."""
    m = (1 << 64) - 1
    z = (x + 0x9E3779B97F4A7C15) & m
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


def test_hash_matches_plain_python():
    keys = np.array([0, 1, 2**63, 2**64 - 1, 12345678901234567], dtype=np.uint64)
    assert splitmix64(keys).tolist() == [_mix(int(k)) for k in keys]
    salt = _mix((7 * 1_000_003 + 0) & ((1 << 64) - 1))
    want = [(_mix(int(k) ^ salt) >> 11) * 2.0**-53 for k in keys]
    assert uniform_hash(keys, 7).tolist() == want


def _held_ids(store) -> set[str]:
    t = store.dataset("splits").to_table()
    return {p for p, h in zip(t.column("prompt_id").to_pylist(), t.column("heldout").to_pylist()) if h}


def test_split_by_prompt_deterministic_and_recorded(tmp_store):
    write_world(tmp_store, random_world(np.random.default_rng(0), 400))
    r = make_split(tmp_store, holdout=0.2, seed=3)
    assert r.changed and r.prompts == 400 and 50 < r.heldout < 110  # binomial(400, 0.2)
    split = read_split(tmp_store)
    assert split.meta["seed"] == 3 and split.meta["holdout"] == 0.2
    assert split.meta["store_versions"]["prompts"] == tmp_store.table("prompts").version
    assert split.meta["counts"] == {"prompts": 400, "heldout": r.heldout}
    ids = tmp_store.dataset("prompts").to_table(columns=["prompt_id"]).column("prompt_id")
    want = {p for p, u in zip(ids.to_pylist(), uniform_hash(id_keys(ids), 3)) if u < 0.2}
    assert _held_ids(tmp_store) == want
    # Same arguments: nothing written. Another seed: refused without --replace.
    again = make_split(tmp_store, holdout=0.2, seed=3)
    assert not again.changed and again.version == r.version
    with pytest.raises(UsageError, match="--replace"):
        make_split(tmp_store, holdout=0.2, seed=4)
    other = make_split(tmp_store, holdout=0.2, seed=4, replace=True)
    assert other.changed and _held_ids(tmp_store) != want
    with pytest.raises(UsageError, match="--holdout"):
        make_split(tmp_store, holdout=1.0, seed=0)


def test_new_prompts_keep_old_assignments(tmp_store):
    write_world(tmp_store, random_world(np.random.default_rng(0), 200))
    first = make_split(tmp_store, holdout=0.3, seed=1)
    before = _held_ids(tmp_store)
    created = read_split(tmp_store).created_at
    # More prompts arrive: until the split is re-run they are excluded as not_in_split.
    # Ids as the store makes them (content hashes): distinct 64-bit keys, which the keyed writer dedups on.
    extra = [dict(prompt_id=hashlib.sha256(f"new {i}".encode()).hexdigest()[:32], text=f"new {i}", messages=None,
                  dataset="t", split="x", meta=None) for i in range(1, 101)]
    new_ids = {e["prompt_id"] for e in extra}
    with tmp_store.writer() as w:
        w.append("prompts", pa.Table.from_pylist(extra, PROMPTS))
    second = make_split(tmp_store, holdout=0.3, seed=1)
    assert second.changed and second.new_prompts == 100 and second.prompts == 300
    after = _held_ids(tmp_store)
    assert before == after - new_ids and before <= after
    assert read_split(tmp_store).created_at == created  # the same split, extended
    assert first.heldout <= second.heldout


def test_select_excludes_heldout_prompts_and_counts_them(tmp_store):
    rows = write_world(tmp_store, random_world(np.random.default_rng(2), 150, tie_prob=0.0, nan_prob=0.0))
    before = select(tmp_store, "easy", "before", embedding=EMB)
    make_split(tmp_store, holdout=0.3, seed=0)
    held = _held_ids(tmp_store)
    after = select(tmp_store, "easy", "after", embedding=EMB)
    _, members = load_subset(tmp_store, "after")
    assert not held & set(members.column("prompt_id").to_pylist())
    n_held = sum(r["prompt_id"] in held for r in rows)
    assert after.counts["excluded"]["held_out"] == n_held
    assert after.counts["prompts_excluded"]["held_out"] == len(held)
    assert after.counts["selected"] + sum(after.counts["excluded"].values()) == after.counts["rows_read"]
    _, old = load_subset(tmp_store, "before")
    assert held & set(old.column("prompt_id").to_pylist())  # the old subset did take held-out prompts
    assert before.counts["selected"] == after.counts["selected"] + len(held)


def test_split_needs_prompts(tmp_store):
    with pytest.raises(TableNotFound, match="pairsift ingest"):
        make_split(tmp_store)


def test_cli_split(tmp_path):
    from pairsift.store import open_store

    store = open_store(tmp_path / "s")
    write_world(store, random_world(np.random.default_rng(0), 50))
    runner = CliRunner()
    r = runner.invoke(cli, ["split", "--store", str(tmp_path / "s"), "--holdout", "0.2", "--seed", "1", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["prompts"] == 50 and out["changed"] is True
    r = runner.invoke(cli, ["split", "--store", str(tmp_path / "s"), "--seed", "2"])
    assert r.exit_code == 1 and "Error: the store already has a split" in r.output and "Traceback" not in r.output
    assert "Example:" in runner.invoke(cli, ["split", "--help"]).output
