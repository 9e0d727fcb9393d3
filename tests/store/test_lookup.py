"""RowsById: rows by id through a 64-bit key index, checked against a plain dict lookup."""

from __future__ import annotations

import lance
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pairsift.store.lookup import RowsById

HEX = "0123456789abcdef"


def _write(path, ids, texts):
    t = pa.table({"id": pa.array(ids, pa.string()), "text": pa.array(texts, pa.string())})
    return lance.write_dataset(t, str(path), max_rows_per_file=4, mode="overwrite")


def _reference(ids, texts, asked):
    first = {}
    for i, t in zip(ids, texts):
        first.setdefault(i, t)
    return [first.get(a) if a is not None else None for a in asked]


# Ids drawn from few 16-digit heads so that 64-bit keys collide often.
_heads = st.sampled_from(["0" * 16, "f" * 16, HEX])
_tails = st.text(alphabet=HEX, min_size=16, max_size=16)
_ids = st.builds(lambda h, t: h + t, _heads, _tails)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=st.lists(_ids, min_size=0, max_size=25), extra=st.lists(_ids, max_size=6), data=st.data())
def test_take_matches_a_dict_with_collisions_duplicates_and_misses(tmp_path, ids, extra, data):
    texts = [f"t{i}" for i in range(len(ids))]
    ds = _write(tmp_path / "t.lance", ids, texts)
    pool = ids + extra + [None]
    asked = data.draw(st.lists(st.sampled_from(pool), max_size=30))
    got = RowsById(ds, "id").take(pa.array(asked, pa.string()), ["text"])
    assert got.column_names == ["text"]
    assert got.column("text").to_pylist() == _reference(ids, texts, asked)


def test_take_keeps_order_and_repeats(tmp_path):
    ids = [HEX * 2, "a" * 32, "0" * 16 + HEX, "0" * 32]
    ds = _write(tmp_path / "t.lance", ids, ["w", "x", "y", "z"])
    index = RowsById(ds, "id", batch_rows=2)
    assert len(index) == 4
    out = index.take(pa.chunked_array([["0" * 32, HEX * 2], ["0" * 32, "b" * 32]]), ["id", "text"])
    assert out.to_pylist() == [{"id": "0" * 32, "text": "z"}, {"id": HEX * 2, "text": "w"},
                               {"id": "0" * 32, "text": "z"}, {"id": None, "text": None}]


def test_empty_table_and_bad_ids(tmp_path):
    ds = _write(tmp_path / "t.lance", [], [])
    assert RowsById(ds, "id").take(pa.array([HEX * 2]), ["text"]).column("text").to_pylist() == [None]
    from pairsift.errors import IntegrityError

    ds = _write(tmp_path / "u.lance", [HEX * 2], ["x"])
    with pytest.raises(IntegrityError):
        RowsById(ds, "id").take(pa.array(["not an id"]), ["text"])
