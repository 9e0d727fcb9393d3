"""Look at pairs in a similarity band (`pairsift query --band LO HI`).

Streams: the cosine column is scanned alone to find and order the matching rows, then each
batch of rows, with its prompt and response texts, is taken by row offset (:func:`iter_band`),
so `query --band -1 1 --limit 0` over millions of pairs holds one batch of texts at a time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from ..errors import SchemaError, TableNotFound, UsageError
from ..store import Store
from ..store.ids import id_keys
from ..store.lookup import RowsById
from ..store.schema import PAIR_FEATURES as TABLE
from ..store.schema import features_meta

PAIR_COLUMNS = ["pair_id", "prompt_id", "a_id", "b_id", "label", "label_source", "tie", "score_margin"]


def pair_features(store: Store):
    """The `pair_features` Lance dataset, or an error saying to run `pairsift pairs`."""
    try:
        return store.dataset(TABLE)
    except TableNotFound:
        raise TableNotFound(f"store {store.uri} has no table '{TABLE}': run `pairsift pairs` first") from None


def cosine_column(schema: pa.Schema, embedding: str | None) -> str:
    """`cos_<embedding>`; with no name, the table's only embedding set."""
    have = [f.name.removeprefix("cos_") for f in schema if f.name.startswith("cos_")]
    if embedding is None:
        if len(have) == 1:
            return f"cos_{have[0]}"
        if not have:
            raise SchemaError(
                f"table '{TABLE}' has no cosine column: run `pairsift embed`, then `pairsift pairs`"
            )
        raise UsageError(f"--embedding is needed: '{TABLE}' has cosines for {', '.join(have)}")
    if embedding not in have:
        raise SchemaError(
            f"table '{TABLE}' has no column 'cos_{embedding}' (has: {', '.join(have) or 'none'}): "
            f"run `pairsift embed --name {embedding}`, then `pairsift pairs`"
        )
    return f"cos_{embedding}"


#: Rows per output batch: what `query` holds (with texts) while it writes. A Lance `take` costs
#: about as much for 8k rows as for 32k (per-column overhead), hence not smaller.
BATCH_ROWS = 16384


def query_band(
    store: Store,
    lo: float,
    hi: float,
    embedding: str | None = None,
    limit: int | None = None,
    texts: bool = True,
) -> pa.Table:
    """Pairs whose cosine lies in [lo, hi], lowest cosine first (ties by pair_id), as one table.

    Columns: pair_id, prompt_id, a_id, b_id, label, label_source, tie, score_margin, cos_<emb>,
    and with `texts`: prompt, text_a, text_b. Null cosines never match. For large results use
    :func:`iter_band`, which yields the same rows in bounded batches.
    """
    batches = list(iter_band(store, lo, hi, embedding, limit, texts))
    return pa.concat_tables(batches)


def iter_band(
    store: Store,
    lo: float,
    hi: float,
    embedding: str | None = None,
    limit: int | None = None,
    texts: bool = True,
    batch_rows: int | None = None,
) -> Iterator[pa.Table]:
    """The rows of :func:`query_band` in order, `batch_rows` (default :data:`BATCH_ROWS`) at a time;
    at least one batch, maybe empty.

    Memory is bounded by the batch, plus 20 bytes per matching pair for the order (cosine,
    64-bit pair key, row offset) and, with `texts`, 16 bytes per prompt and response for the id
    indexes (:class:`~pairsift.store.lookup.RowsById`): the cosine column is scanned alone, the
    pair ids of the matching rows are read as 64-bit keys to break ties, and each batch's columns
    and texts are then taken by row offset.
    """
    if any(isinstance(x, float) and math.isnan(x) for x in (lo, hi)) or lo > hi:
        raise UsageError(f"--band LO HI: need LO <= HI, got {lo} {hi}")
    if limit is not None and limit < 0:
        raise UsageError(f"--limit must be >= 0, got {limit}")
    ds = pair_features(store)
    col = cosine_column(ds.schema, embedding)
    mode = features_meta(ds.schema).get("mode")
    meta = {b"pairsift.query": f"band {lo} {hi} on {col} ({mode} pairs)".encode()}
    offsets = band_order(ds, col, float(lo), float(hi))
    if limit is not None:
        offsets = offsets[:limit]
    columns = PAIR_COLUMNS + [col]
    prompts = responses = None
    if texts and len(offsets):
        prompts = RowsById(store.dataset("prompts"), "prompt_id")
        responses = RowsById(store.dataset("responses"), "response_id")
    batch_rows = batch_rows or BATCH_ROWS
    for start in range(0, max(len(offsets), 1), batch_rows):
        tbl = _take(ds, offsets[start : start + batch_rows], columns)
        if texts:
            tbl = _with_texts(tbl, prompts, responses)
        yield tbl.replace_schema_metadata(meta)


def band_order(ds, col: str, lo: float, hi: float, batch_rows: int = 1 << 18) -> np.ndarray:
    """Row offsets of the rows with `col` in [lo, hi], ordered by (`col`, pair_id).

    The pair ids are compared as 64-bit keys (they sort like the ids); the rare runs of rows
    whose cosine and key are both equal are ordered by their full ids (stable: a pair id present
    twice keeps scan order, as a stable sort of the ids would).
    """
    offsets, values, base = [], [], 0
    for batch in ds.to_batches(columns=[col], batch_size=batch_rows):
        v = batch.column(0).to_numpy(zero_copy_only=False)  # nulls -> NaN, which never match
        hit = np.flatnonzero((v >= lo) & (v <= hi))
        offsets.append(hit + base)
        values.append(v[hit])
        base += batch.num_rows
    offsets = np.concatenate(offsets) if offsets else np.empty(0, np.int64)
    values = np.concatenate(values) if values else np.empty(0, np.float32)
    keys = np.empty(len(offsets), np.uint64)
    for s in range(0, len(offsets), batch_rows):
        keys[s : s + batch_rows] = id_keys(ds.take(offsets[s : s + batch_rows], columns=["pair_id"]).column(0))
    order = np.lexsort((keys, values))
    offsets, values, keys = offsets[order], values[order], keys[order]
    same = np.flatnonzero((values[1:] == values[:-1]) & (keys[1:] == keys[:-1]))
    if len(same):
        # Runs of equal (cosine, key): order each by the full pair id.
        starts = same[np.r_[True, np.diff(same) > 1]]
        ends = same[np.r_[np.diff(same) > 1, True]] + 2
        for a, b in zip(starts, ends):
            ids = ds.take(offsets[a:b], columns=["pair_id"]).column(0).to_pylist()
            offsets[a:b] = offsets[a:b][sorted(range(b - a), key=ids.__getitem__)]
    return offsets


def _take(ds, offsets: np.ndarray, columns: list[str]) -> pa.Table:
    """Rows at `offsets`, in that order (each distinct row read once, in file order)."""
    if not len(offsets):
        return ds.schema.empty_table().select(columns)
    uniq, inverse = np.unique(offsets, return_inverse=True)
    return ds.take(uniq, columns=columns).take(pa.array(inverse.astype(np.int64)))


def _with_texts(tbl: pa.Table, prompts: RowsById | None, responses: RowsById | None) -> pa.Table:
    if prompts is None:  # no rows
        return tbl.append_column("prompt", pa.array([], pa.string())).append_column(
            "text_a", pa.array([], pa.string())).append_column("text_b", pa.array([], pa.string()))
    n = tbl.num_rows
    resp = responses.take(pa.concat_arrays([tbl.column("a_id").combine_chunks(),
                                            tbl.column("b_id").combine_chunks()]), ["text"]).column("text")
    prompt = prompts.take(tbl.column("prompt_id"), ["text"]).column("text")
    return (tbl.append_column("prompt", prompt).append_column("text_a", resp.slice(0, n))
            .append_column("text_b", resp.slice(n, n)))
