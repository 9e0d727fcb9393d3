"""DCRM best-of-N² (docs/METHODS.md §2): per prompt, the pair with the highest distance-calibrated
reward margin ``(sigma(r_delta) - 0.5) / (e_delta + p_delta + 1)``.

Among all ORDERED pairs of a prompt the best always has ``r_delta > 0``, so each unordered
candidate is scored in the orientation where the reward margin is positive: chosen = the side
with the larger reward (``--reward NAME``: column ``dreward_<name>``, labels "reward:<name>") or
the larger dataset score (``score_margin``, labels "score"). Pairs whose margin is 0 cannot be
oriented (``reward_tie``); a prompt whose rewards all tie yields no pair (counted under
``prompts_excluded.reward_tie``). ``e_delta`` = ``edit_<lp>`` and ``p_delta`` =
``|dlogp_sum_<lp>|`` under ``--logprobs`` (default ``ref``). The formula is the shared
:func:`pairsift.features.dcrm.dcrm_expr`, the same one stored ``dcrm*`` columns use.
"""

from __future__ import annotations

import polars as pl

from ...errors import UsageError
from ...features.dcrm import ABLATIONS, dcrm_expr
from .base import Orientation, Picks, Strategy, rank_picks, top_per_prompt


def margin_column(p) -> str:
    return f"dreward_{p['reward']}" if p.get("reward") else "score_margin"


class DCRM(Strategy):
    name = "dcrm"
    summary = "per prompt, the pair with the highest DCRM (best-of-N²)"
    defaults = {"reward": None, "logprobs": "ref", "ablation": None, "different_source": False}

    def validate(self, p):
        if p["ablation"] not in ABLATIONS:
            raise UsageError(f"--ablation must be one of no-edit, no-logp, margin-only; got {p['ablation']!r}")

    def columns(self, p):
        cols = []
        if p["ablation"] in (None, "no-logp"):
            cols.append(f"edit_{p['logprobs']}")
        if p["ablation"] in (None, "no-edit"):
            cols.append(f"dlogp_sum_{p['logprobs']}")
        return cols + (["source_a", "source_b"] if p["different_source"] else [])

    def required(self, p):
        return [c for c in self.columns(p) if not c.startswith("source_")]

    def orientation(self, p):
        return Orientation(margin_column(p), f"reward:{p['reward']}" if p.get("reward") else "score")

    def filter(self, pool, p):
        if p["different_source"]:
            df = pool.df
            pool.drop(df["source_a"].is_not_null() & df["source_b"].is_not_null(), "unknown_source")
            pool.drop(pool.df["source_a"] != pool.df["source_b"], "same_source")

    def pick(self, pool, p, rng, ctx):
        e = f"edit_{p['logprobs']}" if p["ablation"] in (None, "no-logp") else None
        d = f"dlogp_sum_{p['logprobs']}" if p["ablation"] in (None, "no-edit") else None
        score = pool.df.select(
            dcrm_expr(pl.col(margin_column(p)).abs(), e, d, p["ablation"]).alias("s")
        )["s"].to_numpy()
        rows = top_per_prompt(pool.df, [(score, True)])
        ranked = rank_picks(pool.df, rows, [(score[rows], True)])
        return Picks(ranked, score[ranked])
