"""How the label room commits: the store's two safe writes, and nothing else.

- **New keyed rows** (a label, an annotator row of ``pairs``) go through the store's keyed
  compare-and-swap writer (:class:`pairsift.store.writer.TableStage`): the commit lands only on
  top of the version whose keys were checked, so two processes adding one key store it once.
- **Rows that go away** (an annotator row whose pair lost its majority) are a Lance Delete,
  which is safe beside concurrent appends.
- **Changes to rows that exist** (an undo, a corrected import, a changed majority, the
  orientation columns of ``pair_features``) are an update-only Lance merge-insert
  (``when_matched_update_all`` and no insert clause): it can only rewrite rows already there, so
  it cannot add a key; two updates of one row conflict inside Lance and the loser re-runs its
  merge on the winner's version. A merge-insert WITH an insert clause is never used: without the
  ``lance-schema:unenforced-primary-key`` field metadata, concurrent ones duplicate keys
  (docs/ARCHITECTURE.md, "Writes", and ``benchmarks/bench_label_writes.py``).

Every commit calls :func:`pairsift.store.commit.committed` (the crash tests' hook).
"""

from __future__ import annotations

import pyarrow as pa

from ..store import Store
from ..store.commit import MAX_ATTEMPTS, backoff, committed, write_error


def append_keyed(
    store: Store,
    name: str,
    schema: pa.Schema,
    rows: pa.Table,
    key: tuple[str, ...],
    *,
    version: int | None = None,
) -> int | None:
    """Add the rows whose `key` is not in table `name` yet (created, never replaced, if missing).

    `version`: the caller already dropped the rows present at this version (0: it saw no table);
    only rows committed since by other writers are checked. None: every key of the table is
    checked. Returns the version committed, or None when nothing was new.
    """
    from ..store.writer import TableStage

    if rows.num_rows == 0:
        return None
    stage = TableStage(store, name, schema, key=key, check_existing=version is None, version=version)
    stage.add(rows)
    return stage.commit()


def _is_conflict(e: BaseException) -> bool:
    text = str(e).lower()
    return "conflict" in text or "preempted" in text


def update_matched(store: Store, name: str, on: str | list[str], rows: pa.Table) -> int | None:
    """Rewrite the rows of `name` whose `on` key matches one of `rows` with `rows`' values (the
    columns given; others kept). Never inserts. Returns the version committed (None: no rows)."""
    if rows.num_rows == 0:
        return None
    what = f"table '{name}' in store {store.uri}"
    for attempt in range(MAX_ATTEMPTS):
        ds = store.dataset(name)
        try:
            ds.merge_insert(on).when_matched_update_all().execute(rows)
        except OSError as e:
            if not _is_conflict(e):
                raise write_error(what, e) from None
            backoff(attempt)  # Lance retried a few times already; the table is busy
            continue
        except (ValueError, RuntimeError) as e:
            raise write_error(what, e) from None
        committed(f"update {name}")
        return ds.version
    raise write_error(what, RuntimeError(f"still conflicting after {MAX_ATTEMPTS} attempts; retry later"))


def delete_where(store: Store, name: str, where: str) -> None:
    """Delete the rows of `name` matching `where` (a Lance Delete: safe beside concurrent appends,
    retried when it loses a race)."""
    what = f"table '{name}' in store {store.uri}"
    for attempt in range(MAX_ATTEMPTS):
        try:
            store.dataset(name).delete(where)
        except OSError as e:
            if not _is_conflict(e):
                raise write_error(what, e) from None
            backoff(attempt)
            continue
        committed(f"delete {name}")
        return
    raise write_error(what, RuntimeError(f"still conflicting after {MAX_ATTEMPTS} attempts; retry later"))
