"""What every label crash and race test checks afterwards, and the label files they import."""

from __future__ import annotations

import json
import shutil
from collections import Counter

from pairsift.select.subsets import load_subset
from pairsift.store import open_store

from .helpers import members


def write_rows(tmp_path, name: str, rows: list[dict]):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def votes_file(store, tmp_path):
    """Three annotators label every pair of subset u (a mix of a, b and tie); (path, rows)."""
    ms = members(store)
    rows = [{"pair_id": m["pair_id"], "label": ("a", "b", "tie", "a")[(i + k) % 4] if k < 2 or i % 2 else "b",
             "annotator": w} for i, m in enumerate(ms) for k, w in enumerate("xyz")]
    return write_rows(tmp_path, "votes.jsonl", rows), len(rows)


def second_round(store, tmp_path):
    """(first, second) label files: x labels pairs 0-14 'a'; then y and z flip 0-5 to b (a
    changed majority), y alone ties 6-11 (no majority any more: the annotator row goes), x
    labels 15-17 'b' (first orientations)."""
    ms = members(store)
    first = write_rows(tmp_path, "first.jsonl", [{"pair_id": m["pair_id"], "label": "a", "annotator": "x"}
                                                for m in ms[:15]])
    second = [{"pair_id": m["pair_id"], "label": "b", "annotator": w} for m in ms[:6] for w in "yz"]
    second += [{"pair_id": m["pair_id"], "label": "b", "annotator": "y"} for m in ms[6:12]]
    second += [{"pair_id": m["pair_id"], "label": "b", "annotator": "x"} for m in ms[15:]]
    return first, write_rows(tmp_path, "second.jsonl", second)


def copy_store(store, tmp_path, name: str):
    shutil.copytree(store.uri, tmp_path / name)
    return open_store(tmp_path / name)


def state(store, name: str = "u") -> dict:
    """What resolve writes: the visible members' orientation, pair_features' and pairs' labels,
    the manifest's flag and count."""
    manifest, mem = load_subset(store, name)
    pf = store.dataset("pair_features").to_table(columns=["pair_id", "label", "label_source"]).to_pylist()
    pairs = store.dataset("pairs").to_table(columns=["pair_id", "chosen_id", "label_source"]).to_pylist() \
        if store.has_table("pairs") else []
    return {
        "members": sorted((m["pair_id"], m["chosen_id"], m["label_source"]) for m in mem.to_pylist()),
        "features": sorted((r["pair_id"], r["label"], r["label_source"]) for r in pf),
        "pairs": sorted((r["pair_id"], r["chosen_id"], r["label_source"]) for r in pairs),
        "labelled": manifest.labelled,
        "annotated": manifest.counts.get("annotated"),
    }


def consistent(store, name: str = "u") -> None:
    """No duplicate key in any table (members: per run); the visible members are what the
    manifest counts; the manifest never says labelled before every member is oriented."""
    def most(table, cols):
        rows = store.dataset(table).to_table(columns=cols).to_pylist()
        return Counter(tuple(r[c] for c in cols) for r in rows).most_common(1)[0][1] if rows else 1

    assert most("labels", ["label_id"]) == 1
    assert most("pair_features", ["pair_id"]) == 1
    assert most("subset_members", ["subset", "run", "pair_id"]) == 1
    if store.has_table("pairs"):
        assert most("pairs", ["pair_id", "label_source"]) == 1
    manifest, mem = load_subset(store, name)
    ids = mem.column("pair_id").to_pylist()
    assert len(ids) == len(set(ids)) == manifest.counts["selected"]
    if manifest.labelled:
        assert all(m["chosen_id"] is not None for m in mem.to_pylist())
