"""The machinery every selection strategy shares: the candidate pool, exclusions, ranking.

A strategy never sees the store. :func:`build_pool` reads ``pair_features`` at a pinned
version (projection and ``--where`` pushed into Lance), keeps the pairs the strategy may choose
from and counts every pair it drops by reason; the strategy then returns its picks as row
indices into the pool, in rank order, with one score each. Orientation (which side is chosen)
comes from the ``label`` column (dataset label or score) or, for strategies labelled by a reward
model, from the sign of that reward margin: never from index order (METHODS.md §1).

Ties are broken by the pair key (``_p``: the first 64 bits of ``pair_id``, which sorts like the
id itself), so every result is deterministic; randomness comes only from a NumPy ``Generator``
seeded with the recorded seed, drawn in (prompt key, pair key) order.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import polars as pl
import pyarrow as pa

from ...errors import UsageError

#: Columns every pool carries (the contract's fixed columns that selection needs).
BASE_COLUMNS = ["pair_id", "prompt_id", "a_id", "b_id", "label", "label_source", "orientable", "tie"]


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
    """The candidate pairs of one selection, and what was excluded on the way, by reason."""

    df: pl.DataFrame  # BASE_COLUMNS + the strategy's columns + _g (prompt key), _p (pair key), _o (orientation)
    labelled: bool  # True: pairs are oriented (subset ready for training); False: out for annotation
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
        before = self.df["_g"].n_unique()
        self.df = self.df.filter(pl.Series(keep))
        self.excluded[reason] += n_drop
        lost = before - (self.df["_g"].n_unique() if self.df.height else 0)
        if lost:
            self.prompts_excluded[reason] += lost

    def require(self, column: str) -> None:
        """Drop rows whose `column` is null or NaN (NaN is never selected), counted by column."""
        s = self.df[column]
        bad = s.is_null()
        if s.dtype.is_float():
            bad = bad | s.is_nan().fill_null(True)
        self.drop(~bad, f"null_{column}")


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


def id_key(col: str) -> pl.Expr:
    """First 64 bits of a 32-hex-digit id as UInt64: sorts like the id, 8 bytes instead of 32."""
    return pl.col(col).str.slice(0, 16).str.to_integer(base=16, dtype=pl.UInt64)


def order_by(df: pl.DataFrame, keys: list[tuple[str | pl.Series | np.ndarray, bool]]) -> np.ndarray:
    """Row indices of `df` sorted by `keys` [(column or values, descending)], ties by pair key."""
    cols, desc = {}, []
    for i, (key, d) in enumerate(keys):
        cols[f"k{i}"] = df[key] if isinstance(key, str) else pl.Series(np.asarray(key))
        desc.append(d)
    cols["kp"] = df["_p"]
    desc.append(False)
    frame = pl.DataFrame(cols).with_row_index("_i")
    return frame.sort([c for c in cols], descending=desc, maintain_order=True)["_i"].to_numpy().astype(np.int64)


def top_per_prompt(df: pl.DataFrame, keys: list[tuple[str | np.ndarray, bool]], k: int | np.ndarray = 1) -> np.ndarray:
    """Rows of the best `k` pairs of each prompt by `keys` (ties by pair key), grouped by prompt key.

    `k` may be an array with one value per row (the value of the row's prompt), for per-prompt ratios.
    """
    order = order_by(df, [("_g", False), *keys])
    if len(order) == 0:
        return order
    g = df["_g"].to_numpy()[order]
    start = np.r_[True, g[1:] != g[:-1]]
    pos = np.arange(len(order))
    rank = pos - np.maximum.accumulate(np.where(start, pos, 0))
    kk = k if np.isscalar(k) else np.asarray(k)[order]
    return order[rank < kk]


def rank_picks(df: pl.DataFrame, rows: np.ndarray, keys: list[tuple[np.ndarray, bool]]) -> np.ndarray:
    """Put picked `rows` in rank order by `keys` (values aligned with `rows`), ties by pair key."""
    sub = df[rows]
    o = order_by(sub, keys)
    return rows[o]


def uniform_draws(df: pl.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """One U(0,1) per row, drawn in (prompt key, pair key) order, so the draw a pair gets does not
    depend on how the table is laid out on disk."""
    order = order_by(df, [("_g", False)])
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


def build_pool(store, strategy: Strategy, p: dict[str, Any], version: int, where: str | None) -> Pool:
    """Read the candidates at `version`, orient them and drop what the strategy cannot choose."""
    ds = store.dataset("pair_features", version)
    orient = strategy.orientation(p)
    feats = list(dict.fromkeys(strategy.columns(p) + ([orient.margin] if orient.margin else [])))
    check_columns(ds.schema, feats)
    rows_total = ds.count_rows()
    try:
        table = ds.to_table(columns=BASE_COLUMNS + [c for c in feats if c not in BASE_COLUMNS], filter=where)
    except (ValueError, OSError, RuntimeError) as e:  # lance reports bad SQL as ValueError/OSError
        raise UsageError(f"--where {where!r} is not a valid filter on table 'pair_features': {e}") from e
    df = pl.from_arrow(table).with_columns(_g=id_key("prompt_id"), _p=id_key("pair_id"))
    pool = Pool(df=df, labelled=True, rows_read=rows_total, prompts_read=df["_g"].n_unique())
    pool.excluded["where"] += rows_total - df.height

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
