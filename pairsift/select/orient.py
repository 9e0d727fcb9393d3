"""Which ``pair_features`` columns depend on the pair's orientation, and how to orient them.

``pair_features`` stores each unordered pair once, as (a, b) with ``a_id < b_id``: every gap is
"a minus b". A pair oriented as (chosen, rejected) reads them chosen-minus-rejected:

* gaps flip sign when b is chosen (label -1): ``score_margin``, ``dlogp_sum_*``,
  ``dlogp_mean_*``, ``dreward_*`` and every DCRM column ``dcrm_*`` (its denominator is
  symmetric, so the b-over-a DCRM is the negation, docs/ARCHITECTURE.md);
* symmetric columns never change: ``cos_*``, ``edit_*``, ``edit_norm_*``;
* per-side columns (``score_a``/``score_b``, ``source_*``, ``blank_*``) become
  ``*_chosen``/``*_rejected`` (TRL's ``score_chosen``/``score_rejected``).

Used by the oriented export and by ``pairsift plot``.
"""

from __future__ import annotations

import polars as pl

#: Column-name prefixes of "a minus b" gaps (exact name for the score margin).
GAP_PREFIXES = ("dlogp_sum_", "dlogp_mean_", "dreward_", "dcrm_")
GAP_NAMES = ("score_margin",)
#: Per-side columns and their stem: score_a/score_b -> score_chosen/score_rejected.
SIDE_STEMS = ("score", "source", "blank")


def is_gap(column: str) -> bool:
    """True for an "a minus b" column whose sign flips with the orientation."""
    return column in GAP_NAMES or column.startswith(GAP_PREFIXES)


def is_symmetric(column: str) -> bool:
    return column.startswith(("cos_", "edit_"))


def oriented(columns: list[str], sign: pl.Expr) -> list[pl.Expr]:
    """Expressions that orient `columns` chosen-minus-rejected.

    `sign` is +1 where a is chosen and -1 where b is chosen (null: unknown, gaps become null).
    Per-side pairs present in `columns` are renamed ``<stem>_chosen`` / ``<stem>_rejected``;
    every other column passes through unchanged.
    """
    present = set(columns)
    out: list[pl.Expr] = []
    a_first = sign == 1
    for c in columns:
        stem, _, side = c.rpartition("_")
        if stem in SIDE_STEMS and side in ("a", "b") and {f"{stem}_a", f"{stem}_b"} <= present:
            if side == "b":
                continue  # emitted with its a side
            a, b = pl.col(f"{stem}_a"), pl.col(f"{stem}_b")
            out.append(pl.when(a_first).then(a).otherwise(b).alias(f"{stem}_chosen"))
            out.append(pl.when(a_first).then(b).otherwise(a).alias(f"{stem}_rejected"))
        elif is_gap(c):
            out.append((pl.col(c) * sign.cast(pl.Float64)).cast(pl.Float64).alias(c))
        else:
            out.append(pl.col(c))
    return out
