"""DCRM (docs/METHODS.md §2): one formula for stored columns and for every strategy.

    DCRM = (sigma(r_delta) - 0.5) / (e_delta + p_delta + 1)

``r_delta`` is the reward (or score) margin of the ORIENTED pair (chosen minus rejected),
``e_delta`` the raw token Levenshtein distance and ``p_delta`` the absolute gap of the summed
reference log-probs. Both distances are symmetric, so only ``r_delta`` depends on orientation;
an unordered pair's column ``dreward_<rm>`` ("a minus b") gives the DCRM of the a-over-b
orientation, and the b-over-a orientation is its negation's DCRM (same denominator).

Ablations the paper runs: ``no-edit`` (denominator ``p_delta + 1``), ``no-logp``
(``e_delta + 1``), ``margin-only`` (``sigma(r_delta) - 0.5``; same ranking as the raw margin).
A null/NaN part gives a null/NaN DCRM; callers must exclude those (never select NaN).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from ..errors import UsageError

ABLATIONS = (None, "no-edit", "no-logp", "margin-only")


def _check(ablation: str | None) -> None:
    if ablation not in ABLATIONS:
        raise UsageError(f"--ablation must be one of no-edit, no-logp, margin-only; got {ablation!r}")


def _expr(x: pl.Expr | str | float) -> pl.Expr:
    if isinstance(x, pl.Expr):
        return x
    return pl.col(x) if isinstance(x, str) else pl.lit(x)


def dcrm_expr(
    r_delta: pl.Expr | str,
    e_delta: pl.Expr | str | None = None,
    p_delta: pl.Expr | str | None = None,
    ablation: str | None = None,
) -> pl.Expr:
    """DCRM as a Polars expression over column names or expressions.

    ``p_delta`` is taken in absolute value here, so a signed "a minus b" log-prob gap column
    (``dlogp_sum_<lp>``) can be passed directly. ``e_delta``/``p_delta`` may be None only when
    the ablation does not use them.
    """
    _check(ablation)
    r = _expr(r_delta).cast(pl.Float64)
    # sigma(r) - 0.5 == tanh(r/2)/2: exact and overflow-free for large |r|.
    numerator = (r * 0.5).tanh() * 0.5
    if ablation == "margin-only":
        return numerator
    need_e = ablation in (None, "no-logp")
    need_p = ablation in (None, "no-edit")
    if need_e and e_delta is None:
        raise UsageError("DCRM needs the edit distance: run `pairsift pairs` with a logprobs set (token ids)")
    if need_p and p_delta is None:
        raise UsageError("DCRM needs the log-prob gap: run `pairsift score logprobs` and `pairsift pairs` first")
    denominator = pl.lit(1.0)
    if need_e:
        denominator = denominator + _expr(e_delta).cast(pl.Float64)
    if need_p:
        denominator = denominator + _expr(p_delta).cast(pl.Float64).abs()
    return numerator / denominator


def dcrm(r_delta, e_delta=None, p_delta=None, ablation: str | None = None) -> np.ndarray:
    """The same formula on NumPy arrays (NaN in, NaN out)."""
    _check(ablation)
    r = np.asarray(r_delta, dtype=np.float64)
    # sigma(r) - 0.5 == tanh(r/2)/2: exact and overflow-free for large |r|.
    numerator = 0.5 * np.tanh(0.5 * r)
    if ablation == "margin-only":
        return numerator
    denominator = np.ones_like(r)
    if ablation in (None, "no-logp"):
        if e_delta is None:
            raise UsageError("DCRM needs the edit distance (e_delta)")
        denominator = denominator + np.asarray(e_delta, dtype=np.float64)
    if ablation in (None, "no-edit"):
        if p_delta is None:
            raise UsageError("DCRM needs the log-prob gap (p_delta)")
        denominator = denominator + np.abs(np.asarray(p_delta, dtype=np.float64))
    return numerator / denominator
