"""Similarity band: every candidate pair whose cosine lies in [--min, --max] (inclusive).

With ``--per-prompt K`` at most K pairs per prompt are kept, chosen uniformly at random
(seeded) among the prompt's in-band pairs, so the band's distribution is not skewed toward
either edge. Picks are ranked by cosine ascending; the score is the cosine.
"""

from __future__ import annotations

import numpy as np

from ...errors import UsageError
from .base import Picks, Strategy, rank_picks, top_per_prompt, uniform_draws
from .real import DEFAULT_EMBEDDING


class Band(Strategy):
    name = "band"
    summary = "pairs with cosine in [--min, --max], optionally at most --per-prompt K per prompt"
    defaults = {"min": None, "max": None, "embedding": DEFAULT_EMBEDDING, "per_prompt": None}
    uses_seed = True

    def validate(self, p):
        if p["min"] is None or p["max"] is None:
            raise UsageError("band needs both --min and --max")
        if p["min"] > p["max"]:
            raise UsageError(f"--min ({p['min']}) is larger than --max ({p['max']})")
        if p["per_prompt"] is not None and (not isinstance(p["per_prompt"], int) or p["per_prompt"] < 1):
            raise UsageError(f"--per-prompt must be a positive integer, got {p['per_prompt']!r}")

    def columns(self, p):
        return [f"cos_{p['embedding']}"]

    def filter(self, pool, p):
        c = pool.df[f"cos_{p['embedding']}"]
        pool.drop((c >= p["min"]) & (c <= p["max"]), "outside_band")

    def pick(self, pool, p, rng, ctx):
        df = pool.df
        cos = df[f"cos_{p['embedding']}"].to_numpy().astype(np.float64)
        if p["per_prompt"] is not None:
            u = uniform_draws(df, rng)
            rows = top_per_prompt(df, [(u, True)], p["per_prompt"])
        else:
            rows = np.arange(df.height)
        ranked = rank_picks(df, rows, [(cos[rows], False)])
        return Picks(ranked, cos[ranked])
