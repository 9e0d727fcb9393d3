"""The ``labels`` table: create it, add labels idempotently, undo one, read them back.

Every write is one Lance commit keyed on ``label_id`` (a content hash of subset, pair, annotator
and round, :func:`label_id`): a retried submission or a re-imported file finds its row and adds
nothing. The key carries Lance's primary-key metadata (``store.schema.LABELS``), so two writers
inserting the same new key at once conflict and one retries; neither duplicates it. The table is
created with a create-only commit, so two processes racing to create it cannot replace each
other's first labels.

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
from ..store.schema import LABEL_CHOICES, LABELS
from ..store.sql import equals, is_in

TABLE = "labels"
CHOICES = LABEL_CHOICES
#: The choices that are a vote about the pair (skip is not).
VOTES = ("a", "b", "tie", "both_bad")


def label_id(subset: str, pair_id: str, annotator: str, round: int) -> str:
    return content_id("label", subset, pair_id, annotator, str(int(round)))


def now() -> datetime:
    return datetime.now(timezone.utc)


def ensure_table(store: Store) -> None:
    """Create the empty ``labels`` table unless it exists (safe when several processes race)."""
    create_if_missing(store, TABLE, LABELS)


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


# The writes call pylance directly: one call into Rust that releases the GIL throughout. (LanceDB's
# synchronous API runs each call through a Python event loop in a background thread; in the
# label server, whose event loop keeps the GIL busy, that made a 10 ms commit take 100+ ms.)


def insert_new(store: Store, rows: pa.Table) -> int:
    """Insert the rows whose label_id is not in the table yet; one commit. Returns the version."""
    ds = open_labels(store)
    ds.merge_insert("label_id").when_not_matched_insert_all().execute(_unique(rows))
    return ds.version


def upsert(store: Store, rows: pa.Table) -> int:
    """Insert new label_ids and overwrite existing ones with these values; one commit."""
    ds = open_labels(store)
    ds.merge_insert("label_id").when_matched_update_all().when_not_matched_insert_all().execute(_unique(rows))
    return ds.version


def mark_undone(store: Store, rows: pa.Table) -> int:
    """Set ``undone_at`` on these (existing) labels; one commit. Rows are full label rows."""
    ds = open_labels(store)
    ds.merge_insert("label_id").when_matched_update_all().execute(_unique(rows))
    return ds.version


def _unique(rows: pa.Table) -> pa.Table:
    # Two source rows with one key make a merge-insert undefined (Lance may insert both): keep
    # the last of each label_id.
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


def create_if_missing(store: Store, name: str, schema: pa.Schema) -> None:
    """Create an empty table with a create-only commit (racing creators cannot replace it)."""
    if store.has_table(name):
        return
    try:
        # mode="create" commits version 1 with put-if-not-exists: of several racing creators
        # exactly one wins and the others fail here, instead of the last one replacing the table.
        lance.write_dataset(schema.empty_table(), store.table_uri(name), schema=schema, mode="create",
                            storage_options=store.storage_options)
    except OSError as e:
        if "already exists" not in str(e):
            raise
