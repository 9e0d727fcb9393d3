"""kill -9 right after each commit of `label import` and `label resolve` (issue 9 item 8, issue 8
item 2): what is left is the old state or the new one (resolve: a consistent prefix that a
re-run completes), never duplicates, and a re-run ends where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter

import pytest

from pairsift.label.importing import import_labels
from pairsift.label.resolve import resolve
from pairsift.select.subsets import load_subset
from pairsift.store import open_store

from .helpers import members

pytestmark = pytest.mark.slow

RESOLVE_COMMITS = ["label-resolve:pairs", "label-resolve:pair_features", "label-resolve:subset_members",
                   "label-resolve:subsets"]


def _votes_file(store, tmp_path):
    ms = members(store)
    rows = [{"pair_id": m["pair_id"], "label": ("a", "b", "tie", "a")[(i + k) % 4] if k < 2 or i % 2 else "b",
             "annotator": w} for i, m in enumerate(ms) for k, w in enumerate("xyz")]
    path = tmp_path / "votes.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, len(rows)


def _pause_and_kill(args: list[str], hook: str) -> None:
    env = {**os.environ, "PAIRSIFT_PAUSE_AFTER": hook}
    proc = subprocess.Popen([sys.executable, "-m", "pairsift.cli", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith(f"paused after {hook}"):
            break
    else:
        proc.wait()
        raise AssertionError(f"never paused after {hook}: {''.join(seen)}")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _state(store) -> dict:
    manifest, mem = load_subset(store, "u")
    pf = store.dataset("pair_features").to_table(columns=["pair_id", "label", "label_source"]).to_pylist()
    pairs = store.dataset("pairs").to_table(columns=["pair_id", "chosen_id", "label_source"]).to_pylist() \
        if store.has_table("pairs") else []
    return {
        "members": sorted((m["pair_id"], m["chosen_id"], m["label_source"]) for m in mem.to_pylist()),
        "features": sorted((r["pair_id"], r["label"], r["label_source"]) for r in pf),
        "pairs": sorted((r["pair_id"], r["chosen_id"], r["label_source"]) for r in pairs),
        "labelled": manifest["labelled"],
        "annotated": manifest["counts"].get("annotated"),
    }


def _consistent(store) -> None:
    """No duplicate key in any table; member count = manifest count."""
    def dup(table, cols):
        rows = store.dataset(table).to_table(columns=cols).to_pylist()
        return Counter(tuple(r[c] for c in cols) for r in rows).most_common(1)[0][1] if rows else 1

    assert dup("labels", ["label_id"]) == 1
    assert dup("pair_features", ["pair_id"]) == 1
    assert dup("subset_members", ["subset", "pair_id"]) == 1
    if store.has_table("pairs"):
        assert dup("pairs", ["pair_id", "label_source"]) == 1
    manifest, mem = load_subset(store, "u")
    assert mem.num_rows == manifest["counts"]["selected"]
    # the manifest never says "labelled" before every member is oriented (members are written first)
    if manifest["labelled"]:
        assert all(m["chosen_id"] is not None for m in mem.to_pylist())


def test_import_killed_right_after_its_commit(labelled_store, tmp_path):
    store = labelled_store
    path, n = _votes_file(store, tmp_path)
    _pause_and_kill(["label", "import", "u", str(path), "--store", store.uri], "label-import")
    # one commit: after it, every label is there (and before it, none was)
    assert store.count("labels") == n
    _consistent(store)
    again = import_labels(store, "u", path)
    assert (again.new, again.unchanged) == (0, n) and store.count("labels") == n


@pytest.mark.parametrize("hook", RESOLVE_COMMITS)
def test_resolve_killed_after_each_commit(labelled_store, tmp_path, hook):
    store = labelled_store
    shutil.copytree(store.uri, tmp_path / "ref")
    ref_store = open_store(tmp_path / "ref")
    path, _ = _votes_file(ref_store, tmp_path)
    import_labels(ref_store, "u", path)
    resolve(ref_store, "u")
    want = _state(ref_store)

    import_labels(store, "u", path)
    before = _state(store)
    _pause_and_kill(["label", "resolve", "u", "--store", store.uri], hook)
    _consistent(store)
    after_crash = _state(store)
    # a prefix: the tables up to the hook hold the new state, the later ones the old
    order = [("pairs",), ("features",), ("members",), ("labelled", "annotated")]
    upto = RESOLVE_COMMITS.index(hook)
    for i, keys in enumerate(order):
        for key in keys:
            assert after_crash[key] == (want[key] if i <= upto else before[key]), key
    assert before["annotated"] != want["annotated"]  # the last commit is observable too
    resolve(store, "u")  # the re-run completes it
    _consistent(store)
    assert _state(store) == want
