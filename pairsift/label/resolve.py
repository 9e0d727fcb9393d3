"""`pairsift label resolve`: one orientation per pair from its annotators' labels (majority).

For each pair of the subset, the votes are the labels that count (:func:`.table.effective`) with
choice a, b, tie or both bad, one per annotator (the latest, whichever subset it was given in:
a pair's label does not depend on the subset it was shown in); skips are not votes. The pair
is **oriented** when one of a / b has strictly more votes than every other choice and at least
`min_votes` votes were cast. Otherwise it is counted and left unoriented: ``tie`` (tie has the
most votes), ``both_bad``, ``no_majority`` (the top count is shared), ``unlabelled`` (fewer than
`min_votes` votes).

The result is written where later commands read it, each table at most one commit, in this
order (so every prefix a crash can leave is consistent, and running resolve again completes it;
it is a pure function of the labels):

1. ``pairs``: one row per oriented pair with ``label_source = "annotator"`` (key pair_id +
   label_source; rows of pairs no longer oriented are deleted in the same commit), so a later
   `pairsift pairs` run sees the label (annotator > dataset > score).
2. ``pair_features``: the orientation columns (label, label_source, orientable) of the existing
   rows, updated in place by a merge on pair_id (never an Overwrite, which would drop a
   concurrent append); a pair whose annotator label went away falls back to the dataset's label,
   else its scores.
3. ``subset_members``: chosen_id / rejected_id / label_source of this subset's members (what
   `train` reads).
4. ``subsets``: the manifest's ``labelled`` flag and its counts, last.

A table whose rows already say what resolve would write gets no commit: a second run commits
nothing.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import UsageError
from ..store import Store
from ..store.schema import PAIRS, SUBSET_MEMBERS
from ..store.sql import equals, is_in
from . import hooks
from .table import VOTES, create_if_missing, effective, read

ANNOTATOR = "annotator"
OUTCOMES = ("a", "b", "tie", "both_bad", "no_majority", "unlabelled")


@dataclass
class ResolveReport:
    subset: str
    pairs: int = 0
    oriented: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)  # a, b, tie, both_bad, no_majority, unlabelled
    votes: int = 0
    annotators: int = 0
    labelled: bool = False  # every member oriented (by annotators or, before, by the data)
    written: dict[str, int] = field(default_factory=dict)  # rows written per table
    versions: dict[str, int] = field(default_factory=dict)  # table versions committed

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        o = self.outcomes
        state = "fully labelled" if self.labelled else "not fully labelled"
        written = ", ".join(f"{t} {n:,}" for t, n in self.written.items()) or "nothing (already up to date)"
        return (
            f"'{self.subset}': {self.oriented:,} of {self.pairs:,} pairs oriented by majority of "
            f"{self.votes:,} votes from {self.annotators} annotator(s) (a {o.get('a', 0):,}, b {o.get('b', 0):,}); "
            f"excluded: tie {o.get('tie', 0):,}, both bad {o.get('both_bad', 0):,}, no majority "
            f"{o.get('no_majority', 0):,}, unlabelled {o.get('unlabelled', 0):,}; subset {state}\n"
            f"  rows written: {written}"
        )


def tally(votes: pl.DataFrame, pair_ids: list[str], min_votes: int = 1) -> pl.DataFrame:
    """Per pair: vote counts (n_a, n_b, n_tie, n_both_bad) and the outcome (see module doc)."""
    base = pl.DataFrame({"pair_id": pair_ids}, schema={"pair_id": pl.String})
    counts = votes.group_by("pair_id").agg(
        *[(pl.col("choice") == c).sum().cast(pl.Int64).alias(f"n_{c}") for c in VOTES]
    )
    df = base.join(counts, on="pair_id", how="left").fill_null(0)
    m = df.select([f"n_{c}" for c in VOTES]).to_numpy().astype(np.int64) if df.height else np.zeros((0, 4), np.int64)
    total = m.sum(axis=1)
    top = m.max(axis=1) if len(m) else np.zeros(0, np.int64)
    winners = (m == top[:, None]).sum(axis=1) if len(m) else np.zeros(0, np.int64)
    arg = m.argmax(axis=1) if len(m) else np.zeros(0, np.int64)
    outcome = np.array(VOTES, dtype=object)[arg] if len(m) else np.zeros(0, dtype=object)
    outcome = np.where(winners > 1, "no_majority", outcome)
    outcome = np.where((total < max(min_votes, 1)), "unlabelled", outcome)
    return df.with_columns(pl.Series("votes", total), pl.Series("outcome", outcome.astype(str), dtype=pl.String))


def _pooled_votes(store: Store, pair_ids: list[str]) -> pl.DataFrame:
    """One vote per (pair, annotator): the latest label that counts, in any subset."""
    eff = effective(read(store, pair_ids=pair_ids))
    return (
        eff.filter(pl.col("choice").is_in(VOTES))
        .sort("created_at")
        .unique(["pair_id", "annotator"], keep="last", maintain_order=True)
    )


def _fallback(store: Store, pf: pl.DataFrame) -> dict[str, tuple[int | None, str | None]]:
    """The orientation a pair had before annotators: the dataset's label (both ways:
    "conflict"), else different finite scores. pf: pair_id, a_id, b_id, score_a, score_b."""
    out: dict[str, tuple[int | None, str | None]] = {}
    if pf.height == 0:
        return out
    dataset: dict[str, list] = {}
    if store.has_table("pairs"):
        flt = pc.field("pair_id").isin(pa.array(pf["pair_id"].to_list())) & (pc.field("label_source") != ANNOTATOR)
        for r in store.dataset("pairs").to_table(columns=["pair_id", "chosen_id", "label_source"], filter=flt).to_pylist():
            dataset.setdefault(r["pair_id"], []).append(r)
    for r in pf.iter_rows(named=True):
        rows = dataset.get(r["pair_id"])
        if rows:
            labels = {1 if x["chosen_id"] == r["a_id"] else -1 for x in rows}
            out[r["pair_id"]] = (None, "conflict") if len(labels) > 1 else (labels.pop(), rows[0]["label_source"])
            continue
        sa, sb = r["score_a"], r["score_b"]
        if sa is not None and sb is not None and math.isfinite(sa) and math.isfinite(sb) and sa != sb:
            out[r["pair_id"]] = (1 if sa > sb else -1, "score")
        else:
            out[r["pair_id"]] = (None, None)
    return out


def resolve(store: Store, subset: str, *, min_votes: int = 1) -> ResolveReport:
    """Orient the pairs of `subset` by majority of their annotator labels (see the module doc)."""
    from ..select.subsets import load_subset

    if min_votes < 1:
        raise UsageError(f"--min-votes must be >= 1, got {min_votes}")
    manifest, members = load_subset(store, subset)
    mem = pl.from_arrow(members.select(["pair_id", "prompt_id", "a_id", "b_id", "chosen_id", "rejected_id", "label_source"]))
    pair_ids = mem["pair_id"].to_list()
    votes = _pooled_votes(store, pair_ids)
    t = tally(votes, pair_ids, min_votes).join(mem, on="pair_id", how="left")
    report = ResolveReport(subset, pairs=mem.height, votes=votes.height, annotators=votes["annotator"].n_unique())
    report.outcomes = {o: int((t["outcome"] == o).sum()) for o in OUTCOMES}
    oriented = t.filter(pl.col("outcome").is_in(["a", "b"]))
    report.oriented = oriented.height
    want = {r["pair_id"]: (1 if r["outcome"] == "a" else -1) for r in oriented.iter_rows(named=True)}

    _write_pairs(store, t, oriented, report)
    fallback = _write_features(store, pair_ids, want, report)
    _write_members(store, subset, mem, want, fallback, report)
    _write_manifest(store, subset, manifest, report)
    return report


def _write_pairs(store: Store, t: pl.DataFrame, oriented: pl.DataFrame, report: ResolveReport) -> None:
    rows = [
        {
            "pair_id": r["pair_id"], "prompt_id": r["prompt_id"],
            "chosen_id": r["a_id"] if r["outcome"] == "a" else r["b_id"],
            "rejected_id": r["b_id"] if r["outcome"] == "a" else r["a_id"],
            "label_source": ANNOTATOR,
            "meta": json.dumps({"votes": {c: int(r[f"n_{c}"]) for c in VOTES}}, sort_keys=True),
        }
        for r in oriented.iter_rows(named=True)
    ]
    current: dict[str, dict] = {}
    if store.has_table("pairs"):
        flt = pc.field("pair_id").isin(pa.array(t["pair_id"].to_list())) & (pc.field("label_source") == ANNOTATOR)
        current = {r["pair_id"]: r for r in store.dataset("pairs").to_table(filter=flt).to_pylist()}
    changed = [r for r in rows if {k: current.get(r["pair_id"], {}).get(k) for k in r} != r]
    stale = sorted(set(current) - {r["pair_id"] for r in rows})
    if not changed and not stale:
        return
    create_if_missing(store, "pairs", PAIRS)
    merge = store.db.open_table("pairs").merge_insert(["pair_id", "label_source"])
    merge = merge.when_matched_update_all().when_not_matched_insert_all()
    if stale:
        merge = merge.when_not_matched_by_source_delete(f"label_source = '{ANNOTATOR}' AND {is_in('pair_id', stale)}")
    result = merge.execute(pa.Table.from_pylist(changed, schema=PAIRS))
    report.written["pairs"] = len(changed) + len(stale)
    report.versions["pairs"] = result.version
    hooks.committed("label-resolve:pairs")


def _write_features(store: Store, pair_ids: list[str], want: dict[str, int], report: ResolveReport) -> dict:
    """Update pair_features' orientation of these pairs; return the fallback orientation of the
    pairs whose annotator label went away (also used for subset_members)."""
    if not store.has_table("pair_features") or not pair_ids:
        return {}
    cols = ["pair_id", "a_id", "b_id", "score_a", "score_b", "label", "label_source", "orientable"]
    pf = pl.from_arrow(store.dataset("pair_features").to_table(
        columns=cols, filter=pc.field("pair_id").isin(pa.array(pair_ids))))
    fallback = _fallback(store, pf.filter(pl.col("label_source") == ANNOTATOR, ~pl.col("pair_id").is_in(list(want))))
    updates = []
    for r in pf.iter_rows(named=True):
        if r["pair_id"] in want:
            label, source = want[r["pair_id"]], ANNOTATOR
        elif r["pair_id"] in fallback:
            label, source = fallback[r["pair_id"]]
        else:
            continue
        if (r["label"], r["label_source"]) != (label, source):
            updates.append({"pair_id": r["pair_id"], "label": label, "label_source": source,
                            "orientable": label is not None})
    if not updates:
        return fallback
    schema = store.dataset("pair_features").schema
    part = pa.schema([schema.field(c) for c in ("pair_id", "label", "label_source", "orientable")])
    result = store.db.open_table("pair_features").merge_insert("pair_id").when_matched_update_all().execute(
        pa.Table.from_pylist(updates, schema=part)
    )
    report.written["pair_features"] = len(updates)
    report.versions["pair_features"] = result.version
    hooks.committed("label-resolve:pair_features")
    return fallback


def _write_members(store: Store, subset: str, mem: pl.DataFrame, want: dict[str, int], fallback: dict,
                   report: ResolveReport) -> None:
    updates = []
    oriented_after = 0
    for r in mem.iter_rows(named=True):
        pid = r["pair_id"]
        if pid in want:
            label, source = want[pid], ANNOTATOR
        elif r["label_source"] == ANNOTATOR:  # its annotator label went away
            label, source = fallback.get(pid, (None, None))
        else:
            oriented_after += r["chosen_id"] is not None
            continue
        chosen = None if label is None else (r["a_id"] if label == 1 else r["b_id"])
        rejected = None if label is None else (r["b_id"] if label == 1 else r["a_id"])
        oriented_after += chosen is not None
        if (r["chosen_id"], r["rejected_id"], r["label_source"]) != (chosen, rejected, source if chosen else None):
            updates.append({"subset": subset, "pair_id": pid, "chosen_id": chosen, "rejected_id": rejected,
                            "label_source": source if chosen else None})
    report.labelled = oriented_after == mem.height
    if not updates:
        return
    part = pa.schema([SUBSET_MEMBERS.field(c) for c in ("subset", "pair_id", "chosen_id", "rejected_id", "label_source")])
    result = store.db.open_table("subset_members").merge_insert(["subset", "pair_id"]).when_matched_update_all().execute(
        pa.Table.from_pylist(updates, schema=part)
    )
    report.written["subset_members"] = len(updates)
    report.versions["subset_members"] = result.version
    hooks.committed("label-resolve:subset_members")


def _write_manifest(store: Store, subset: str, manifest: dict, report: ResolveReport) -> None:
    counts = dict(manifest["counts"])
    counts["annotated"] = report.oriented
    counts["resolved"] = {k: v for k, v in report.outcomes.items() if k not in ("a", "b")}
    if manifest["labelled"] == report.labelled and manifest["counts"] == counts:
        return
    table = store.db.open_table("subsets")
    table.update(where=equals("name", subset),
                 values={"labelled": report.labelled, "counts": json.dumps(counts, sort_keys=True)})
    report.written["subsets"] = 1
    report.versions["subsets"] = table.version
    hooks.committed("label-resolve:subsets")
