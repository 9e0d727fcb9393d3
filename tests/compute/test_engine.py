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


# ---- flat memory: chunk buffers outside the C heap; tokenisation in slices; progress in tokens ----


def test_ragged_concat_matches_lists():
    rows = [[1, 2], [], [3], [4, 5, 6], [7]]
    parts = [Ragged.from_lists(rows[:2]), Ragged.from_lists(rows[2:3]), Ragged.from_lists(rows[3:])]
    got = Ragged.concat(parts)
    assert [list(got.row(i)) for i in range(len(got))] == rows
    sliced = Ragged(got.values, got.offsets[2:])  # a view that does not start at offset 0
    assert [list(r) for r in (Ragged.concat([sliced, parts[0]]).row(i) for i in range(5))] == rows[2:] + rows[:2]
    assert len(Ragged.concat([])) == 0


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 9), min_size=0, max_size=30), chunk=st.integers(1, 12))
def test_chunked_regroups_batches_into_arrow_backed_chunks(sizes, chunk):
    from pairsift.compute.engine import chunked

    batches, start = [], 0
    for n in sizes:
        idx = np.arange(start, start + n)[::-1].copy()
        batches.append((idx, {"v": np.stack([idx * 1.5, idx * 2.0], axis=1).astype(np.float32), "s": idx * 3}))
        start += n
    chunks = list(chunked(iter(batches), chunk))  # all kept: none may be overwritten by a later chunk
    assert [len(i) for i, _ in chunks][:-1] == [chunk] * (len(chunks) - 1)
    assert all(len(i) for i, _ in chunks)
    idx = np.concatenate([i for i, _ in chunks]) if chunks else np.zeros(0, int)
    want = np.concatenate([b[0] for b in batches]) if batches else np.zeros(0, int)
    assert idx.tolist() == want.tolist()
    for i, out in chunks:
        assert out["v"].dtype == np.float32 and out["v"].shape == (len(i), 2)
        assert np.array_equal(out["v"], np.stack([i * 1.5, i * 2.0], axis=1).astype(np.float32))
        assert np.array_equal(out["s"], i * 3)
        for arr in (i, out["v"], out["s"]):  # memory from Arrow's pool, not the C heap
            base = arr
            while isinstance(base, np.ndarray):
                base = base.base
            assert isinstance(base, pa.Buffer)


def test_to_arrow_copies_into_arrow_memory():
    from pairsift.compute.engine import to_arrow

    x = np.array([3, 1, 2], dtype=np.int32)
    a = to_arrow(x)
    x[:] = 0  # the Arrow array does not share the NumPy buffer
    assert a.type == pa.int32() and a.to_pylist() == [3, 1, 2]
    assert to_arrow(np.array([True, False])).to_pylist() == [True, False]
    assert to_arrow(np.array([1.5]), pa.float64()).to_pylist() == [1.5]


def test_engine_reports_each_batch_after_its_results_are_taken():
    seqs = Ragged.from_lists([[1] * n for n in [5, 1, 9, 3, 3, 7, 2]])
    reported, taken = [], []
    eng = Engine("cpu", batch_tokens=12, pad_id=0)
    for idx, _ in eng.run(lambda b: {"n": b["lengths"]}, seqs, on_batch=lambda r, t: reported.append((r, t))):
        taken.append(len(idx))
        assert len(reported) == len(taken) - 1  # the batch in hand is not reported yet
    assert [r for r, _ in reported] == taken
    assert sum(t for _, t in reported) == eng.tokens == 30


def test_job_progress_counts_tokens_exactly_per_window_and_estimates_the_rest():
    from pairsift.compute.engine import JobProgress

    calls = []
    job = JobProgress(lambda *a: calls.append(a), rows_total=10)
    job.window(4, 400)  # 4 rows tokenised into 400 tokens; 6 rows unseen count 100 each
    assert calls[-1] == (0, 1000, "0/10 rows")
    job.advance(1)  # a blank row: no tokens
    job.advance(3, 400)
    assert calls[-1] == (400, 1000, "4/10 rows")
    job.window(6, 300)  # the rest turns out shorter: the total becomes exact
    job.advance(6, 300)
    assert calls[-1] == (700, 700, "10/10 rows")
    assert JobProgress(None, 3).tokens_total == 0  # nothing seen yet; no callback is fine


@settings(max_examples=80, deadline=None)
@given(sizes=st.lists(st.integers(0, 50), max_size=40), max_chars=st.integers(1, 120), max_rows=st.integers(1, 9))
def test_tokenize_slices_cover_rows_within_budgets(sizes, max_chars, max_rows):
    from pairsift.compute.tokenize import slices

    got = slices(sizes, max_chars, max_rows)
    assert [i for s in got for i in range(s.start, s.stop)] == list(range(len(sizes)))
    for s in got:
        assert 1 <= s.stop - s.start <= max_rows
        assert s.stop - s.start == 1 or sum(sizes[s]) <= max_chars


def test_sliced_tokenisation_equals_one_call(monkeypatch):
    import pairsift.compute.tokenize as tk
    from tests.compute.helpers import sentences, tiny_tokenizer

    tok = tiny_tokenizer()
    texts = sentences(40, seed=3, max_words=60) + ["", "  "]
    prompts = [t[:20] for t in texts]
    whole = (tk.tokenize(tok, texts, 32), tk.tokenize(tok, texts, 16, append_eos=True),
             tk.trl_tokenize_ragged(tok, prompts, texts, False))
    monkeypatch.setattr(tk, "SLICE_CHARS", 50)
    monkeypatch.setattr(tk, "SLICE_ROWS", 3)
    assert len(tk.slices([len(t) for t in texts])) > 10
    sliced = (tk.tokenize(tok, texts, 32), tk.tokenize(tok, texts, 16, append_eos=True),
              tk.trl_tokenize_ragged(tok, prompts, texts, False))
    for (a, fa), (b, fb) in zip(whole, sliced):
        assert np.array_equal(a.values, b.values) and np.array_equal(a.offsets, b.offsets)
        assert np.array_equal(fa, fb)
    full, starts = tk.trl_tokenize(tok, prompts, texts, False)
    seqs, starts2 = sliced[2]
    assert [list(seqs.row(i)) for i in range(len(seqs))] == [list(x) for x in full]
    assert starts2.tolist() == starts.tolist()
