"""The batching engine: planning, padding, prefetch, chunked writes, checked against plain references."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pairsift.compute.engine import ChunkWriter, Engine, Ragged, background, plan_batches


def _ref_padded(rows, idx, pad, multiple):
    width = max((len(rows[i]) for i in idx), default=0)
    width = -(-width // multiple) * multiple
    return np.array([list(rows[i]) + [pad] * (width - len(rows[i])) for i in idx], dtype=np.int64).reshape(len(idx), width)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.lists(st.integers(0, 1000), min_size=0, max_size=20), min_size=1, max_size=30),
    multiple=st.sampled_from([1, 8]),
    data=st.data(),
)
def test_ragged_padded_matches_reference(rows, multiple, data):
    r = Ragged.from_lists(rows)
    assert [list(r.row(i)) for i in range(len(rows))] == rows
    idx = np.array(data.draw(st.lists(st.integers(0, len(rows) - 1), min_size=1, max_size=10)))
    ids, lens = r.padded(idx, pad_id=-1, multiple=multiple)
    assert np.array_equal(ids, _ref_padded(rows, idx, -1, multiple))
    assert lens.tolist() == [len(rows[i]) for i in idx]


@settings(max_examples=100, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 600), min_size=0, max_size=200),
    budget=st.integers(1, 5000),
    multiple=st.sampled_from([1, 8]),
    max_rows=st.one_of(st.none(), st.integers(1, 50)),
)
def test_plan_batches_invariants(lengths, budget, multiple, max_rows):
    lengths = np.array(lengths, dtype=np.int64)
    batches = plan_batches(lengths, budget, max_rows, multiple)
    flat = np.concatenate(batches) if batches else np.array([], dtype=np.int64)
    # every row exactly once
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    # longest first overall, and each batch within budget (a lone over-long row is allowed)
    assert np.all(np.diff(lengths[flat]) <= 0)
    for b in batches:
        width = -(-int(lengths[b].max()) // multiple) * multiple
        assert len(b) == 1 or len(b) * width <= budget
        if max_rows:
            assert len(b) <= max_rows


def test_plan_batches_keeps_padding_low_on_spread_lengths():
    lengths = np.array([512] + [8] * 100)
    batches = plan_batches(lengths, batch_tokens=65_536)
    assert len(batches[0]) < 101  # the 512-token row does not drag 100 short rows to width 512


def test_background_reraises_and_preserves_order():
    assert list(background(iter(range(50)), depth=2)) == list(range(50))

    def boom():
        yield 1
        raise ValueError("x")

    with pytest.raises(ValueError):
        list(background(boom()))


def test_engine_runs_each_row_once_with_masks():
    import torch

    rows = [[1] * n for n in [5, 1, 9, 3, 3, 7, 2]]
    seqs = Ragged.from_lists(rows)
    seen = []

    def forward(batch):
        ids = batch["input_ids"]
        mask = batch.get("attention_mask")
        if mask is None:
            assert (batch["lengths"] == ids.shape[1]).all()
            mask = torch.ones_like(ids)
        seen.append(ids.shape)
        return {"n": (ids * mask).sum(1), "extra": batch["tag"]}

    eng = Engine("cpu", batch_tokens=12, pad_id=0)
    got = {}
    for idx, out in eng.run(forward, seqs, {"tag": np.arange(len(rows)) * 10}):
        for i, n, t in zip(idx, out["n"], out["extra"]):
            got[int(i)] = (int(n), int(t))
    assert got == {i: (len(r), i * 10) for i, r in enumerate(rows)}
    assert eng.tokens == sum(map(len, rows))


def test_chunk_writer_commits_in_chunks_and_abort_drops_pending():
    written = []
    w = ChunkWriter(lambda t: written.append(t.num_rows), chunk_rows=5)
    for i in range(12):
        w.add(pa.table({"x": [i]}))
    assert w.close() == 12
    assert written == [5, 5, 2]

    written.clear()
    w = ChunkWriter(lambda t: written.append(t.num_rows), chunk_rows=5)
    for i in range(7):
        w.add(pa.table({"x": [i]}))
    w.abort()
    assert sum(written) in (0, 5) and sum(written) != 7


def test_chunk_writer_block_commits_on_success_and_drops_pending_on_error():
    written = []
    with ChunkWriter(lambda t: written.append(t.num_rows), chunk_rows=5) as w:
        for i in range(7):
            w.add(pa.table({"x": [i]}))
    assert written == [5, 2] and w.committed == 7

    written.clear()
    with pytest.raises(KeyboardInterrupt):
        with ChunkWriter(lambda t: written.append(t.num_rows), chunk_rows=5) as w:
            for i in range(7):
                w.add(pa.table({"x": [i]}))
            raise KeyboardInterrupt
    assert sum(written) in (0, 5) and w.committed == sum(written)


def test_chunk_writer_reraises_write_errors():
    def bad(_):
        raise OSError("disk full")

    w = ChunkWriter(bad, chunk_rows=1)
    w.add(pa.table({"x": [1]}))
    with pytest.raises(OSError):
        w.close()
