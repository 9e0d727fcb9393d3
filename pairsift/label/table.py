"""The ``labels`` table: create it, add labels idempotently, change one, read them back.

Labels are keyed on ``label_id`` (a content hash of subset, pair, annotator and round,
:func:`label_id`), and written the store's way (:mod:`.commits`): new labels by a keyed
compare-and-swap append (a retried submission or a re-imported file finds its row and adds
nothing, also when two processes add it at once); an undo or a corrected import by an
update-only merge-insert of the rows that exist. The table is created empty by the store's
create-or-fail commit, so processes racing to create it never replace each other's first
labels.

A label *counts* unless it was undone; of an annotator's rows for one pair in one subset, the
one with the highest round counts (:func:`effective`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone

import lance
import polars as pl
import pyarrow as pa

from ..store import Store
from ..store.ids import content_id
from ..store.schema import LABEL_CHOICES, LABELS, table_key
from ..store.sql import equals, is_in
from .commits import append_keyed, update_matched

TABLE = "labels"
KEY = table_key(TABLE)
CHOICES = LABEL_CHOICES
#: The choices that are a vote about the pair (skip is not).
VOTES = ("a", "b", "tie", "both_bad")


def label_id(subset: str, pair_id: str, annotator: str, round: int) -> str:
    return content_id("label", subset, pair_id, annotator, str(int(round)))


def now() -> datetime:
    return datetime.now(timezone.utc)


def ensure_table(store: Store) -> None:
    """Create the empty ``labels`` table unless it exists (safe when several processes race:
    the store's create-or-fail commit never replaces a table another process created)."""
    from ..store.commit import create_table

    create_table(store.table_uri(TABLE), LABELS, store.storage_options, f"table '{TABLE}' in store {store.uri}")


def rows_table(rows: Iterable[dict]) -> pa.Table:
    """Label rows (dicts with the LABELS columns; missing optional ones are null) as Arrow."""
    rows = list(rows)
    return pa.Table.from_pylist(rows, schema=LABELS)


def open_labels(store: Store) -> lance.LanceDataset:
    """The labels table at its latest version (created if needed)."""
    uri = store.table_uri(TABLE)
    try:  # straight to the dataset: listing the store's tables on every commit costs more
        return lance.dataset(uri, storage_options=store.storage_options)
    except ValueError:  # lance: "Dataset at path ... was not found"
        ensure_table(store)
        return lance.dataset(uri, storage_options=store.storage_options)


def insert_new(store: Store, rows: pa.Table) -> int | None:
    """Add the rows whose label_id is not in the table yet: one keyed compare-and-swap commit
    (repeated ids in `rows` count once). Returns the version committed; None when every row was
    there already (nothing committed). A missing table is created first, never replaced."""
    return append_keyed(store, TABLE, LABELS, rows, KEY)


def update_existing(store: Store, rows: pa.Table) -> int | None:
    """Overwrite existing labels (same label_id) with these rows: an undo (``undone_at`` set) or a
    corrected import. Never adds a row; one commit. Returns the version committed (None: no rows)."""
    return update_matched(store, TABLE, "label_id", _unique(rows))


def _unique(rows: pa.Table) -> pa.Table:
    # Two source rows with one key make a merge-insert ambiguous: keep the last of each label_id.
    if rows.num_rows < 2:
        return rows
    last = {key: i for i, key in enumerate(rows.column("label_id").to_pylist())}
    if len(last) == rows.num_rows:
        return rows
    return rows.take(sorted(last.values()))


def read(store: Store, subset: str | None = None, pair_ids: Iterable[str] | None = None) -> pl.DataFrame:
    """Every label row (undone ones included) of `subset` and/or of `pair_ids`."""
    if not store.has_table(TABLE):
        return pl.from_arrow(LABELS.empty_table())
    filters = []
    if subset is not None:
        filters.append(equals("subset", subset))
    if pair_ids is not None:
        filters.append(is_in("pair_id", sorted(set(pair_ids))))
    flt = " AND ".join(f"({f})" for f in filters) or None
    table = store.dataset(TABLE).to_table(filter=flt)
    return pl.from_arrow(table.cast(LABELS) if table.schema != LABELS else table)


def effective(labels: pl.DataFrame) -> pl.DataFrame:
    """The labels that count: not undone, and per (subset, pair, annotator) the highest round."""
    return (
        labels.filter(pl.col("undone_at").is_null())
        .sort("round", "created_at")
        .unique(["subset", "pair_id", "annotator"], keep="last", maintain_order=True)
    )


_SPELLINGS = {
    "a": "a", "b": "b", "tie": "tie", "skip": "skip",
    "both_bad": "both_bad", "both bad": "both_bad", "both-bad": "both_bad", "bothbad": "both_bad",
}


def parse_choice(value: object) -> str | None:
    """A choice from its usual spellings (``A``, ``b``, ``Tie``, ``both bad``, ``both-bad``,
    ``skip``); None when `value` is none of them."""
    if not isinstance(value, str):
        return None
    return _SPELLINGS.get(" ".join(value.strip().lower().split()))
