"""Agreement maths against the plain-Python reference and against published examples."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pairsift.label.agreement import cohen_kappa, fleiss_kappa, raw_agreement
from pairsift.label.resolve import tally
from pairsift.label.stats import count_matrix

from . import reference

CATS = list(reference.CATEGORIES)


def _matrix(ratings):
    return np.array([[r.count(c) for c in CATS] for r in ratings], dtype=np.int64).reshape(len(ratings), len(CATS))


def test_fleiss_textbook_example():
    # Fleiss (1971) / Wikipedia: 10 subjects, 14 raters, 5 categories -> kappa = 0.210
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert fleiss_kappa(np.array(table)) == pytest.approx(0.2099, abs=1e-4)
    ratings = [[str(j) for j, n in enumerate(row) for _ in range(n)] for row in table]
    assert reference.fleiss_kappa(ratings) == pytest.approx(0.2099, abs=1e-4)


def test_cohen_textbook_example():
    # Wikipedia: 50 proposals, yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> kappa = 0.4
    x = ["yes"] * 25 + ["no"] * 25
    y = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(x, y) == pytest.approx(0.4)
    assert reference.cohen_kappa(x, y) == pytest.approx(0.4)


def test_undefined_kappas_are_none():
    assert fleiss_kappa(np.zeros((3, 4))) is None  # no pair with two votes
    assert fleiss_kappa(np.array([[3, 0, 0, 0], [2, 0, 0, 0]])) is None  # every vote in one category
    assert cohen_kappa(["a", "a"], ["a", "a"]) is None
    assert cohen_kappa([], []) is None
    assert raw_agreement(np.array([[1, 0, 0, 0]])) is None


ratings_st = st.lists(st.lists(st.sampled_from(CATS), min_size=0, max_size=6), min_size=1, max_size=25)


@settings(max_examples=80, deadline=None)
@given(ratings_st)
def test_fleiss_and_raw_match_reference(ratings):
    m = _matrix(ratings)
    for fast, slow in ((fleiss_kappa(m), reference.fleiss_kappa(ratings)),
                       (raw_agreement(m), reference.raw_agreement(ratings))):
        assert (fast is None) == (slow is None)
        if fast is not None:
            assert fast == pytest.approx(slow, abs=1e-9)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(CATS), st.sampled_from(CATS)), min_size=0, max_size=40))
def test_cohen_matches_reference(pairs):
    x, y = [p[0] for p in pairs], [p[1] for p in pairs]
    fast, slow = cohen_kappa(x, y), reference.cohen_kappa(x, y)
    assert (fast is None) == (slow is None)
    if fast is not None:
        assert fast == pytest.approx(slow, abs=1e-9)


@settings(max_examples=80, deadline=None)
@given(ratings_st, st.integers(1, 3))
def test_majority_matches_reference(ratings, min_votes):
    import polars as pl

    pair_ids = [f"p{i}" for i in range(len(ratings))]
    votes = pl.DataFrame(
        {"pair_id": [p for p, r in zip(pair_ids, ratings) for _ in r], "choice": [c for r in ratings for c in r]},
        schema={"pair_id": pl.String, "choice": pl.String},
    )
    got = tally(votes, pair_ids, min_votes)
    assert got["outcome"].to_list() == [reference.majority(r, min_votes) for r in ratings]
    assert (count_matrix(votes, pair_ids) == _matrix(ratings)).all()
