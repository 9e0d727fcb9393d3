"""Subset manifests and members: the one reader and the one writer of `subsets`/`subset_members`.

A saved subset is a manifest row in ``subsets`` and its member rows in ``subset_members``. Both
are written so that a subset appears whole or not at all, whatever crashes or runs at the same
time (docs/ARCHITECTURE.md, "Writes"):

1. every write is a *run* with a fresh id; the versions it read are tagged
   ``subset-<name>.<run>`` (so cleanup keeps them, and two runs never fight over one tag);
2. the members are appended under that run: invisible, since readers only read the run a
   manifest names;
3. the manifest is appended as revision r + 1 of the name, by a compare-and-swap on the
   ``subsets`` table: it lands only if no other revision of any subset landed since it looked,
   so two runs of one name cannot both win, and ``--replace`` swaps old for new in one commit;
4. what the new revision replaced (old members, old tag, old manifest rows) is removed.

A crash between steps leaves an orphan run (members, tags) that no manifest names: invisible,
and collected by ``pairsift optimize``. Manifests written before runs existed (run null) still
read back: their members are the rows with a null run.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pyarrow as pa

from ..errors import StoreError, SubsetNotFound, TableNotFound, UsageError
from ..report import plural
from .commit import (
    MAX_ATTEMPTS,
    backoff,
    committed,
    create_table,
    try_append,
    write_error,
)
from .schema import SUBSET_MEMBERS, SUBSETS
from .sql import equals
from .store import Store

#: Manifest columns stored as JSON text.
JSON_FIELDS = ("params", "store_versions", "counts")
MANIFESTS, MEMBERS = "subsets", "subset_members"


@dataclass(frozen=True)
class SubsetManifest:
    """What a `pairsift select` (or a later relabelling) recorded about a subset."""

    name: str
    strategy: str
    params: dict[str, Any]
    seed: int | None
    store_versions: dict[str, int]
    tag: str
    counts: dict[str, Any]
    labelled: bool
    created_at: datetime
    run: str | None = None  # None: written before runs existed
    revision: int = 0
    extra: dict = field(default_factory=dict, repr=False, compare=False)
    notes: list[str] = field(default_factory=list, compare=False)  # hints shown with the summary (not stored)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("extra")
        d["notes"] = list(self.notes)
        d["created_at"] = self.created_at.isoformat()
        return d

    def __getitem__(self, key: str):
        """Mapping-style access, for callers written against the old dict manifests."""
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def with_changes(self, **changes) -> SubsetManifest:
        return replace(self, **changes)

    def summary(self) -> str:
        c = self.counts
        excluded = c.get("excluded", {})
        reasons = ", ".join(f"{k}: {v:,}" for k, v in sorted(excluded.items()) if v) or "none"
        state = "labelled" if self.labelled else "UNLABELLED (export it for annotation)"
        text = (
            f"subset '{self.name}' ({self.strategy}): {plural(c['selected'], 'pair')} from "
            f"{plural(c.get('prompts_selected', 0), 'prompt')}, {state}"
        )
        if "rows_read" in c:
            text += (
                f"\n  read {plural(c['rows_read'], 'pair')} of {plural(c.get('prompts_read', 0), 'prompt')}; "
                f"excluded: {reasons}"
            )
        return text + "".join(f"\n  hint: {n}" for n in self.notes)

    def row(self) -> dict:
        return {
            "name": self.name,
            "strategy": self.strategy,
            "params": json.dumps(self.params, sort_keys=True, default=str),
            "seed": self.seed,
            "store_versions": json.dumps(self.store_versions, sort_keys=True),
            "tag": self.tag,
            "counts": json.dumps(self.counts, sort_keys=True),
            "labelled": self.labelled,
            "created_at": self.created_at,
            "run": self.run,
            "revision": self.revision,
        }


def new_run() -> str:
    """A run id: UTC time first (orphans are collected by age), then randomness."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def run_time(run: str) -> datetime | None:
    try:
        return datetime.strptime(run[:15], "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)
    except (TypeError, ValueError):
        return None


def tag_for(name: str, run: str) -> str:
    return f"subset-{name}.{run}"


def _decode(row: dict) -> SubsetManifest:
    for key in JSON_FIELDS:
        row[key] = json.loads(row[key] or "{}")
    row["store_versions"] = {k: int(v) for k, v in row["store_versions"].items()}
    known = {f for f in SubsetManifest.__dataclass_fields__ if f not in ("extra", "notes")}
    extra = {k: v for k, v in row.items() if k not in known}
    args = {k: row.get(k) for k in known}
    args["revision"] = args["revision"] or 0
    return SubsetManifest(**args, extra=extra)


def _current(rows: list[dict]) -> dict[str, dict]:
    """The current revision of each name (legacy rows: the newest by creation time)."""
    out: dict[str, dict] = {}
    for r in rows:
        best = out.get(r["name"])
        key = (r.get("revision") or 0, r["created_at"])
        if best is None or key >= (best.get("revision") or 0, best["created_at"]):
            out[r["name"]] = r
    return out


def read_manifests(store: Store, name: str | None = None, *, version: int | None = None) -> list[SubsetManifest]:
    """Every subset's current manifest (or subset `name`'s), oldest first."""
    try:
        ds = store.dataset(MANIFESTS, version)
    except TableNotFound:
        return []
    rows = ds.to_table(filter=equals("name", name) if name is not None else None).to_pylist()
    current = [_decode(r) for r in _current(rows).values()]
    return sorted(current, key=lambda m: (m.created_at, m.name))


def read_manifest(store: Store, name: str) -> SubsetManifest:
    """Subset `name`'s manifest; the message lists the subsets there are when it is missing
    (TableNotFound, naming `pairsift select`, when the store has no subset at all)."""
    store.dataset(MANIFESTS)
    found = read_manifests(store, name)
    if not found:
        known = ", ".join(m.name for m in read_manifests(store)[:20]) or "none"
        raise SubsetNotFound(f"no subset named '{name}' (subsets: {known}); create it with `pairsift select`")
    return found[0]


def subset_exists(store: Store, name: str) -> bool:
    return bool(read_manifests(store, name))


def members_filter(manifest: SubsetManifest) -> str:
    run = equals("run", manifest.run) if manifest.run is not None else "run IS NULL"
    return f"{equals('subset', manifest.name)} AND {run}"


def read_members(store: Store, manifest: SubsetManifest, columns: list[str] | None = None) -> pa.Table:
    """The members of the run `manifest` names, in rank order."""
    import pyarrow.compute as pc

    try:
        ds = store.dataset(MEMBERS)
    except TableNotFound:
        return SUBSET_MEMBERS.empty_table().select(columns or SUBSET_MEMBERS.names)
    flt = members_filter(manifest) if "run" in ds.schema.names else equals("subset", manifest.name)
    want = list(columns or [c for c in SUBSET_MEMBERS.names if c in ds.schema.names])
    cols = want if "rank" in want else [*want, "rank"]
    table = ds.to_table(columns=cols, filter=flt)
    table = table.take(pc.sort_indices(table, [("rank", "ascending")]))
    return table.select(want)


# ---- writing --------------------------------------------------------------------------------------


def write_subset(store: Store, manifest: SubsetManifest, members: pa.Table, *, replace: bool = False) -> SubsetManifest:
    """Save `members` under a new run and make them visible with `manifest`, atomically.

    Raises UsageError when the subset exists and `replace` is false (also when another job saved
    the name while this one ran). Returns the manifest as committed (run, tag, revision set).
    """
    run = new_run()
    manifest = manifest.with_changes(run=run, tag=tag_for(manifest.name, run))
    store.tag(manifest.tag, manifest.store_versions)
    try:
        members = _with_run(members, manifest.name, run)
        with store.writer() as w:
            w.append(MEMBERS, members, SUBSET_MEMBERS)
        saved, old = _commit_manifest(store, manifest, replace=replace)
    except BaseException:
        _drop_run(store, manifest)
        raise
    if old is not None:
        _drop_run(store, old, keep_manifest_revision=saved.revision)
    return saved


def _with_run(members: pa.Table, name: str, run: str) -> pa.Table:
    n = members.num_rows
    cols = {f.name: members.column(f.name) if f.name in members.column_names else pa.nulls(n, f.type) for f in SUBSET_MEMBERS}
    cols["subset"] = pa.array([name] * n, pa.string())
    cols["run"] = pa.array([run] * n, pa.string())
    return pa.table([cols[f.name] for f in SUBSET_MEMBERS], schema=SUBSET_MEMBERS)


def _commit_manifest(
    store: Store, manifest: SubsetManifest, *, replace: bool, expect_run: str | None | bool = False
) -> tuple[SubsetManifest, SubsetManifest | None]:
    """Append the next revision of `manifest.name` by compare-and-swap; returns (saved, replaced).

    `expect_run` (when not False): the current manifest must still name that run, or the update
    is refused (someone replaced the subset meanwhile).
    """
    import lance

    uri, what = store.table_uri(MANIFESTS), f"table '{MANIFESTS}' in store {store.uri}"
    try:
        ds = store.dataset(MANIFESTS)
    except TableNotFound:
        create_table(uri, SUBSETS, store.storage_options, what)
        ds = store.dataset(MANIFESTS)
    if "run" not in ds.schema.names or "revision" not in ds.schema.names:
        from .writer import TableStage

        TableStage(store, MANIFESTS, SUBSETS, key=None)  # adds the columns an older pairsift lacked
    for attempt in range(MAX_ATTEMPTS):
        ds = store.dataset(MANIFESTS)
        found = read_manifests(store, manifest.name, version=ds.version)
        old = found[0] if found else None
        if expect_run is not False and (old is None or old.run != expect_run):
            raise UsageError(f"subset '{manifest.name}' was replaced or deleted by another job meanwhile; run again")
        if old is not None and not replace:
            raise UsageError(f"subset '{manifest.name}' already exists: choose another --name or pass --replace")
        saved = manifest.with_changes(revision=(old.revision if old else 0) + 1)
        row = pa.Table.from_pylist([saved.row()], schema=SUBSETS).select(ds.schema.names).cast(ds.schema)
        try:
            frags = lance.fragment.write_fragments(row, uri, schema=ds.schema, storage_options=store.storage_options)
        except (OSError, ValueError, RuntimeError) as e:
            raise write_error(what, e) from None
        if try_append(ds, frags, store.storage_options, what) is not None:
            return saved, old
        backoff(attempt)
    raise write_error(what, RuntimeError(f"still conflicting after {MAX_ATTEMPTS} attempts; retry later"))


def update_subset(
    store: Store, manifest: SubsetManifest, members: pa.Table | None = None, **changes
) -> SubsetManifest:
    """Replace a saved subset's members and/or manifest fields in one visible step.

    `manifest` is the manifest the caller read: if another job replaced the subset since, the
    update is refused. New `members` are written as a new run (the old run is removed after the
    swap); without `members`, the new revision keeps naming the same run. For `label import`.
    """
    new = manifest.with_changes(**changes)
    if members is None:
        saved, _ = _commit_manifest(store, new, replace=True, expect_run=manifest.run)
        _delete_old_revisions(store, saved)
        return saved
    run = new_run()
    new = new.with_changes(run=run, tag=tag_for(manifest.name, run))
    store.tag(new.tag, new.store_versions)
    try:
        with store.writer() as w:
            w.append(MEMBERS, _with_run(members, manifest.name, run), SUBSET_MEMBERS)
        saved, old = _commit_manifest(store, new, replace=True, expect_run=manifest.run)
    except BaseException:
        _drop_run(store, new)
        raise
    if old is not None:
        _drop_run(store, old, keep_manifest_revision=saved.revision)
    return saved


def delete_subset(store: Store, name: str) -> None:
    """Remove a subset: its manifest rows (one commit: it is gone), then its members and tags."""
    found = read_manifests(store, name)
    if not found:
        raise SubsetNotFound(f"no subset named '{name}' (see `pairsift subsets`)")
    _delete(store, MANIFESTS, equals("name", name))
    _drop_run(store, found[0])


def _delete_old_revisions(store: Store, saved: SubsetManifest) -> None:
    _delete(store, MANIFESTS, f"{equals('name', saved.name)} AND (revision IS NULL OR revision < {int(saved.revision)})")


def _drop_run(store: Store, manifest: SubsetManifest, keep_manifest_revision: int | None = None) -> None:
    """Remove what one run wrote: its members and its tag (and, after a replace, the manifest
    revisions before `keep_manifest_revision`). Each step is idempotent; optimize redoes them."""
    if keep_manifest_revision is not None:
        _delete_old_revisions(store, manifest.with_changes(revision=keep_manifest_revision))
    if store.has_table(MEMBERS):
        ds = store.dataset(MEMBERS)
        flt = members_filter(manifest) if "run" in ds.schema.names else equals("subset", manifest.name)
        _delete(store, MEMBERS, flt)
    store.untag(manifest.tag, manifest.store_versions)


def _delete(store: Store, table: str, where: str) -> None:
    """Delete rows matching `where` (a Lance Delete: safe beside concurrent appends)."""
    try:
        ds = store.dataset(table)
    except TableNotFound:
        return
    if ds.count_rows(where) == 0:
        return
    for attempt in range(MAX_ATTEMPTS):
        try:
            store.dataset(table).delete(where)
            committed(f"delete {table}")
            return
        except OSError as e:
            if "onflict" not in str(e):
                raise write_error(f"table '{table}' in store {store.uri}", e) from None
            backoff(attempt)


# ---- collecting what crashed runs left -----------------------------------------------------------


def collect_orphans(store: Store, grace: timedelta = timedelta(hours=1)) -> dict[str, int]:
    """Remove runs no manifest names (members, tags) and superseded manifest revisions.

    Only runs older than `grace` are touched: a younger one may belong to a `select` still
    between its members commit and its manifest commit.
    """
    out = {"manifest_revisions": 0, "member_runs": 0, "member_rows": 0, "tags": 0}
    if not store.has_table(MANIFESTS):
        return out
    rows = store.dataset(MANIFESTS).to_table().to_pylist()
    current = _current(rows)
    for name, cur in current.items():
        stale = [r for r in rows if r["name"] == name and (r.get("revision") or 0) < (cur.get("revision") or 0)]
        if stale:
            _delete_old_revisions(store, _decode(dict(cur)))
            out["manifest_revisions"] += len(stale)
    live = {(m["name"], m.get("run")) for m in current.values()}
    live_tags = {m["tag"] for m in current.values()}
    cutoff = datetime.now(timezone.utc) - grace
    if store.has_table(MEMBERS) and "run" in store.dataset(MEMBERS).schema.names:
        runs = (
            store.dataset(MEMBERS).to_table(columns=["subset", "run"]).group_by(["subset", "run"]).aggregate([([], "count_all")])
        ).to_pylist()
        for r in runs:
            if r["run"] is None or (r["subset"], r["run"]) in live:
                continue
            t = run_time(r["run"])
            if t is None or t > cutoff:
                continue
            _delete(store, MEMBERS, f"{equals('subset', r['subset'])} AND {equals('run', r['run'])}")
            out["member_runs"] += 1
            out["member_rows"] += r["count_all"]
    for table in store.table_names():
        try:
            tags = store.dataset(table).tags.list()
        except StoreError:  # a damaged table keeps its tags (info reports it)
            continue
        for tag in tags:
            if not tag.startswith("subset-") or tag in live_tags or "." not in tag:
                continue
            t = run_time(tag.rsplit(".", 1)[1])
            if t is not None and t <= cutoff:
                store.untag(tag, [table])
                out["tags"] += 1
    return out
