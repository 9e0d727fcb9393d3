"""The per-block maths of `pairsift pairs`: read a block's inputs, build its pairs, compute features.

Prompts arrive in blocks of whole prompts (see :func:`pairsift.features.pairs.build_pairs`). For a
block, vectors and token ids are read from Lance by row offset (a contiguous run of rows is one
range scan, else a sorted take), cosines are one batched matmul per group size K
(``[P, K, d] @ [P, d, K]``, upper triangle kept; a view, not a copy, when the prompts' rows are
one run), edit distances are rapidfuzz's C++ ``cpdist`` over all the block's pairs with token
ids as code points, and gaps are NumPy gathers. No Python runs per pair except the BLAKE2b pair
id (a C hash, ~0.7 µs each).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from ..store import Store
from ..store.ids import sorted_pair_ids
from ..store.schema import FeatureSets
from .dcrm import dcrm


def with_dcrm(tbl: pa.Table, sets: FeatureSets) -> pa.Table:
    """Append the stored DCRM columns, computed from the table's own component columns."""

    def values(name: str) -> np.ndarray:
        col = tbl.column(name)
        return pc.fill_null(col.cast(pa.float64()), float("nan")).to_numpy()

    for name, (margin, lp, ablation) in sets.derived().items():
        e = values(f"edit_{lp}") if lp else None
        p = values(f"dlogp_sum_{lp}") if lp else None
        v = dcrm(values(margin), e, p, ablation)
        tbl = tbl.append_column(pa.field(name, pa.float64()), pa.array(v, mask=np.isnan(v)))
    return tbl


@dataclass
class Inputs:
    """Per-response columns aligned with `resp` rows, and the datasets to take big columns from."""

    resp: pl.DataFrame  # response_id, prompt_id, source, score, blank, off_<table>, small values
    datasets: dict  # table -> lance dataset pinned at the version read
    sets: FeatureSets


def _offsets(ds, key: str) -> pl.DataFrame:
    """`key` -> row offset in the dataset's scan order (what `ds.take` indexes)."""
    col = ds.to_table(columns=[key]).column(0)
    return pl.DataFrame({key: col, "__off": np.arange(len(col), dtype=np.int64)}).unique(key, keep="first")


def read_inputs(store: Store, resp: pl.DataFrame, sets: FeatureSets, versions: dict[str, int]) -> Inputs:
    datasets = {}
    for e in sets.embeddings:
        t = f"embeddings_{e}"
        ds = datasets[t] = store.dataset(t, versions[t])
        off = _offsets(ds, "id").rename({"id": "response_id", "__off": f"off_{t}"})
        resp = resp.join(off, on="response_id", how="left")
    for lp in sets.logprobs:
        t = f"logprobs_{lp}"
        ds = datasets[t] = store.dataset(t, versions[t])
        cols = ds.to_table(columns=["response_id", "logp_sum", "logp_mean"])
        small = pl.from_arrow(cols).with_columns(pl.arange(0, cols.num_rows, dtype=pl.Int64).alias(f"off_{t}"))
        small = small.unique("response_id", keep="first").rename(
            {"logp_sum": f"logp_sum_{lp}", "logp_mean": f"logp_mean_{lp}"}
        )
        resp = resp.join(small, on="response_id", how="left")
    for rm in sets.rewards:
        t = f"rewards_{rm}"
        ds = datasets[t] = store.dataset(t, versions[t])
        small = pl.from_arrow(ds.to_table(columns=["response_id", "reward"])).unique("response_id", keep="first")
        resp = resp.join(small.rename({"reward": f"reward_{rm}"}), on="response_id", how="left")
    return Inputs(resp, datasets, sets)


def _contiguous(offsets: np.ndarray) -> bool:
    """All present and a permutation of one range of rows (prompts read in storage order)."""
    if len(offsets) == 0 or offsets.min() < 0:
        return False
    lo, hi = int(offsets.min()), int(offsets.max())
    return hi - lo + 1 == len(offsets) and len(np.unique(offsets)) == len(offsets)


def _read_rows(ds, offsets: np.ndarray, column: str) -> Iterator[tuple[pa.Array, np.ndarray]]:
    """`column` at row offsets (-1: missing) as chunks with the positions (in `offsets`) they fill.

    A contiguous run of rows (the usual case: prompts processed in storage order) is one range
    scan, which Lance decodes much faster than a random-access take.
    """
    n = len(offsets)
    if _contiguous(offsets):
        lo = int(offsets.min())
        pos = np.empty(n, dtype=np.int64)
        pos[offsets - lo] = np.arange(n)
        start = 0
        for chunk in ds.to_table(columns=[column], offset=lo, limit=n).column(0).chunks:
            yield chunk, pos[start : start + len(chunk)]
            start += len(chunk)
        return
    have = np.flatnonzero(offsets >= 0)
    if len(have) == 0:
        return
    uniq, inv = np.unique(offsets[have], return_inverse=True)
    arr = ds.take(uniq, columns=[column]).column(0).combine_chunks()
    yield arr.take(pa.array(inv)), have


def _vectors(ds, offsets: np.ndarray, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectors [n, d] float32 in the order of `offsets` (row offsets, -1: missing), norms, validity.

    `out`: a reusable buffer of at least [n, d] (fresh pages are costly at GBs per run). Null,
    missing, non-finite and zero vectors are invalid (their cosines are null). Cosines are divided
    by both norms, so a cosine is a cosine even if a writer stored unnormalised vectors.
    """
    n = len(offsets)
    dim = ds.schema.field("vector").type.list_size
    vecs = out[:n] if out is not None and len(out) >= n else np.empty((n, dim), dtype=np.float32)
    ok = np.zeros(n, dtype=bool)
    for chunk, dest in _read_rows(ds, offsets, "vector"):
        x = chunk.values.slice(chunk.offset * dim, len(chunk) * dim).to_numpy(zero_copy_only=False)
        x = np.asarray(x, dtype=np.float32).reshape(len(chunk), dim)
        if len(dest) and dest[-1] - dest[0] == len(dest) - 1 and np.all(np.diff(dest) == 1):
            vecs[dest[0] : dest[0] + len(dest)] = x
        else:
            vecs[dest] = x
        ok[dest] = np.asarray(chunk.is_valid())
    if not ok.all():
        vecs[~ok] = 0.0
    norms = np.sqrt(np.einsum("nd,nd->n", vecs, vecs))
    ok &= np.isfinite(norms) & (norms > 0)
    return vecs, np.where(ok, norms, 1.0).astype(np.float32), ok


def _token_strings(ds, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token-id sequences as str (one code point per token, what rapidfuzz compares fastest).

    Returns (object array of str, lengths, validity) in the order of `offsets`. Ids outside the
    code-point range are remapped through a bijection of the block's ids, which leaves
    Levenshtein distances unchanged.
    """
    n = len(offsets)
    strs = np.full(n, "", dtype=object)
    lens = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    chunks = list(_read_rows(ds, offsets, "token_ids"))
    if not chunks:
        return strs, lens, ok
    arr = pa.chunked_array([c for c, _ in chunks]).combine_chunks()
    dest = np.concatenate([d for _, d in chunks])
    offs = np.asarray(arr.offsets)
    values = arr.values.slice(offs[0], offs[-1] - offs[0]).to_numpy(zero_copy_only=False).astype(np.int64)
    offs = offs - offs[0]
    if len(values) and (values.min() < 0 or values.max() >= 0x110000):
        _, values = np.unique(values, return_inverse=True)
    text = values.astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")
    su = np.empty(len(arr), dtype=object)
    su[:] = [text[s:e] for s, e in zip(offs[:-1].tolist(), offs[1:].tolist())]
    valid = np.asarray(arr.is_valid())
    strs[dest] = su
    ok[dest] = valid
    lens[dest] = np.where(valid, np.diff(offs), 0)
    return strs, lens, ok


def _all_pairs(starts: np.ndarray, ks: np.ndarray) -> tuple[np.ndarray, np.ndarray, list]:
    """Row indices (A, B) of every unordered pair within each prompt, grouped by K.

    Returns A, B and, per K, (slice of the output, the prompts' start rows) for grouped maths.
    """
    parts_a, parts_b, groups, pos = [], [], [], 0
    for k in np.unique(ks):
        if k < 2:
            continue
        s = starts[ks == k]
        iu, ju = np.triu_indices(int(k), 1)
        parts_a.append((s[:, None] + iu[None, :]).ravel())
        parts_b.append((s[:, None] + ju[None, :]).ravel())
        n = len(s) * len(iu)
        groups.append((int(k), slice(pos, pos + n), s))
        pos += n
    if not parts_a:
        return np.empty(0, np.int64), np.empty(0, np.int64), []
    return np.concatenate(parts_a), np.concatenate(parts_b), groups


def _dot_grouped(vecs: np.ndarray, groups: list, n_pairs: int) -> np.ndarray:
    """Dot product of every pair via one [P, K, d] @ [P, d, K] matmul per group size K."""
    out = np.empty(n_pairs, dtype=np.float32)
    for k, sl, starts in groups:
        iu, ju = np.triu_indices(k, 1)
        step = max(1, 65_536 // k)  # bound the [P, K, d] gather to ~200 MB at d=768
        chunks = []
        contiguous = len(starts) > 0 and np.all(np.diff(starts) == k)
        for c in range(0, len(starts), step):
            if contiguous:  # the prompts' rows are one run: a [P, K, d] view, no copy
                lo = starts[c]
                v3 = vecs[lo : lo + k * len(starts[c : c + step])].reshape(-1, k, vecs.shape[1])
            else:
                v3 = vecs[starts[c : c + step, None] + np.arange(k)[None, :]]
            g = np.matmul(v3, v3.transpose(0, 2, 1))
            chunks.append(g[:, iu, ju].ravel())
        out[sl] = np.concatenate(chunks)
    return out


def _dot_rowwise(vecs: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.empty(len(a), dtype=np.float32)
    step = 65_536
    for c in range(0, len(a), step):
        out[c : c + step] = np.einsum("nd,nd->n", vecs[a[c : c + step]], vecs[b[c : c + step]])
    return out


def _edit(strs: np.ndarray, lens: np.ndarray, ok: np.ndarray, a: np.ndarray, b: np.ndarray):
    from rapidfuzz.distance import Levenshtein
    from rapidfuzz.process import cpdist

    both = ok[a] & ok[b]
    dist = np.zeros(len(a), dtype=np.int32)
    if both.any():
        aa, bb = a[both], b[both]
        dist[both] = cpdist(list(strs[aa]), list(strs[bb]), scorer=Levenshtein.distance, dtype=np.int32, workers=-1)
    longest = np.maximum(lens[a], lens[b])
    norm = np.where(longest > 0, dist / np.maximum(longest, 1), 0.0).astype(np.float32)
    return pa.array(dist, mask=~both), pa.array(norm, mask=~both)


def _gap(values: np.ndarray, valid: np.ndarray, a: np.ndarray, b: np.ndarray) -> pa.Array:
    both = valid[a] & valid[b]
    return pa.array(np.where(both, values[a] - values[b], 0.0), mask=~both)


def _np(col: pl.Series, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Values with nulls and NaN as invalid."""
    arr = col.cast(pl.Float64).fill_null(np.nan).to_numpy().astype(dtype, copy=False)
    return arr, np.isfinite(arr)


def block_table(
    inputs: Inputs,
    rows: pl.DataFrame,
    labels: pl.DataFrame,
    schema: pa.Schema,
    labelled_only: bool,
    fetched: dict | None = None,
) -> pa.Table:
    """Features of the block's pairs. `rows`: responses of whole prompts, sorted by (prompt, id)."""
    sets = inputs.sets
    rid = rows["response_id"].to_numpy().astype(object)
    pid_codes = rows["prompt_id"].rle_id().to_numpy()
    n = rows.height
    change = np.flatnonzero(np.r_[True, pid_codes[1:] != pid_codes[:-1]])
    ks = np.diff(np.r_[change, n])
    groups: list = []
    if labelled_only:
        # The dataset's labelled pairs among these responses, as row indices.
        index = pl.DataFrame({"response_id": rows["response_id"], "__row": np.arange(n, dtype=np.int64)})
        lab = (
            labels.select("a_id", "b_id")
            .join(index.rename({"response_id": "a_id", "__row": "A"}), on="a_id")
            .join(index.rename({"response_id": "b_id", "__row": "B"}), on="b_id")
            .sort("A", "B")
        )
        a, b = lab["A"].to_numpy(), lab["B"].to_numpy()
    else:
        a, b, groups = _all_pairs(change, ks)
    order = np.lexsort((b, a))
    a, b = a[order], b[order]
    m = len(a)

    cols: dict[str, pa.Array] = {}
    a_ids, b_ids = rid[a], rid[b]
    cols["pair_id"] = pa.array(sorted_pair_ids(a_ids, b_ids), pa.string())
    cols["prompt_id"] = rows["prompt_id"].to_arrow().take(pa.array(a))
    cols["a_id"] = pa.array(a_ids, pa.string())
    cols["b_id"] = pa.array(b_ids, pa.string())
    src = rows["source"].to_arrow()
    cols["source_a"], cols["source_b"] = src.take(pa.array(a)), src.take(pa.array(b))
    score, has_score = _np(rows["score"])
    sa, sb = score[a], score[b]
    ha, hb = has_score[a], has_score[b]
    raw_score = rows["score"].to_arrow()  # copied as stored; NaN is kept but never orients
    cols["score_a"], cols["score_b"] = raw_score.take(pa.array(a)), raw_score.take(pa.array(b))
    blank = rows["blank"].fill_null(False).to_numpy()
    cols["blank_a"], cols["blank_b"] = pa.array(blank[a]), pa.array(blank[b])

    # Orientation: the dataset's label when the pair has one, else the scores when they differ.
    both = ha & hb
    tie = both & (sa == sb)
    label = np.where(both & ~tie, np.where(sa > sb, 1, -1), 0).astype(np.int8)
    lsrc = np.where(label != 0, "score", None).astype(object)
    if labels.height:
        got = pl.DataFrame({"a_id": cols["a_id"], "b_id": cols["b_id"], "__i": np.arange(m)}).join(
            labels, on=["a_id", "b_id"], how="inner"
        )
        if got.height:
            i = got["__i"].to_numpy()
            label[i] = got["label"].fill_null(0).to_numpy()
            lsrc[i] = got["label_source"].to_numpy().astype(object)
    cols["label"] = pa.array(label, mask=label == 0)
    cols["label_source"] = pa.array(lsrc, pa.string())
    cols["orientable"] = pa.array(label != 0)
    cols["tie"] = pa.array(tie)
    cols["score_margin"] = pa.array(np.where(both, sa - sb, 0.0), mask=~both)

    grouped = None if labelled_only else (groups, order)
    cols.update(features(inputs, rows, sets, a, b, grouped, fetched))
    base = [f for f in schema if not f.name.startswith("dcrm_")]
    return with_dcrm(pa.table([cols[f.name] for f in base], schema=pa.schema(base)), sets).cast(schema)


def fetch(inputs: Inputs, rows: pl.DataFrame, sets: FeatureSets, buffers: dict | None = None) -> dict:
    """The block's big inputs (vectors, token ids) read from Lance; runs ahead in a thread."""
    out = {}
    for e in sets.embeddings:
        t = f"embeddings_{e}"
        off = rows[f"off_{t}"].fill_null(-1).to_numpy()
        buf = None
        if buffers is not None:
            dim = inputs.datasets[t].schema.field("vector").type.list_size
            buf = buffers.get(t)
            if buf is None or len(buf) < len(off):
                buf = buffers[t] = np.empty((max(len(off), 1), dim), dtype=np.float32)
        out[t] = _vectors(inputs.datasets[t], off, buf)
    for lp in sets.logprobs:
        t = f"logprobs_{lp}"
        out[t] = _token_strings(inputs.datasets[t], rows[f"off_{t}"].fill_null(-1).to_numpy())
    return out


def features(
    inputs: Inputs, rows: pl.DataFrame, sets: FeatureSets, a: np.ndarray, b: np.ndarray,
    grouped=None, fetched: dict | None = None,
) -> dict:
    """Feature columns of pairs (rows[a], rows[b]). `grouped`: (K groups, permutation) to compute
    cosines as grouped matmuls over whole prompts instead of row-wise dots."""
    fetched = fetched if fetched is not None else fetch(inputs, rows, sets)
    cols: dict[str, pa.Array] = {}
    for e in sets.embeddings:
        vecs, norms, ok = fetched[f"embeddings_{e}"]
        if grouped is None:
            dot = _dot_rowwise(vecs, a, b)
        else:
            groups, perm = grouped
            dot = _dot_grouped(vecs, groups, len(a))[perm]
        good = ok[a] & ok[b]
        cos = np.where(good, dot / (norms[a] * norms[b]), 0.0).astype(np.float32)
        cols[f"cos_{e}"] = pa.array(cos, mask=~good)
    for lp in sets.logprobs:
        strs, lens, ok = fetched[f"logprobs_{lp}"]
        cols[f"edit_{lp}"], cols[f"edit_norm_{lp}"] = _edit(strs, lens, ok, a, b)
        for kind in ("sum", "mean"):
            v, valid = _np(rows[f"logp_{kind}_{lp}"])
            cols[f"dlogp_{kind}_{lp}"] = _gap(v, valid, a, b)
    for rm in sets.rewards:
        v, valid = _np(rows[f"reward_{rm}"])
        cols[f"dreward_{rm}"] = _gap(v, valid, a, b)
    return cols
