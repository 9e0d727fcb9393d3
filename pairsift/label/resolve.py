"""`pairsift label resolve`: one orientation per pair from its annotators' labels (majority).

For each pair of the subset, the votes are the labels that count (:func:`.table.effective`) with
choice a, b, tie or both bad, one per annotator (the latest, whichever subset it was given in:
a pair's label does not depend on the subset it was shown in); skips are not votes. The pair
is **oriented** when one of a / b has strictly more votes than every other choice and at least
`min_votes` votes were cast. Otherwise it is counted and left unoriented: ``tie`` (tie has the
most votes), ``both_bad``, ``no_majority`` (the top count is shared), ``unlabelled`` (fewer than
`min_votes` votes).

The result is written where later commands read it, in this order (so every prefix a crash can
leave is consistent, and running resolve again completes it: it is a pure function of the
labels), each write one of the store's safe commits (:mod:`.commits`):

1. ``pairs``: one row per oriented pair with ``label_source = "annotator"`` (key pair_id +
   label_source), so a later `pairsift pairs` run sees the label (annotator > dataset > score).
   A pair whose majority changed has its annotator row rewritten in place (an update, never a
   second row); pairs oriented for the first time are added by the store's keyed
   compare-and-swap append (two resolves, or a resolve and an ingest, at once store each key
   once); rows of pairs no longer oriented are deleted. Up to three commits, in that order.
2. ``pair_features``: the orientation columns (label, label_source, orientable) of the existing
   rows, updated in place (never an Overwrite, which would drop a concurrent append); a pair
   whose annotator label went away falls back to the dataset's label, else its scores.
3. the subset: its members with chosen_id / rejected_id / label_source (what `train` reads) and
   its manifest's ``labelled`` flag and counts, in ONE visible step
   (:func:`pairsift.store.subsets.update_subset`): the members are written as a new run and the
   manifest revision naming it is a compare-and-swap, so only the run the manifest names is
   ever touched (an orphan run a crashed job left is not), the manifest never says labelled
   before its members are, and a subset another job replaced meanwhile is never written over:
   resolve then starts again on the new subset.

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
from ..store.commit import backoff
from ..store.schema import PAIRS, table_key
from ..store.sql import equals, is_in
from ..store.subsets import SubsetManifest, read_manifest, update_subset
from . import hooks
from .commits import append_keyed, delete_where, update_matched
from .table import VOTES, effective, read

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


#: How often resolve starts over when another job replaced the subset while it ran.
RESTARTS = 5


def resolve(store: Store, subset: str, *, min_votes: int = 1) -> ResolveReport:
    """Orient the pairs of `subset` by majority of their annotator labels (see the module doc)."""
    if min_votes < 1:
        raise UsageError(f"--min-votes must be >= 1, got {min_votes}")
    for attempt in range(RESTARTS):
        try:
            return _resolve(store, subset, min_votes)
        except _SubsetChanged:
            backoff(attempt)
    raise UsageError(f"subset '{subset}' kept changing while `label resolve` ran ({RESTARTS} tries); run it again")


class _SubsetChanged(Exception):
    """Another job saved a new revision of the subset between our read and our commit."""


def _resolve(store: Store, subset: str, min_votes: int) -> ResolveReport:
    from ..select.subsets import load_subset

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
    _write_subset(store, manifest, members, want, fallback, report)
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
    version = 0  # the version `current` was read at (0: no table yet)
    if store.has_table("pairs"):
        ds = store.dataset("pairs")
        version = ds.version
        flt = pc.field("pair_id").isin(pa.array(t["pair_id"].to_list())) & (pc.field("label_source") == ANNOTATOR)
        current = {r["pair_id"]: r for r in ds.to_table(filter=flt).to_pylist()}
    new = [r for r in rows if r["pair_id"] not in current]
    changed = [r for r in rows if r["pair_id"] in current and {k: current[r["pair_id"]].get(k) for k in r} != r]
    stale = sorted(set(current) - {r["pair_id"] for r in rows})
    if not (new or changed or stale):
        return
    # A changed majority rewrites the pair's one annotator row (an update cannot add a row) ...
    if changed:
        report.versions["pairs"] = update_matched(store, "pairs", list(table_key("pairs")),
                                                  pa.Table.from_pylist(changed, schema=PAIRS))
    if stale:
        delete_where(store, "pairs", f"{equals('label_source', ANNOTATOR)} AND {is_in('pair_id', stale)}")
        report.versions["pairs"] = store.dataset("pairs").version
    # ... and first orientations are a keyed append checked against the version read: a row
    # another resolve (or ingest) committed since is dropped, never stored twice.
    if new:
        v = append_keyed(store, "pairs", PAIRS, pa.Table.from_pylist(new, schema=PAIRS), table_key("pairs"),
                         version=version)
        if v is not None:
            report.versions["pairs"] = v
    report.written["pairs"] = len(new) + len(changed) + len(stale)
    hooks.committed("label-resolve:pairs")


def _write_features(store: Store, pair_ids: list[str], want: dict[str, int], report: ResolveReport) -> dict:
    """Update pair_features' orientation of these pairs; return the fallback orientation of the
    pairs whose annotator label went away (also used for the subset's members)."""
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
    report.versions["pair_features"] = update_matched(store, "pair_features", "pair_id",
                                                      pa.Table.from_pylist(updates, schema=part))
    report.written["pair_features"] = len(updates)
    hooks.committed("label-resolve:pair_features")
    return fallback


def _write_subset(store: Store, manifest: SubsetManifest, members: pa.Table, want: dict[str, int], fallback: dict,
                  report: ResolveReport) -> None:
    """The members' orientation and the manifest's labelled flag and counts, in one visible step."""
    chosen, rejected, sources = [], [], []
    changed = oriented_after = 0
    for r in members.select(["pair_id", "a_id", "b_id", "chosen_id", "rejected_id", "label_source"]).to_pylist():
        c, j, s = _orientation(r, want, fallback)
        changed += (c, j, s) != (r["chosen_id"], r["rejected_id"], r["label_source"])
        oriented_after += c is not None
        chosen.append(c)
        rejected.append(j)
        sources.append(s)
    report.labelled = oriented_after == members.num_rows
    counts = dict(manifest.counts)
    counts["annotated"] = report.oriented
    counts["resolved"] = {k: v for k, v in report.outcomes.items() if k not in ("a", "b")}
    if not changed and manifest.labelled == report.labelled and manifest.counts == counts:
        return
    new_members = None
    if changed:
        new_members = members
        for name, values in (("chosen_id", chosen), ("rejected_id", rejected), ("label_source", sources)):
            i = new_members.schema.get_field_index(name)
            new_members = new_members.set_column(i, name, pa.array(values, new_members.schema.field(i).type))
    try:
        update_subset(store, manifest, new_members, labelled=report.labelled, counts=counts)
    except UsageError:
        # Refused because another job saved a new revision since `manifest` was read (a select
        # --replace, another resolve or import): start over on what is there now.
        if _revision(store, manifest.name) != (manifest.run, manifest.revision):
            raise _SubsetChanged() from None
        raise
    if changed:
        report.written["subset_members"] = changed
        report.versions["subset_members"] = store.dataset("subset_members").version
    report.written["subsets"] = 1
    report.versions["subsets"] = store.dataset("subsets").version
    hooks.committed("label-resolve:subset")


def _orientation(r: dict, want: dict[str, int], fallback: dict) -> tuple[str | None, str | None, str | None]:
    """(chosen_id, rejected_id, label_source) of member `r` after resolving."""
    pid = r["pair_id"]
    if pid in want:
        label, source = want[pid], ANNOTATOR
    elif r["label_source"] == ANNOTATOR:  # its annotator label went away
        label, source = fallback.get(pid, (None, None))
    else:  # oriented by the data (or not at all): resolve leaves it
        return r["chosen_id"], r["rejected_id"], r["label_source"]
    if label is None:
        return None, None, None
    a, b = r["a_id"], r["b_id"]
    return (a, b, source) if label == 1 else (b, a, source)


def _revision(store: Store, name: str) -> tuple[str | None, int] | None:
    try:
        m = read_manifest(store, name)
    except KeyError:  # deleted meanwhile
        return None
    return m.run, m.revision
