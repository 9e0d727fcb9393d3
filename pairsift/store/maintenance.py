"""`pairsift optimize`: compact fragments, drop what crashed jobs left, prune old versions.

Never touches a version a subset tagged (its texts and features stay readable by `export` and
`train`), nor, by default, a data file young enough to belong to a job still writing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import timedelta

from ..errors import TableNotFound
from .commit import MAX_ATTEMPTS, backoff, committed, short_error
from .store import Store
from .subsets import collect_orphans

#: Versions younger than this are kept (a reader may still be on one). Lance's own default.
KEEP_VERSIONS = timedelta(days=7)
#: A subset run no manifest names is collected once it is this old (a younger one may be a
#: `select` between its members commit and its manifest commit).
ORPHAN_RUNS_AFTER = timedelta(hours=1)


@dataclass
class OptimizeReport:
    tables: dict[str, dict] = field(default_factory=dict)
    subsets: dict[str, int] = field(default_factory=dict)
    orphan_tables_removed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # table -> why it was left alone

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        lines = []
        for name, t in self.tables.items():
            lines.append(
                f"{name:<24} fragments {t['fragments_before']:>5,} -> {t['fragments_after']:<5,} "
                f"versions removed {t['versions_removed']:>5,}   {t['bytes_removed'] / 1e6:,.1f} MB freed"
            )
        s = self.subsets
        if any(s.values()):
            lines.append(
                f"subsets: {s.get('member_runs', 0):,} orphan runs ({s.get('member_rows', 0):,} member rows), "
                f"{s.get('tags', 0):,} orphan tags, {s.get('manifest_revisions', 0):,} replaced manifest revisions removed"
            )
        for name in self.orphan_tables_removed:
            lines.append(f"removed {name}: data files of a first write that never committed")
        for name, why in self.skipped.items():
            lines.append(f"skipped {name}: {why}")
        return "\n".join(lines) or "(empty store: nothing to optimize)"


def optimize(
    store: Store,
    *,
    keep_versions: timedelta = KEEP_VERSIONS,
    remove_orphans_now: bool = False,
    orphan_runs_after: timedelta = ORPHAN_RUNS_AFTER,
) -> OptimizeReport:
    """Compact every table, remove crashed runs' leftovers, and delete old versions.

    Per table: small fragments are merged (Lance compaction: a commit that any concurrent
    writer's compare-and-swap notices and retries after), then versions older than
    `keep_versions` are deleted with the data files only they referenced, except versions a
    tag pins (every subset tags what it read). Data files no version references (an aborted
    write's) are deleted once Lance's own 7-day safety age has passed, or now with
    `remove_orphans_now` (only when no other job is writing to the store: a running job's
    uncommitted files look exactly like that). Subset runs no manifest names, their tags, and
    replaced manifest revisions are removed once older than `orphan_runs_after`.
    """
    report = OptimizeReport()
    report.subsets = collect_orphans(store, grace=orphan_runs_after)
    listed = store.db.list_tables().tables
    committed_tables = store.table_names()
    for name in committed_tables:
        try:
            report.tables[name] = _optimize_table(store, name, keep_versions, remove_orphans_now)
        except TableNotFound:
            continue
        except Exception as e:  # noqa: BLE001 - a damaged table must not stop the others
            report.skipped[name] = short_error(e)
    if remove_orphans_now:
        for name in sorted(set(listed) - set(committed_tables)):
            store.db.drop_table(name)
            report.orphan_tables_removed.append(name)
    return report


def _optimize_table(store: Store, name: str, keep: timedelta, orphans_now: bool) -> dict:
    ds = store.dataset(name)
    before = len(ds.get_fragments())
    for attempt in range(MAX_ATTEMPTS):
        try:
            metrics = store.dataset(name).optimize.compact_files()
            if metrics.fragments_removed:
                committed(f"compact {name}")
            break
        except OSError as e:
            if "onflict" not in str(e) or attempt == MAX_ATTEMPTS - 1:
                raise
            backoff(attempt)
    stats = store.dataset(name).cleanup_old_versions(
        older_than=keep, delete_unverified=orphans_now, error_if_tagged_old_versions=False
    )
    return {
        "fragments_before": before,
        "fragments_after": len(store.dataset(name).get_fragments()),
        "versions_removed": int(stats.old_versions),
        "bytes_removed": int(stats.bytes_removed),
    }
