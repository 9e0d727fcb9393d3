"""Named output sets of computed values (`embeddings_<set>`, `logprobs_<name>`, `rewards_<name>`).

A set is one table whose schema metadata carries the provenance of every number in it. It is
created on the first run (never replaced: two runs creating it at once get one table); a later
run appends only the ids not yet present (resume), and only if its provenance is the same:
numbers from two models, dtypes or max lengths are never mixed in one set. Each chunk is one
keyed compare-and-swap commit (:class:`pairsift.store.TableStage`), so two runs of one set at
the same time store each id once.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa

from ..errors import UsageError
from ..store import TableStage
from ..store.schema import provenance as read_provenance

_NAME = re.compile(r"^[a-z0-9_]+$")

#: Provenance keys that describe how a value was obtained but do not change it.
INFORMATIONAL = {"source", "pairsift_version", "attn_implementation", "pad_token_set", "device"}


def check_name(name: str, option: str = "--name") -> str:
    if not _NAME.match(name or ""):
        raise UsageError(f"{option} {name!r}: set names are lowercase letters, digits and '_'")
    return name


def check_provenance(table: str, old: dict, new: dict, option: str = "--name", keys=None) -> None:
    """Refuse `new` where it differs from the set's stored provenance `old` (on `keys`, default all)."""
    ignore = set(INFORMATIONAL)
    if old.get("fingerprint") and old.get("fingerprint") == new.get("fingerprint"):
        ignore.add("model")  # the same files named another way (relative path, symlink, hub id)
    keys = set(old) | set(new) if keys is None else set(keys)
    diff = sorted(k for k in keys if k not in ignore and old.get(k) != new.get(k))
    if diff:
        shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff)
        raise UsageError(
            f"table '{table}' was computed with a different setup ({shown}); values are never "
            f"mixed in one set: pass a new {option}, or drop the table to recompute it"
        )


def check_unchanged(store, table: str, expected: dict, option: str = "--name") -> dict:
    """The set's stored provenance, after checking the keys of `expected` (known before a model load)."""
    old = read_provenance(store.dataset(table).schema) or {}
    check_provenance(table, old, expected, option, keys=expected)
    return old


def check_setup(table: str, existing: pa.Schema, schema: pa.Schema, option: str = "--name") -> None:
    """Raise unless `existing` (the table's schema) holds values computed the way `schema` says."""
    check_provenance(table, read_provenance(existing) or {}, read_provenance(schema) or {}, option)
    if existing.remove_metadata() != schema.remove_metadata():
        raise UsageError(f"table '{table}' has another column layout; pass a new {option}")


class SetTable:
    """One run's writer into a set: :meth:`add` commits one chunk, keyed on the set's id column.

    Rows whose id is already in the set (or committed by a concurrent run before this chunk) are
    dropped; :meth:`add` returns how many rows it committed.
    """

    def __init__(self, store, table: str, schema: pa.Schema, option: str = "--name"):
        def check(found: pa.Schema) -> None:
            check_setup(table, found, schema, option)

        # Created empty if absent (never replacing one a concurrent run made), then checked.
        store.create_table(table, schema)
        check(store.dataset(table).schema)
        self.stage = TableStage(store, table, check=check)
        self.schema = self.stage.schema
        self.name = table

    def add(self, rows: pa.Table) -> int:
        self.stage.add(rows)
        before = self.stage.committed_rows
        self.stage.commit()
        return self.stage.committed_rows - before



def open_set(store, table: str, schema: pa.Schema, option: str = "--name") -> SetTable:
    """Create the set's table, or open it after checking that its provenance matches."""
    return SetTable(store, table, schema, option)


class Pending:
    """Input rows whose id is not yet in an output table, streamed in windows (bounded memory).

    Done ids are held as sorted 64-bit keys (8 bytes each, :func:`pairsift.store.ids.id_keys`);
    the input is read in Arrow batches of `window_rows` with only `columns`.
    """

    def __init__(self, store, source: str, columns: list[str], key: str, table: str, out_key: str,
                 window_rows: int = 65_536):
        from ..store.ids import id_keys

        self._id_keys = id_keys
        self.store, self.source, self.columns, self.key = store, source, columns, key
        self.window_rows = window_rows
        done = store.dataset(table).to_table(columns=[out_key]).column(out_key)
        self.done = np.sort(id_keys(done)) if len(done) else np.empty(0, np.uint64)
        self.already = len(self.done)
        self.total = 0
        for batch in store.dataset(source).to_batches(columns=[key], batch_size=1 << 20):
            self.total += int(self._fresh(batch.column(0)).sum())

    def _fresh(self, ids) -> np.ndarray:
        keys = self._id_keys(ids)
        if not len(self.done):
            return np.ones(len(keys), bool)
        pos = np.minimum(np.searchsorted(self.done, keys), len(self.done) - 1)
        return self.done[pos] != keys

    def __iter__(self):
        import polars as pl

        for batch in self.store.dataset(self.source).to_batches(columns=self.columns, batch_size=self.window_rows):
            fresh = self._fresh(batch.column(self.key))
            if fresh.any():
                yield pl.from_arrow(batch.filter(pa.array(fresh)))


def vectors(flat: np.ndarray, dim: int, null: np.ndarray | None = None) -> pa.Array:
    """A fixed_size_list<float32>[dim] array from [n, dim] floats, null where `null`."""
    flat = np.ascontiguousarray(flat, dtype=np.float32).reshape(-1)
    mask = pa.array(null) if null is not None and null.any() else None
    return pa.FixedSizeListArray.from_arrays(pa.array(flat), dim, mask=mask)


def version() -> str:
    try:
        from importlib.metadata import version as v

        return v("pairsift")
    except Exception:  # pragma: no cover
        return "unknown"
