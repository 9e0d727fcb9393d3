"""The machinery every selection strategy shares: the candidate pool, exclusions, ranking.

A strategy never sees the store. :func:`build_pool` reads ``pair_features`` at a pinned
version (projection and ``--where`` pushed into Lance), keeps the pairs the strategy may choose
from and counts every pair it drops by reason; the strategy then returns its picks as row
indices into the pool, in rank order, with one score each. Orientation (which side is chosen)
comes from the ``label`` column (dataset label or score) or, for strategies labelled by a reward
model, from the sign of that reward margin: never from index order (docs/METHODS.md §1).

Ties are broken by the pair key (``_p``: the first 64 bits of ``pair_id``, which sorts like the
id itself), so every result is deterministic; randomness comes only from a NumPy ``Generator``
seeded with the recorded seed, one draw per pair in pair-key order (one per prompt in
prompt-key order for centroid), so a draw does not depend on the table's layout on disk.
Ids never enter Polars as strings: each id column is parsed once, chunk by chunk, into 64-bit
keys (``Pool.keys``), and the picks' id strings are gathered from the Arrow columns at the end.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from ...errors import UsageError
from ...store.ids import id_keys
from ...store.splits import read_split

#: The contract's fixed columns (never listed as features in error messages).
BASE_COLUMNS = ["pair_id", "prompt_id", "a_id", "b_id", "label", "label_source", "orientable", "tie"]
#: What every pool reads for all rows. Ids are read as Arrow and turned into 64-bit keys; the
#: strings of the picks only (a_id, b_id, label_source) are fetched by row address at the end.
POOL_COLUMNS = ["pair_id", "prompt_id", "label", "tie"]


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass
class Orientation:
    """How picks are oriented. ``margin`` None: from the label column (dataset label or score).

    Otherwise chosen is the side with the larger ``margin`` ("a minus b"); a zero margin cannot be
    oriented and is excluded (``reward_tie``); ``label_source`` names where the label came from.
    """

    margin: str | None = None
    label_source: str | None = None


@dataclass
class Pool:
    """The candidate pairs of one selection, and what was excluded on the way, by reason.

    ``df`` holds one row per candidate, grouped by prompt (rows of a prompt are contiguous), with
    the strategy's columns and: ``_g`` prompt key, ``_p`` pair key (UInt64), ``_gi`` dense prompt
    index (0..P-1 in row order), ``_o`` orientation (+1 a chosen, -1 b chosen, 0 unknown),
    ``_row`` the row's index into ``keys`` / ``id_arrays`` (every row read).
    """

    df: pl.DataFrame
    labelled: bool  # True: pairs are oriented (subset ready for training); False: out for annotation
    keys: dict[str, np.ndarray] = field(default_factory=dict)  # id column -> [rows read] uint64 keys
    id_arrays: dict[str, pa.ChunkedArray] = field(default_factory=dict)  # the id strings, as read
    read: pl.DataFrame | None = None  # every row read, before any candidate filter
    excluded: Counter = field(default_factory=Counter)  # pairs, by reason
    prompts_excluded: Counter = field(default_factory=Counter)  # prompts that lost their last pair, by reason
    rows_read: int = 0
    prompts_read: int = 0

    def drop(self, keep: pl.Series | np.ndarray, reason: str) -> None:
        """Keep rows where `keep` is true; count the rest (and prompts left with none) under `reason`."""
        keep = keep.to_numpy() if isinstance(keep, pl.Series) else np.asarray(keep)
        keep = np.asarray(keep, dtype=bool)
        n_drop = int(len(keep) - keep.sum())
        if not n_drop:
            return
        gi = self.df["_gi"].to_numpy()
        n_groups = int(gi[-1]) + 1 if len(gi) else 0
        had = np.bincount(gi, minlength=n_groups) > 0
        has = np.bincount(gi[keep], minlength=n_groups) > 0
        self.df = self.df.filter(pl.Series(keep))
        self.excluded[reason] += n_drop
        lost = int(had.sum() - has.sum())
        if lost:
            self.prompts_excluded[reason] += lost

    def require(self, column: str) -> None:
        """Drop rows whose `column` is null or NaN (NaN is never selected), counted by column."""
        s = self.df[column]
        bad = s.is_null()
        if s.dtype.is_float():
            bad = bad | s.is_nan().fill_null(True)
        if len(bad) and bad.all():
            # Every candidate lacks the input: an empty subset would only hide the cause.
            hint = (
                "the data has no scores: pass --reward NAME after `pairsift score reward`"
                if column == "score_margin"
                else column_hint(column)
            )
            raise UsageError(f"no candidate pair has a value in '{column}' ({hint})")
        self.drop(~bad, f"null_{column}")

    def group_starts(self) -> np.ndarray:
        """Index of the first row of each prompt still in the pool (rows are grouped)."""
        gi = self.df["_gi"].to_numpy()
        if len(gi) == 0:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(np.r_[True, gi[1:] != gi[:-1]])


@dataclass
class Picks:
    """What a strategy returns: rows of ``pool.df`` in rank order and each pick's score."""

    rows: np.ndarray
    score: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)  # strategy-specific counts for the manifest


class Strategy:
    """A selection strategy. Subclasses set ``name``, ``defaults`` and implement ``pick``.

    ``defaults`` lists every parameter the strategy accepts (CLI flag = ``--`` + name with
    dashes); a parameter not listed is refused with its flag name.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}
    uses_seed: ClassVar[bool] = False

    def configure(self, params: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            opts = ", ".join(flag(k) for k in unknown)
            allowed = ", ".join(flag(k) for k in self.defaults) or "none"
            raise UsageError(f"strategy '{self.name}' does not take {opts} (its options: {allowed})")
        out = dict(self.defaults)
        out.update({k: v for k, v in params.items() if v is not None})
        self.validate(out)
        return out

    def validate(self, p: dict[str, Any]) -> None:
        """Check parameter values; raise UsageError naming the flag."""

    def columns(self, p: dict[str, Any]) -> list[str]:
        """Feature columns of ``pair_features`` this strategy reads."""
        return []

    def required(self, p: dict[str, Any]) -> list[str]:
        """Columns that must be non-null and non-NaN for a pair to be a candidate."""
        return self.columns(p)

    def orientation(self, p: dict[str, Any]) -> Orientation:
        return Orientation()

    def tables(self, p: dict[str, Any]) -> list[str]:
        """Store tables read besides pair_features (their versions go into the manifest)."""
        return []

    def filter(self, pool: Pool, p: dict[str, Any]) -> None:
        """Strategy-specific candidate filters (e.g. different sources); count what they drop."""

    def pick(self, pool: Pool, p: dict[str, Any], rng: np.random.Generator, ctx: Any) -> Picks:
        raise NotImplementedError


# ---- vectorised building blocks ------------------------------------------------------------------


def order_by(df: pl.DataFrame, keys: list[tuple[str | pl.Series | np.ndarray, bool]]) -> np.ndarray:
    """Row indices of `df` sorted by `keys` [(column or values, descending)], ties by pair key."""
    cols, desc = {}, []
    for i, (key, d) in enumerate(keys):
        cols[f"k{i}"] = df[key] if isinstance(key, str) else pl.Series(np.asarray(key))
        desc.append(d)
    cols["kp"] = df["_p"]
    desc.append(False)
    frame = pl.DataFrame(cols).with_row_index("_i")
    # The row index as the last key makes the order total, so the sort needs no stability
    # (maintain_order=True costs 2x on millions of rows).
    return frame.sort([*cols, "_i"], descending=[*desc, False])["_i"].to_numpy().astype(np.int64)


def top_rows(df: pl.DataFrame, key: str | np.ndarray, descending: bool, k: int) -> np.ndarray:
    """The first `k` rows by one key (ties by pair key), without sorting everything when k is small."""
    n = df.height
    if k >= n // 4:
        return order_by(df, [(key, descending)])[:k]
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    v = _values(df, key)
    v = -v if descending else v
    threshold = np.partition(v, k - 1)[k - 1]
    cand = np.flatnonzero(v <= threshold)  # every row that can be among the first k, ties included
    sub = df.select("_p")[cand]
    return cand[order_by(sub, [(v[cand], False)])[:k]]


def _values(df: pl.DataFrame, key) -> np.ndarray:
    v = df[key].to_numpy() if isinstance(key, str) else np.asarray(key)
    return v.astype(np.float64)


def best_per_prompt(df: pl.DataFrame, keys: list[tuple[str | np.ndarray, bool]]) -> np.ndarray:
    """Row of the best pair of each prompt by `keys` (lexicographic), ties by the smallest pair key.

    Segment reductions over the grouped rows: O(n), no sort. Values must not be NaN (the pool
    has already excluded them)."""
    n = df.height
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    gi = df["_gi"].to_numpy()
    starts = np.flatnonzero(np.r_[True, gi[1:] != gi[:-1]])
    seg = np.cumsum(np.r_[True, gi[1:] != gi[:-1]]) - 1  # segment number of each row
    alive = np.ones(n, dtype=bool)
    for key, desc in keys:
        v = _values(df, key)
        v = -v if desc else v
        best = np.minimum.reduceat(np.where(alive, v, np.inf), starts)
        alive &= v == best[seg]
    p = df["_p"].to_numpy()
    pmin = np.minimum.reduceat(np.where(alive, p, np.iinfo(np.uint64).max), starts)
    rows = np.flatnonzero(alive & (p == pmin[seg]))
    return rows.astype(np.int64)


def top_per_prompt(df: pl.DataFrame, keys: list[tuple[str | np.ndarray, bool]], k: int | np.ndarray = 1) -> np.ndarray:
    """Rows of the best `k` pairs of each prompt by `keys` (ties by pair key).

    `k` may be an array with one value per row (the value of the row's prompt), for per-prompt ratios.
    """
    if np.isscalar(k) and k == 1:
        return best_per_prompt(df, keys)
    order = order_by(df, [("_gi", False), *keys])
    if len(order) == 0:
        return order
    g = df["_gi"].to_numpy()[order]
    start = np.r_[True, g[1:] != g[:-1]]
    pos = np.arange(len(order))
    rank = pos - np.maximum.accumulate(np.where(start, pos, 0))
    kk = k if np.isscalar(k) else np.asarray(k)[order]
    return order[rank < kk]


def rank_picks(df: pl.DataFrame, rows: np.ndarray, keys: list[tuple[np.ndarray, bool]]) -> np.ndarray:
    """Put picked `rows` in rank order by `keys` (values aligned with `rows`), ties by pair key."""
    sub = df.select("_p")[rows]
    o = order_by(sub, keys)
    return rows[o]


def uniform_draws(df: pl.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """One U(0,1) per row, drawn in pair-key order, so the draw a pair gets does not depend on
    how the table is laid out on disk."""
    order = np.argsort(df["_p"].to_numpy(), kind="stable")
    u = np.empty(df.height, dtype=np.float64)
    u[order] = rng.random(df.height)
    return u


def floor_ratio(ratio: float, n: int | np.ndarray):
    """floor(ratio * n) with the ratio read as the decimal the user typed (0.29 * 100 == 29)."""
    from fractions import Fraction

    f = Fraction(repr(float(ratio)))
    if np.isscalar(n):
        return (f.numerator * int(n)) // f.denominator
    return (np.asarray(n, dtype=np.int64) * f.numerator) // f.denominator


def check_ratio(p: dict, key: str = "ratio") -> None:
    r = p.get(key)
    if r is not None and not (0 < r <= 1):
        raise UsageError(f"{flag(key)} must be in (0, 1], got {r}")


# ---- the candidate pool ------------------------------------------------------------------------


@dataclass
class Context:
    """What a strategy may read besides the pool: the store, at the versions being recorded."""

    store: Any
    versions: dict[str, int]


def column_hint(column: str) -> str:
    if column.startswith("cos_"):
        return f"compute the embedding set with `pairsift embed --name {column[4:]}` and re-run `pairsift pairs`"
    for prefix in ("edit_norm_", "edit_", "dlogp_sum_", "dlogp_mean_"):
        if column.startswith(prefix):
            return f"compute log-probs `{column[len(prefix):]}` with `pairsift score` and re-run `pairsift pairs`"
    if column.startswith("dreward_"):
        return f"compute rewards `{column[8:]}` with `pairsift score` and re-run `pairsift pairs`"
    return "check the name with `pairsift info` / `pairsift query`"


def check_columns(schema: pa.Schema, columns: list[str]) -> None:
    names = set(schema.names)
    for c in columns:
        if c not in names:
            features = sorted(n for n in names if n not in BASE_COLUMNS)
            raise UsageError(
                f"table 'pair_features' has no column '{c}' ({column_hint(c)}); "
                f"columns present: {', '.join(features) or 'none'}"
            )


def resolve_embedding(schema: pa.Schema, p: dict[str, Any]) -> None:
    """`--embedding` defaults to the one embedding set pair_features has cosines for."""
    if "embedding" not in p or p["embedding"] is not None:
        return
    sets = sorted(n[4:] for n in schema.names if n.startswith("cos_"))
    if len(sets) != 1:
        found = ", ".join(sets) if sets else "none (run `pairsift embed` and `pairsift pairs`)"
        raise UsageError(f"pass --embedding NAME: pair_features has cosines for {found}")
    p["embedding"] = sets[0]


ID_COLUMNS = ("pair_id", "prompt_id", "a_id", "b_id")


def build_pool(store, strategy: Strategy, p: dict[str, Any], version: int, where: str | None,
               scope: str | None = None) -> Pool:
    """Read the candidates at `version`, orient them and drop what the strategy cannot choose.

    `scope` (``select --dataset/--split``, :mod:`pairsift.select.scope`) is a filter pushed into
    Lance with `where`; what each drops is counted under ``dataset`` and ``where``.
    """
    ds = store.dataset("pair_features", version)
    orient = strategy.orientation(p)
    feats = list(dict.fromkeys(strategy.columns(p) + ([orient.margin] if orient.margin else [])))
    check_columns(ds.schema, feats)
    rows_total = ds.count_rows()
    cols = list(dict.fromkeys([*ID_COLUMNS, *POOL_COLUMNS, "label_source", *feats]))
    try:
        flt = " AND ".join(f"({f})" for f in (scope, where) if f) or None
        table = ds.to_table(columns=cols, filter=flt)
    except (ValueError, OSError, RuntimeError) as e:  # lance reports bad SQL as ValueError/OSError
        raise UsageError(f"--where {where!r} is not a valid filter on table 'pair_features': {e}") from e
    in_scope = rows_total if not scope else (ds.count_rows(filter=scope) if where else table.num_rows)
    # Ids stay fixed-width bytes (the picks' strings are gathered from them at the end); the pool
    # frame carries 64-bit keys instead.
    id_arrays = {c: table.column(c) for c in ID_COLUMNS}
    keys = {c: id_keys(id_arrays[c]) for c in ID_COLUMNS}
    g = keys["prompt_id"]
    df = pl.from_arrow(table.drop_columns([c for c in ID_COLUMNS if c not in feats]))
    del table
    df = df.with_columns(
        pl.col("label_source").cast(pl.Categorical),
        _g=pl.Series(g),
        _p=pl.Series(keys["pair_id"]),
        _row=pl.int_range(pl.len(), dtype=pl.Int64),
    )
    # Group the rows of each prompt together (they usually are already, as pairs are written per
    # prompt block); then a dense prompt index lets per-prompt picks be segment reductions.
    run_start = np.r_[True, g[1:] != g[:-1]] if len(g) else np.zeros(0, dtype=bool)
    run_keys = g[run_start]
    if len(np.unique(run_keys)) != len(run_keys):
        df = df.sort("_g", maintain_order=True)
        g = df["_g"].to_numpy()
        run_start = np.r_[True, g[1:] != g[:-1]]
    df = df.with_columns(_gi=pl.Series(np.cumsum(run_start) - 1, dtype=pl.Int64))
    pool = Pool(df=df, labelled=True, keys=keys, id_arrays=id_arrays, read=df, rows_read=rows_total, prompts_read=int(run_start.sum()))
    if scope:
        pool.excluded["dataset"] += rows_total - in_scope
    if where:
        pool.excluded["where"] += in_scope - df.height
    split = read_split(store)
    if split is not None:  # held-out prompts are for evaluation only (`pairsift split`)
        pool.drop(np.isin(pool.df["_g"].to_numpy(), split.prompt_keys), "not_in_split")
        pool.drop(~np.isin(pool.df["_g"].to_numpy(), split.heldout_keys), "held_out")

    if orient.margin:
        pool.require(orient.margin)
        pool.drop(pool.df[orient.margin] != 0, "reward_tie")
        pool.df = pool.df.with_columns(_o=pl.col(orient.margin).sign().cast(pl.Int8))
    elif pool.df["label"].is_not_null().any():
        # Scored/labelled data: choose among the orientable pairs only.
        lab = pool.df["label"].is_not_null()
        pool.drop(lab | ~pool.df["tie"].fill_null(False), "tie")
        pool.drop(pool.df["label"].is_not_null(), "unlabelled")
        pool.df = pool.df.with_columns(_o=pl.col("label").cast(pl.Int8))
    else:
        # Nothing is labelled: choose among all pairs; the subset goes out for annotation.
        pool.labelled = False
        pool.df = pool.df.with_columns(_o=pl.lit(0, dtype=pl.Int8))
    for c in strategy.required(p):
        pool.require(c)
    strategy.filter(pool, p)
    return pool


def members_table(pool: Pool, rows: np.ndarray, score: np.ndarray, name: str, margin_source: str | None,
                  schema: pa.Schema) -> pa.Table:
    """The subset_members rows of the picks, built from the id bytes (no per-row Python)."""
    rows = np.asarray(rows, dtype=np.int64)
    n = len(rows)
    # Arrow `take` gathers the strings through Arrow's memory pool, which reuses the pages of the
    # table just read; NumPy gathers of [n, 32] byte matrices paid fresh page faults (~1.5 s for
    # 2.5M picks).
    idx = pa.array(pool.df["_row"].to_numpy()[rows])
    take = {c: pool.id_arrays[c].take(idx) for c in ID_COLUMNS}
    a, b = take["a_id"], take["b_id"]
    o = pool.df["_o"].to_numpy()[rows]
    a_first = pa.array(o == 1)
    oriented = pa.array(o != 0)
    null = pa.scalar(None, pa.string())
    if margin_source:
        src = pc.if_else(oriented, _constant(margin_source, n), null)
    else:
        src = pool.df["label_source"].gather(rows).cast(pl.String).to_arrow().cast(pa.string())
        src = pc.if_else(oriented, src, null)
    score = np.asarray(score, dtype=np.float64)
    cols = {
        "subset": _constant(name, n),
        "pair_id": take["pair_id"],
        "prompt_id": take["prompt_id"],
        "rank": pa.array(np.arange(n, dtype=np.int64)),
        "score": pa.array(score, mask=np.isnan(score)),
        "chosen_id": pc.if_else(oriented, pc.if_else(a_first, a, b), null),
        "rejected_id": pc.if_else(oriented, pc.if_else(a_first, b, a), null),
        "label_source": src,
        "a_id": a,
        "b_id": b,
    }
    return pa.table([cols[f.name] for f in schema], schema=schema)


def _constant(value: str, n: int) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([value])).cast(pa.string())
