"""M_AP, alignment potential (docs/METHODS.md §3), and its named variants, over the whole pool.

``R`` = the explicit margin ``|r(a) - r(b)|`` (``--reward NAME``: ``dreward_<name>``, the reward
model then also orients the pairs; else the dataset ``score_margin``, pairs oriented by their
label); ``L`` = ``|dlogp_mean_<lp>|``, the implicit margin under the model about to be trained
(``--logprobs``, default ``policy``). Each is z-scored over the candidate pool with the
POPULATION std (a constant column z-scores to 0). Variants (``--variant``):

- ``map``: ``zR - w*zL`` (``--weight``, default 1.0; the self-play scripts use 2.5);
- ``rm_margin``: ``zR``;  ``logp_margin_norm_abs``: ``-zL``;  ``rand``: a seeded uniform draw.

The top floor(rho*N) by score are kept (``--ratio``, default 0.4; N = the candidates whose score
is defined; pairs with a null/NaN part are excluded and counted, never selected), ties by pair key.
"""

from __future__ import annotations

import numpy as np

from ...errors import UsageError
from .base import (
    Orientation,
    Picks,
    Strategy,
    check_ratio,
    floor_ratio,
    top_rows,
    uniform_draws,
)

VARIANTS = ("map", "rm_margin", "logp_margin_norm_abs", "rand")


def zscore(x: np.ndarray) -> np.ndarray:
    if len(x) == 0:
        return x
    std = x.std()  # population std (ddof=0), as the paper
    return np.zeros_like(x) if std == 0 else (x - x.mean()) / std


class MAP(Strategy):
    name = "map"
    summary = "top ratio of the pool by alignment potential zR - w*zL (and variants)"
    defaults = {"ratio": 0.4, "weight": 1.0, "variant": "map", "reward": None, "logprobs": "policy"}
    uses_seed = True

    def validate(self, p):
        check_ratio(p)
        if p["variant"] not in VARIANTS:
            raise UsageError(f"--variant must be one of {', '.join(VARIANTS)}; got {p['variant']!r}")

    def _r(self, p):
        return f"dreward_{p['reward']}" if p.get("reward") else "score_margin"

    def columns(self, p):
        v = p["variant"]
        cols = []
        if v in ("map", "rm_margin"):
            cols.append(self._r(p))
        if v in ("map", "logp_margin_norm_abs"):
            cols.append(f"dlogp_mean_{p['logprobs']}")
        return cols

    def orientation(self, p):
        return Orientation(f"dreward_{p['reward']}", f"reward:{p['reward']}") if p.get("reward") else Orientation()

    def pick(self, pool, p, rng, ctx):
        df, v = pool.df, p["variant"]
        n = df.height
        if v == "rand":
            score = uniform_draws(df, rng)
        else:
            score = np.zeros(n)
            if v in ("map", "rm_margin"):
                score += zscore(np.abs(df[self._r(p)].to_numpy().astype(np.float64)))
            if v in ("map", "logp_margin_norm_abs"):
                w = p["weight"] if v == "map" else 1.0
                score -= w * zscore(np.abs(df[f"dlogp_mean_{p['logprobs']}"].to_numpy().astype(np.float64)))
        keep = floor_ratio(p["ratio"], n)
        rows = top_rows(df, score, True, keep)
        return Picks(rows, score[rows], {"pool": n, "keep": int(keep)})
