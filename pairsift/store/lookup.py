"""Rows of a table by id, a batch at a time, for outputs that join texts onto millions of pairs.

An ``IN`` filter per batch rescans the table's id column for every batch, and joining whole
tables holds every text at once. :class:`RowsById` reads the id column once into sorted 64-bit
keys (:func:`~pairsift.store.ids.id_keys`) with their row offsets, 16 bytes per row, and serves
each batch with one ``take`` of the sorted offsets it needs: memory is the index plus one batch.

A 64-bit key can collide (~n²/2^65: about 1e-6 at 10M rows). Every row taken carries its id and
is compared with the id asked for; the rare mismatches are read again with an ``IN`` filter. An
id present twice resolves to its first row in scan order.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .ids import id_keys
from .sql import is_in


class RowsById:
    """Row offsets of a Lance dataset by a 32-hex-character id column (:mod:`pairsift.store.ids`)."""

    def __init__(self, ds, key: str, batch_rows: int = 1 << 17):
        self.ds, self.key = ds, key
        parts = [id_keys(b.column(0)) for b in ds.to_batches(columns=[key], batch_size=batch_rows)]
        keys = np.concatenate(parts) if parts else np.empty(0, np.uint64)
        # Stable: among equal keys the first row in scan order comes first (what searchsorted finds).
        self.offsets = np.argsort(keys, kind="stable")
        self.keys = keys[self.offsets]

    def __len__(self) -> int:
        return len(self.keys)

    def take(self, ids: pa.Array | pa.ChunkedArray, columns: list[str]) -> pa.Table:
        """`columns` of the row of each id, in the order of `ids` (repeats allowed); nulls where an
        id (or a null id) is not in the table."""
        if isinstance(ids, pa.ChunkedArray):
            ids = ids.combine_chunks()
        ids = ids.cast(pa.string())
        n = len(ids)
        slot = np.full(n, -1, dtype=np.int64)  # row offset per asked id, -1: not found
        valid = np.flatnonzero(ids.is_valid().to_numpy(zero_copy_only=False)) if ids.null_count else np.arange(n)
        if len(valid) and len(self.keys):
            keys = id_keys(ids.take(pa.array(valid)))
            pos = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
            hit = self.keys[pos] == keys
            slot[valid[hit]] = self.offsets[pos[hit]]
        uniq, inverse = np.unique(slot, return_inverse=True)
        found = uniq >= 0
        cols = [self.key] + [c for c in columns if c != self.key]
        rows = self.ds.take(uniq[found], columns=cols) if found.any() else None
        # Row i of the answer: rows[index[i]], or null where not found.
        index = np.cumsum(found) - 1
        picks = pa.array(index[inverse], mask=~found[inverse], type=pa.int64())
        if rows is None:
            out = pa.table({c: pa.nulls(n, self.ds.schema.field(c).type) for c in cols})
        else:
            out = rows.take(picks)
        wrong = pc.fill_null(pc.not_equal(out.column(self.key), ids), False)
        if pc.any(wrong).as_py():
            out = self._fix_collisions(out, ids, wrong, cols)
        return out.select(columns)

    def _fix_collisions(self, out: pa.Table, ids: pa.Array, wrong: pa.ChunkedArray, cols: list[str]) -> pa.Table:
        """Rows whose 64-bit key matched another id: read by id, first row in scan order."""
        bad = np.flatnonzero(wrong.to_numpy(zero_copy_only=False))
        want = ids.take(pa.array(bad))
        found = self.ds.to_table(columns=cols, filter=is_in(self.key, pc.unique(want).to_pylist()))
        first = {}
        for i, v in enumerate(found.column(self.key).to_pylist()):
            first.setdefault(v, i)
        fix = pa.array([first.get(v) for v in want.to_pylist()], type=pa.int64())
        fixed = found.take(fix)
        # Splice the fixed rows in: gather from the concatenation of both tables.
        both = pa.concat_tables([out, fixed.cast(out.schema)])
        order = np.arange(len(out), dtype=np.int64)
        order[bad] = len(out) + np.arange(len(bad))
        return both.take(pa.array(order))
