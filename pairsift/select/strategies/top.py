"""Top by any numeric column of pair_features: ``--by COLUMN (--k N | --ratio R)``.

Ascending by default (smallest first); ``--descending`` for largest first. ``--per-prompt``
applies k (or floor(R * n) of the prompt's n candidates) within each prompt. Null/NaN values
are excluded (counted), ties broken by pair key; the score is the column's value.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from ...errors import UsageError
from .base import (
    Picks,
    Strategy,
    check_ratio,
    floor_ratio,
    rank_picks,
    top_per_prompt,
    top_rows,
)


class Top(Strategy):
    name = "top"
    summary = "top --k N or --ratio R of the pairs by --by COLUMN (optionally per prompt)"
    defaults = {"by": None, "k": None, "ratio": None, "per_prompt": False, "descending": False}

    def validate(self, p):
        if not p["by"]:
            raise UsageError("top needs --by COLUMN (a numeric column of pair_features)")
        if (p["k"] is None) == (p["ratio"] is None):
            raise UsageError("top needs exactly one of --k N or --ratio R")
        if p["k"] is not None and (not isinstance(p["k"], int) or p["k"] < 0):
            raise UsageError(f"--k must be a non-negative integer, got {p['k']!r}")
        check_ratio(p)

    def columns(self, p):
        return [p["by"]]

    def pick(self, pool, p, rng, ctx):
        df, col = pool.df, p["by"]
        dtype = df.schema[col]
        if not dtype.is_numeric():
            raise UsageError(f"--by {col}: column has type {dtype}, not a number")
        key = (col, bool(p["descending"]))
        if p["per_prompt"]:
            if p["k"] is not None:
                k = p["k"]
            else:
                n = df.select(pl.len().over("_g"))["len"].to_numpy()
                k = floor_ratio(p["ratio"], n)
            rows = top_per_prompt(df, [key], k)
            vals = df[col].to_numpy()[rows]
            rows = rank_picks(df, rows, [(vals, bool(p["descending"]))])
        else:
            keep = p["k"] if p["k"] is not None else floor_ratio(p["ratio"], df.height)
            rows = top_rows(df, col, bool(p["descending"]), keep)
        return Picks(rows, df[col].to_numpy()[rows].astype(np.float64))
