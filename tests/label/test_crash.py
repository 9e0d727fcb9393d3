"""kill -9 inside `label import` and `label resolve` (issue 9 item 8, issue 8 item 2), and resolve
beside a crashed or concurrent `select`: what is left is the old state or the new one (resolve: a
consistent prefix that a re-run completes), never duplicates, only the run a manifest names is
ever touched, and a re-run ends where an uninterrupted run ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from pairsift.label.importing import import_labels
from pairsift.label.resolve import resolve
from pairsift.select.subsets import load_subset, select
from pairsift.store.subsets import _with_run, new_run, read_manifest
from tests.concurrency.helpers import run

from .checks import consistent, copy_store, second_round, state, votes_file, write_rows
from .helpers import EMB, members

pytestmark = pytest.mark.slow

#: The named pause points of resolve: after its `pairs` commits, its `pair_features` commit, and the
#: subset step (members under a new run + the manifest naming it, one visible step).
RESOLVE_STEPS = ["label-resolve:pairs", "label-resolve:pair_features", "label-resolve:subset"]
KILLED = -signal.SIGKILL


def _popen(args: list[str], **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pairsift.cli", *args], env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_paused(proc: subprocess.Popen, hook: str) -> None:
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith(f"paused after {hook}"):
            return
    proc.wait()
    raise AssertionError(f"never paused after {hook}: {''.join(seen)}")


def _pause_and_kill(args: list[str], hook: str) -> None:
    proc = _popen(args, PAIRSIFT_PAUSE_AFTER=hook)
    _wait_paused(proc, hook)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_import_killed_right_after_its_commit(labelled_store, tmp_path):
    store = labelled_store
    path, n = votes_file(store, tmp_path)
    _pause_and_kill(["label", "import", "u", str(path), "--store", store.uri], "label-import")
    # one commit: after it, every label is there (and before it, none was)
    assert store.count("labels") == n
    consistent(store)
    again = import_labels(store, "u", path)
    assert (again.new, again.unchanged) == (0, n) and store.count("labels") == n


def test_import_of_new_and_corrected_labels_killed_between_its_two_commits(labelled_store, tmp_path):
    store = labelled_store
    ms = members(store)
    first = write_rows(tmp_path, "a.jsonl", [{"pair_id": m["pair_id"], "label": "a", "annotator": "x"} for m in ms[:6]])
    import_labels(store, "u", first)
    # pairs 0-2 corrected to b, pairs 6-11 new
    rows = [{"pair_id": m["pair_id"], "label": "b" if i < 3 else "a", "annotator": "x"} for i, m in enumerate(ms[:12])]
    fixed = write_rows(tmp_path, "b.jsonl", rows)
    _pause_and_kill(["label", "import", "u", str(fixed), "--store", store.uri], "label-import:new")
    consistent(store)
    got = {r["pair_id"]: r["choice"] for r in store.dataset("labels").to_table().to_pylist()}
    assert len(got) == 12 and all(got[m["pair_id"]] == "a" for m in ms[:12])  # new ones in, corrections not yet
    again = import_labels(store, "u", fixed)
    assert (again.new, again.changed, again.unchanged) == (0, 3, 9)
    got = {r["pair_id"]: r["choice"] for r in store.dataset("labels").to_table().to_pylist()}
    assert store.count("labels") == 12 and [got[m["pair_id"]] for m in ms[:4]] == ["b", "b", "b", "a"]


@pytest.mark.parametrize("hook", RESOLVE_STEPS)
def test_resolve_killed_after_each_step(labelled_store, tmp_path, hook):
    store = labelled_store
    ref_store = copy_store(store, tmp_path, "ref")
    path, _ = votes_file(ref_store, tmp_path)
    import_labels(ref_store, "u", path)
    resolve(ref_store, "u")
    want = state(ref_store)

    import_labels(store, "u", path)
    before = state(store)
    _pause_and_kill(["label", "resolve", "u", "--store", store.uri], hook)
    consistent(store)
    after_crash = state(store)
    # a prefix: the tables up to the hook hold the new state, the later ones the old; members,
    # the labelled flag and the counts change together
    order = [("pairs",), ("features",), ("members", "labelled", "annotated")]
    upto = RESOLVE_STEPS.index(hook)
    for i, keys in enumerate(order):
        for key in keys:
            assert after_crash[key] == (want[key] if i <= upto else before[key]), key
    assert before["annotated"] != want["annotated"]  # the last step is observable too
    resolve(store, "u")  # the re-run completes it
    consistent(store)
    assert state(store) == want


def test_resolve_killed_after_every_commit(labelled_store, tmp_path):
    """Every store commit of a resolve that adds, rewrites and removes annotator rows and swaps
    the subset's run: kill -9 right after commit N, for every N, then check and re-run."""
    first, second = second_round(labelled_store, tmp_path)
    import_labels(labelled_store, "u", first)
    resolve(labelled_store, "u")
    import_labels(labelled_store, "u", second)
    template = copy_store(labelled_store, tmp_path, "template")
    ref = copy_store(template, tmp_path, "ref")
    before = state(template)
    rep = resolve(ref, "u")
    assert rep.written["pairs"] == 6 + 6 + 3  # changed, stale, new: all three kinds of write
    want = state(ref)
    # the annotator rows: one per oriented pair, the flipped ones rewritten (never a second row)
    ms = members(ref)
    annot = {p: c for p, c, s in want["pairs"] if s == "annotator"}
    assert len(annot) == 12 and all(annot[m["pair_id"]] == m["b_id"] for m in ms[:6] + ms[15:])

    n = 0
    while True:
        n += 1
        assert n < 60, "resolve still committing after 59 commits"
        store = copy_store(template, tmp_path, f"kill{n}")
        rc, _, err = run(["label", "resolve", "u", "--store", store.uri], PAIRSIFT_TEST_KILL_AFTER_COMMIT=str(n))
        if rc == 0:
            assert state(store) == want
            break
        assert rc == KILLED, (n, rc, err[-2000:])
        consistent(store)
        crashed = state(store)
        # the subset step is atomic: members, flag and counts are all old or all new
        subset = ("members", "labelled", "annotated")
        assert all(crashed[k] == before[k] for k in subset) or all(crashed[k] == want[k] for k in subset), n
        resolve(store, "u")
        consistent(store)
        assert state(store) == want, n
    assert n > 6  # pairs (3), pair_features, tags, members, manifest, cleanup: each was a kill point


def test_resolve_touches_only_the_run_the_manifest_names(labelled_store, tmp_path):
    """A crashed `select --replace` left an orphan run of subset u (its members, no manifest):
    resolve orients the visible run and leaves the orphan as it was (optimize collects it)."""
    store = labelled_store
    manifest, mem = load_subset(store, "u")
    orphan_run = new_run()
    with store.writer() as w:  # step 2 of a select whose manifest commit never happened
        w.append("subset_members", _with_run(mem, "u", orphan_run))
    path, _ = votes_file(store, tmp_path)
    import_labels(store, "u", path)
    rep = resolve(store, "u")
    assert rep.oriented > 0
    consistent(store)
    orphan = store.dataset("subset_members").to_table(filter=f"run = '{orphan_run}'").to_pylist()
    assert len(orphan) == mem.num_rows and all(r["chosen_id"] is None for r in orphan)
    visible = members(store)
    assert sum(m["label_source"] == "annotator" for m in visible) == rep.oriented
    assert read_manifest(store, "u").run != manifest.run  # the members were swapped for a new run


def test_resolve_beside_a_select_replace_of_its_subset(labelled_store, tmp_path):
    """`select --replace u` lands while resolve is between its steps: resolve must not write the
    old subset's orientation or counts over the new one; it starts over on the new subset."""
    store = labelled_store
    ms = members(store)
    write_rows(tmp_path, "all.jsonl", [{"pair_id": m["pair_id"], "label": "a", "annotator": "x"} for m in ms])
    import_labels(store, "u", tmp_path / "all.jsonl")
    go = tmp_path / "go"
    proc = _popen(["label", "resolve", "u", "--store", store.uri],
                  PAIRSIFT_PAUSE_AFTER="label-resolve:pairs", PAIRSIFT_RESUME_FILE=str(go))
    _wait_paused(proc, "label-resolve:pairs")
    new = select(store, "band", "u", embedding=EMB, min=-1.0, max=0.0, replace=True)
    assert 0 < new.counts["selected"] < len(ms) and not new.labelled
    go.touch()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    consistent(store)
    manifest, mem = load_subset(store, "u")
    assert manifest.counts["selected"] == new.counts["selected"] == mem.num_rows
    assert manifest.labelled and {m["label_source"] for m in mem.to_pylist()} == {"annotator"}
    assert all(m["chosen_id"] == m["a_id"] for m in mem.to_pylist())
