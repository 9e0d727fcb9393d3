import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pairsift.errors import UsageError
from pairsift.features.dcrm import dcrm, dcrm_expr


def ref_dcrm(r, e, p, ablation=None):
    """docs/METHODS.md §2 literally, one pair at a time."""
    if any(x is None or (isinstance(x, float) and math.isnan(x)) for x in (r, e, p)):
        return math.nan
    num = 1.0 / (1.0 + math.exp(-r)) - 0.5 if r > -700 else -0.5
    if ablation == "margin-only":
        return num
    den = {None: e + abs(p) + 1, "no-edit": abs(p) + 1, "no-logp": e + 1}[ablation]
    return num / den


finite = st.floats(-50, 50, allow_nan=False)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(finite, st.integers(0, 2000), finite), min_size=1, max_size=30),
    st.sampled_from([None, "no-edit", "no-logp", "margin-only"]),
)
def test_dcrm_matches_reference(rows, ablation):
    r, e, p = (np.array(c, dtype=float) for c in zip(*rows))
    want = [ref_dcrm(*row, ablation) for row in rows]
    np.testing.assert_allclose(dcrm(r, e, p, ablation), want, rtol=1e-12, atol=1e-15)
    df = pl.DataFrame({"r": r, "e": e.astype(np.int32), "p": p})
    got = df.select(dcrm_expr("r", "e", "p", ablation).alias("d"))["d"].to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_dcrm_sign_follows_margin_and_nan_propagates():
    out = dcrm([2.0, -2.0, 0.0, np.nan], [3, 3, 3, 3], [-1.5, 1.5, 0.0, 0.0])
    assert out[0] > 0 and out[1] == -out[0] and out[2] == 0 and np.isnan(out[3])
    df = pl.DataFrame({"r": [1.0, None], "e": [0, 1], "p": [0.0, 1.0]})
    got = df.select(dcrm_expr("r", "e", "p").alias("d"))["d"]
    assert got[0] == pytest.approx(ref_dcrm(1.0, 0, 0.0)) and got[1] is None


def test_dcrm_huge_margin_does_not_overflow():
    assert dcrm([1e6], [0], [0])[0] == 0.5
    assert dcrm([-1e6], [0], [0])[0] == -0.5


def test_dcrm_errors_name_the_fix():
    with pytest.raises(UsageError, match="ablation"):
        dcrm([1.0], [1], [1], ablation="bogus")
    with pytest.raises(UsageError, match="edit distance"):
        dcrm_expr("r", None, "p")
    assert isinstance(dcrm_expr("r", None, "p", ablation="no-edit"), pl.Expr)
