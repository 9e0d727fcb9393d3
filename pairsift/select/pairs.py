"""Candidate pairs and their features: the `pair_features` table (`pairsift pairs`).

One row per unordered pair of responses to the same prompt (all K(K-1)/2 of them, or only the
dataset's labelled pairs), keyed by ``pair_id``, with ``a_id < b_id``. Every gap is "a minus b";
orienting a pair as (chosen, rejected) flips the sign when ``label == -1``. See
docs/ARCHITECTURE.md for the column contract.

How it runs: the responses' small columns are read once (projection pushed into Lance) and
joined with the row offset of each response in every input set (embeddings, log-probs,
rewards). Prompts are then processed in blocks of ~``block_rows`` responses: each block takes
its vectors and token ids from Lance by offset (sorted, so reads are near-sequential), computes
cosines as one batched matmul per group size K (``[P, K, d] @ [P, d, K]``, upper triangle kept),
edit distances with rapidfuzz's C++ ``cpdist`` over all the block's pairs, and gaps as NumPy
gathers. No Python runs per pair except the BLAKE2b pair id (a C hash, ~0.7 µs each).

Incremental: a re-run computes only prompts that have no row yet (anti-join on ``prompt_id``),
appended in one commit. A feature set that appears later (a new embedding set, log-prob or
reward name) is added to the existing rows first, as new columns in one ``add_columns`` commit.
``rebuild=True`` recomputes everything and replaces the table in one Overwrite commit. An
interrupted run leaves the table as it was.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from hashlib import blake2b

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import SchemaError, TableNotFound, UsageError
from ..store import Store
from ..store.schema import provenance as read_provenance
from ..store.schema import with_version

TABLE = "pair_features"
META_KEY = b"pairsift.features"

# Hex ids barely compress and Lance's default string compression triples the write time.
_RAW = {"lance-encoding:compression": "none"}

FIXED = [
    pa.field("pair_id", pa.string(), nullable=False, metadata=_RAW),
    pa.field("prompt_id", pa.string(), nullable=False, metadata=_RAW),
    pa.field("a_id", pa.string(), nullable=False, metadata=_RAW),
    pa.field("b_id", pa.string(), nullable=False, metadata=_RAW),
    pa.field("source_a", pa.string()),
    pa.field("source_b", pa.string()),
    pa.field("score_a", pa.float64()),
    pa.field("score_b", pa.float64()),
    pa.field("blank_a", pa.bool_(), nullable=False),
    pa.field("blank_b", pa.bool_(), nullable=False),
    pa.field("label", pa.int8()),
    pa.field("label_source", pa.string()),
    pa.field("orientable", pa.bool_(), nullable=False),
    pa.field("tie", pa.bool_(), nullable=False),
    pa.field("score_margin", pa.float64()),
]


@dataclass(frozen=True)
class FeatureSets:
    """Names of the input sets: ``embeddings_<e>``, ``logprobs_<lp>``, ``rewards_<rm>``."""

    embeddings: tuple[str, ...] = ()
    logprobs: tuple[str, ...] = ()
    rewards: tuple[str, ...] = ()

    def tables(self) -> list[str]:
        return (
            [f"embeddings_{e}" for e in self.embeddings]
            + [f"logprobs_{lp}" for lp in self.logprobs]
            + [f"rewards_{rm}" for rm in self.rewards]
        )

    def fields(self) -> list[pa.Field]:
        out = [pa.field(f"cos_{e}", pa.float32()) for e in self.embeddings]
        for lp in self.logprobs:
            out += [
                pa.field(f"edit_{lp}", pa.int32()),
                pa.field(f"edit_norm_{lp}", pa.float32()),
                pa.field(f"dlogp_sum_{lp}", pa.float64()),
                pa.field(f"dlogp_mean_{lp}", pa.float64()),
            ]
        out += [pa.field(f"dreward_{rm}", pa.float64()) for rm in self.rewards]
        return out

    def margins(self) -> list[tuple[str, str]]:
        """(name, column) of each reward margin DCRM can use: the dataset score, then each reward set."""
        return [("score", "score_margin")] + [(rm, f"dreward_{rm}") for rm in self.rewards if rm != "score"]

    def derived(self) -> dict[str, tuple[str, str | None, str | None]]:
        """Stored DCRM columns (METHODS.md §2) -> (margin column, logprobs set, ablation).

        ``dcrm_<r>_<lp>`` full formula; ``dcrm_noedit_<r>_<lp>``, ``dcrm_nologp_<r>_<lp>`` ablations;
        ``dcrm_margin_<r>`` margin only. <r> is "score" (dataset score) or a reward set. Values are for
        the a-over-b orientation; the b-over-a DCRM is the negation (same denominator).
        """
        out: dict[str, tuple[str, str | None, str | None]] = {}
        for r, col in self.margins():
            for lp in self.logprobs:
                out[f"dcrm_{r}_{lp}"] = (col, lp, None)
                out[f"dcrm_noedit_{r}_{lp}"] = (col, lp, "no-edit")
                out[f"dcrm_nologp_{r}_{lp}"] = (col, lp, "no-logp")
            out[f"dcrm_margin_{r}"] = (col, None, "margin-only")
        return out

    def all_fields(self) -> list[pa.Field]:
        return self.fields() + [pa.field(name, pa.float64()) for name in self.derived()]

    def union(self, other: FeatureSets) -> FeatureSets:
        def merge(a, b):
            return tuple(a) + tuple(x for x in b if x not in a)

        return FeatureSets(
            merge(self.embeddings, other.embeddings),
            merge(self.logprobs, other.logprobs),
            merge(self.rewards, other.rewards),
        )

    def minus(self, other: FeatureSets) -> FeatureSets:
        return FeatureSets(
            tuple(x for x in self.embeddings if x not in other.embeddings),
            tuple(x for x in self.logprobs if x not in other.logprobs),
            tuple(x for x in self.rewards if x not in other.rewards),
        )

    def __bool__(self) -> bool:
        return bool(self.embeddings or self.logprobs or self.rewards)


@dataclass
class PairsReport:
    """What `build_pairs` did."""

    mode: str  # "all" or "labelled"
    prompts_added: int = 0
    prompts_present: int = 0
    prompts_single: int = 0  # new prompts with fewer than two responses: no pair
    pairs_added: int = 0
    pairs_total: int = 0
    columns_added: list[str] = field(default_factory=list)  # new feature columns on existing rows
    feature_sets: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)  # added pairs by label_source (+ "none"), ties
    rebuilt: bool = False
    version: int | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        sets = ", ".join(f"{k}: {', '.join(v) or '-'}" for k, v in self.feature_sets.items())
        lines = [
            f"pair_features ({self.mode} pairs): {self.pairs_added:,} pairs added for "
            f"{self.prompts_added:,} new prompts in {self.seconds:.1f} s; "
            f"{self.prompts_present:,} prompts already present; {self.pairs_total:,} pairs in total",
            f"feature sets: {sets}",
        ]
        if self.columns_added:
            lines.append(f"added to existing rows: {', '.join(self.columns_added)}")
        if self.prompts_single:
            lines.append(f"{self.prompts_single:,} new prompts have fewer than two responses (no pair)")
        if self.labels:
            lines.append("orientation of added pairs: " + ", ".join(f"{k} {v:,}" for k, v in self.labels.items()))
        return "\n".join(lines)


# ---- discovering inputs ----------------------------------------------------------------------


def available_sets(store: Store) -> FeatureSets:
    """Every response-level set in the store (prompt-embedding sets are skipped)."""
    emb, lps, rms = [], [], []
    for name in store.table_names():
        if name.startswith("embeddings_"):
            prov = read_provenance(store.dataset(name).schema) or {}
            if prov.get("target", "responses") == "responses":
                emb.append(name.removeprefix("embeddings_"))
        elif name.startswith("logprobs_"):
            lps.append(name.removeprefix("logprobs_"))
        elif name.startswith("rewards_"):
            rms.append(name.removeprefix("rewards_"))
    return FeatureSets(tuple(emb), tuple(lps), tuple(rms))


def _resolve(store: Store, embeddings, logprobs, rewards) -> FeatureSets:
    found = available_sets(store)
    chosen = []
    for kind, want, have, cmd in (
        ("embeddings", embeddings, found.embeddings, "pairsift embed"),
        ("logprobs", logprobs, found.logprobs, "pairsift score logprobs"),
        ("rewards", rewards, found.rewards, "pairsift score reward"),
    ):
        if want is None:
            chosen.append(tuple(have))
            continue
        for name in want:
            if name not in have:
                raise TableNotFound(
                    f"store {store.uri} has no response table '{kind}_{name}': run `{cmd}` first "
                    f"(available: {', '.join(have) or 'none'})"
                )
        chosen.append(tuple(want))
    return FeatureSets(*chosen)


def read_meta(schema: pa.Schema) -> dict:
    raw = (schema.metadata or {}).get(META_KEY)
    return json.loads(raw) if raw else {}


def _meta_sets(meta: dict) -> FeatureSets:
    s = meta.get("sets", {})
    return FeatureSets(tuple(s.get("embeddings", ())), tuple(s.get("logprobs", ())), tuple(s.get("rewards", ())))


def _with_dcrm(tbl: pa.Table, sets: FeatureSets) -> pa.Table:
    """Append the stored DCRM columns, computed from the table's own component columns."""
    from .features import dcrm

    def values(name: str) -> np.ndarray:
        col = tbl.column(name)
        return pc.fill_null(col.cast(pa.float64()), float("nan")).to_numpy()

    for name, (margin, lp, ablation) in sets.derived().items():
        e = values(f"edit_{lp}") if lp else None
        p = values(f"dlogp_sum_{lp}") if lp else None
        v = dcrm(values(margin), e, p, ablation)
        tbl = tbl.append_column(pa.field(name, pa.float64()), pa.array(v, mask=np.isnan(v)))
    return tbl


def _schema(sets: FeatureSets, meta: dict) -> pa.Schema:
    schema = pa.schema(FIXED + sets.all_fields())
    return with_version(schema).with_metadata(
        {**with_version(schema).metadata, META_KEY: json.dumps(meta, sort_keys=True).encode()}
    )


def _provenance(store: Store, sets: FeatureSets, versions: dict[str, int]) -> dict:
    """Per input table: its version read and the provenance it carries."""
    return {
        t: {"version": versions[t], "provenance": read_provenance(store.dataset(t, versions[t]).schema)}
        for t in sets.tables()
    }


# ---- reading inputs --------------------------------------------------------------------------


@dataclass
class _Inputs:
    """Per-response columns aligned with `resp` rows, and the datasets to take big columns from."""

    resp: pl.DataFrame  # response_id, prompt_id, source, score, blank, off_<table>, small values
    datasets: dict  # table -> lance dataset pinned at the version read
    sets: FeatureSets


def _offsets(ds, key: str) -> pl.DataFrame:
    """`key` -> row offset in the dataset's scan order (what `ds.take` indexes)."""
    col = ds.to_table(columns=[key]).column(0)
    return pl.DataFrame({key: col, "__off": np.arange(len(col), dtype=np.int64)}).unique(key, keep="first")


def _read_inputs(store: Store, resp: pl.DataFrame, sets: FeatureSets, versions: dict[str, int]) -> _Inputs:
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
    return _Inputs(resp, datasets, sets)


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


# ---- candidate pairs ---------------------------------------------------------------------------


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


def pair_ids(a_ids: np.ndarray, b_ids: np.ndarray) -> list[str]:
    """`pairsift.store.ids.pair_id` for arrays with a < b (same bytes, no per-call overhead)."""
    return [blake2b(f"{x}\x1f{y}".encode(), digest_size=16).hexdigest() for x, y in zip(a_ids, b_ids)]


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


# ---- one block ---------------------------------------------------------------------------------


def _block(
    inputs: _Inputs,
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
    cols["pair_id"] = pa.array(pair_ids(a_ids, b_ids), pa.string())
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
    cols.update(_features(inputs, rows, sets, a, b, grouped, fetched))
    base = [f for f in schema if not f.name.startswith("dcrm_")]
    return _with_dcrm(pa.table([cols[f.name] for f in base], schema=pa.schema(base)), sets).cast(schema)


def _blocks(resp: pl.DataFrame, block_rows: int, block_pairs: int) -> Iterator[pl.DataFrame]:
    """Whole prompts, ~block_rows responses or ~block_pairs pairs per block."""
    if resp.height == 0:
        return
    ks = resp.group_by("prompt_id", maintain_order=True).len()["len"].to_numpy().astype(np.int64)
    cost = np.maximum(ks / block_rows, ks * (ks - 1) / 2 / block_pairs)
    block = np.floor(np.cumsum(cost) - cost).astype(np.int64)  # a prompt starts in its block
    bounds = np.r_[0, np.cumsum(ks)]
    edges = np.flatnonzero(np.r_[True, block[1:] != block[:-1], True])
    for s, e in zip(edges[:-1], edges[1:]):
        yield resp.slice(int(bounds[s]), int(bounds[e] - bounds[s]))


# ---- labels --------------------------------------------------------------------------------------


def _labels(store: Store, version: int | None) -> pl.DataFrame:
    """The dataset's labelled pairs as (a_id, b_id, prompt_id, label, label_source), label = +1 if a chosen.

    A pair labelled both ways (two datasets disagree) gets a null label and label_source "conflict".
    """
    empty = pl.DataFrame(
        schema={"a_id": pl.String, "b_id": pl.String, "prompt_id": pl.String, "label": pl.Int8, "label_source": pl.String}
    )
    if version is None:
        return empty
    p = store.scan("pairs", version).select("prompt_id", "chosen_id", "rejected_id", "label_source").collect()
    if p.height == 0:
        return empty
    p = p.with_columns(
        pl.min_horizontal("chosen_id", "rejected_id").alias("a_id"),
        pl.max_horizontal("chosen_id", "rejected_id").alias("b_id"),
        pl.when(pl.col("chosen_id") < pl.col("rejected_id")).then(1).otherwise(-1).cast(pl.Int8).alias("label"),
    ).filter(pl.col("a_id") != pl.col("b_id"))
    return (
        p.group_by("a_id", "b_id", maintain_order=True)
        .agg(
            pl.col("prompt_id").first(),
            pl.col("label").first(),
            pl.col("label").n_unique().alias("__n"),
            pl.col("label_source").first(),
        )
        .with_columns(
            pl.when(pl.col("__n") > 1).then(None).otherwise(pl.col("label")).alias("label"),
            pl.when(pl.col("__n") > 1).then(pl.lit("conflict")).otherwise(pl.col("label_source")).alias("label_source"),
        )
        .drop("__n")
    )


# ---- the public entry point --------------------------------------------------------------------


def build_pairs(
    store: Store,
    *,
    labelled_only: bool = False,
    embeddings: list[str] | None = None,
    logprobs: list[str] | None = None,
    rewards: list[str] | None = None,
    rebuild: bool = False,
    block_rows: int = 131_072,
    block_pairs: int = 1_000_000,
    progress: Callable[[int, int], None] | None = None,
) -> PairsReport:
    """Materialise candidate pairs and their features into `pair_features`.

    `embeddings` / `logprobs` / `rewards`: set names to compute features from (None: every set in
    the store; [] : none). Sets already in the table are always kept up to date for new prompts.
    `labelled_only`: only the pairs of the `pairs` table. `progress(done_prompts, total_prompts)`.
    """
    t0 = time.perf_counter()
    mode = "labelled" if labelled_only else "all"
    report = PairsReport(mode=mode)
    store.table("responses")  # "run `pairsift ingest` first"
    requested = _resolve(store, embeddings, logprobs, rewards)

    exists = store.has_table(TABLE) and not rebuild
    old_meta: dict = {}
    old_sets = FeatureSets()
    if exists:
        ds_old = store.dataset(TABLE)
        old_meta = read_meta(ds_old.schema)
        if old_meta.get("mode", mode) != mode:
            raise UsageError(
                f"table '{TABLE}' holds {old_meta['mode']} pairs; run `pairsift pairs` "
                f"{'with' if old_meta['mode'] == 'labelled' else 'without'} --labelled-only, or pass --rebuild"
            )
        old_sets = _meta_sets(old_meta)
        for t in old_sets.tables():
            if not store.has_table(t):
                raise SchemaError(
                    f"table '{TABLE}' has features from '{t}', which is gone: pass --rebuild to recompute without it"
                )
    sets = old_sets.union(requested)
    new_sets = sets.minus(old_sets) if exists else FeatureSets()
    report.feature_sets = {"embeddings": list(sets.embeddings), "logprobs": list(sets.logprobs), "rewards": list(sets.rewards)}

    core = ["responses"] + (["pairs"] if store.has_table("pairs") else [])
    versions = store.versions(core + sets.tables())
    labels = _labels(store, versions.get("pairs"))
    resp = (
        store.scan("responses", versions["responses"])
        .select("response_id", "prompt_id", "source", "score", "blank")
        .collect()
        .unique("response_id", keep="first")
    )
    todo = resp
    if exists:
        done_prompts = store.scan(TABLE).select("prompt_id").unique().collect()
        report.prompts_present = done_prompts.height
        todo = todo.join(done_prompts, on="prompt_id", how="anti")
    if labelled_only:
        todo = todo.join(labels.select("prompt_id").unique(), on="prompt_id", how="semi")
    if exists and not new_sets and todo.height == 0:
        # Nothing new: no commit, and no input set is read.
        report.pairs_total = store.count(TABLE)
        report.version = store.dataset(TABLE).version
        report.seconds = time.perf_counter() - t0
        return report
    # Offsets and small values only for the rows that will be read (all rows when existing pairs
    # get new columns).
    inputs = _read_inputs(store, resp if new_sets else todo, sets, versions)
    todo = inputs.resp.join(todo.select("response_id"), on="response_id", how="semi") if new_sets else inputs.resp

    meta = {
        "mode": mode,
        "sets": report.feature_sets,
        "inputs": {**(old_meta.get("inputs") or {}), **_provenance(store, sets, versions)},
        "core_versions": {k: versions[k] for k in core},
    }
    schema = _schema(sets, meta)

    order_col = f"off_embeddings_{sets.embeddings[0]}" if sets.embeddings else None
    # Prompts in the order their vectors are stored, so each block's `take` reads sequentially.
    key = pl.col(order_col).min().over("prompt_id") if order_col else pl.col("prompt_id")
    todo = todo.with_columns(key.alias("__order")).sort("__order", "prompt_id", "response_id", nulls_last=True)
    ks = todo.group_by("prompt_id").len()
    total = ks.height
    report.prompts_single = int((ks["len"] < 2).sum())
    counts: dict[str, int] = {}

    def prefetched() -> Iterator[tuple[pl.DataFrame, dict]]:
        # Read block i+1 (Lance decodes in its own threads) while block i is computed.
        from concurrent.futures import ThreadPoolExecutor

        buffers = [{}, {}]
        blocks = _blocks(todo, block_rows, block_pairs)
        with ThreadPoolExecutor(1) as pool:
            nxt, slot = next(blocks, None), 0
            fut = pool.submit(_fetch, inputs, nxt, sets, buffers[slot]) if nxt is not None else None
            while nxt is not None:
                rows, fetched = nxt, fut.result()
                nxt, slot = next(blocks, None), slot ^ 1
                if nxt is not None:
                    fut = pool.submit(_fetch, inputs, nxt, sets, buffers[slot])
                yield rows, fetched

    def new_prompts() -> Iterator[pa.Table]:
        done = 0
        for rows, fetched in prefetched():
            tbl = _block(inputs, rows, labels, schema, labelled_only, fetched)
            report.pairs_added += tbl.num_rows
            vc = pl.from_arrow(tbl.select(["label_source"])).to_series().fill_null("none").value_counts()
            for s, c in vc.iter_rows():
                counts[s] = counts.get(s, 0) + c
            counts["tie"] = counts.get("tie", 0) + int(np.asarray(tbl.column("tie")).sum())
            done += rows["prompt_id"].n_unique()
            if progress:
                progress(done, total)
            yield tbl

    if rebuild or new_sets:
        # One Overwrite commit: existing rows (+ the new sets' columns), then the new prompts.
        if new_sets:
            old_cols = {f.name for f in old_sets.all_fields()}
            report.columns_added = [f.name for f in sets.all_fields() if f.name not in old_cols]
        old_rows = _with_new_columns(store, inputs, new_sets, schema) if exists else iter(())
        version = _overwrite(store, schema, itertools.chain(old_rows, new_prompts()))
    else:
        with store.writer() as w:
            if not exists:
                w.append(TABLE, schema.empty_table(), schema)  # a run with no pairs still creates it
            for tbl in new_prompts():
                w.append(TABLE, tbl, schema)
        version = w.committed.get(TABLE, store.dataset(TABLE).version)
    report.rebuilt = bool(rebuild)
    report.prompts_added = total - report.prompts_single
    report.labels = dict(sorted(counts.items()))
    report.version = version
    report.pairs_total = store.count(TABLE)
    report.seconds = time.perf_counter() - t0
    return report


def _overwrite(store: Store, schema: pa.Schema, tables: Iterator[pa.Table]) -> int:
    """Replace the table's rows and schema in one Overwrite commit.

    Each table is written as data files as it comes (bounded memory); nothing is visible until
    the commit. Tables are materialised before Lance sees them: a generator that itself calls
    Lance (take) must not run inside Lance's writer.
    """
    import lance

    uri = store.table_uri(TABLE)
    read_version = store.dataset(TABLE).version if store.has_table(TABLE) else None
    fragments = []
    for tbl in tables:
        if tbl.num_rows:
            fragments += lance.fragment.write_fragments(
                tbl.cast(schema), uri, schema=schema, mode="overwrite", max_rows_per_file=1 << 22,
                storage_options=store.storage_options,
            )
    ds = lance.LanceDataset.commit(
        uri, lance.LanceOperation.Overwrite(schema, fragments), read_version=read_version,
        storage_options=store.storage_options,
    )
    return ds.version


def _with_new_columns(store: Store, inputs: _Inputs, new: FeatureSets, schema: pa.Schema) -> Iterator[pa.Table]:
    """The existing rows, batch by batch, with the columns of the `new` sets added."""
    index = inputs.resp.select(
        "response_id", *[c for c in inputs.resp.columns if c.startswith(("off_", "logp_", "reward_"))]
    )
    for batch in store.dataset(TABLE).to_batches(batch_size=262_144):
        tbl = pa.Table.from_batches([batch])
        pairs = pl.from_arrow(tbl.select(["a_id", "b_id"]))
        ids = pl.concat([pairs["a_id"], pairs["b_id"]]).unique().sort().to_frame("response_id")
        rows = ids.join(index, on="response_id", how="left", maintain_order="left")
        pos = pl.DataFrame({"response_id": rows["response_id"], "__r": np.arange(rows.height, dtype=np.int64)})
        a = pairs.join(pos.rename({"response_id": "a_id"}), on="a_id", how="left", maintain_order="left")
        b = pairs.join(pos.rename({"response_id": "b_id"}), on="b_id", how="left", maintain_order="left")
        cols = _features(inputs, rows, new, a["__r"].to_numpy(), b["__r"].to_numpy())
        for name, arr in cols.items():
            tbl = tbl.append_column(name, arr)
        tbl = tbl.drop_columns([c for c in tbl.column_names if c.startswith("dcrm_")])
        yield _with_dcrm(tbl, inputs.sets).select(schema.names)


def _fetch(inputs: _Inputs, rows: pl.DataFrame, sets: FeatureSets, buffers: dict | None = None) -> dict:
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


def _features(
    inputs: _Inputs, rows: pl.DataFrame, sets: FeatureSets, a: np.ndarray, b: np.ndarray,
    grouped=None, fetched: dict | None = None,
) -> dict:
    """Feature columns of pairs (rows[a], rows[b]). `grouped`: (K groups, permutation) to compute
    cosines as grouped matmuls over whole prompts instead of row-wise dots."""
    fetched = fetched if fetched is not None else _fetch(inputs, rows, sets)
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
