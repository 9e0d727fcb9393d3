"""The subset stream: exact pairs, orientation, epochs, rank sharding, seeded shuffle, versions."""

from __future__ import annotations

import math
import pickle
from collections import Counter

import numpy as np
import pytest

from pairsift.errors import SubsetNotFound, TableNotFound, UsageError
from pairsift.train.stream import (
    epoch_order,
    max_steps_for,
    subset_stream,
    subset_table,
)

from .helpers import build_corpus, save_subset


@pytest.fixture
def corpus_store(tmp_store):
    corpus = build_corpus(tmp_store, n_prompts=11, k=3)
    expected = save_subset(tmp_store, "sub", corpus, flip={2, 5, 7})
    return tmp_store, corpus, expected


def _truth(expected):
    return {pid: (p["text"], c["text"], r["text"]) for pid, p, c, r in expected}


def _key(row):
    return row["pair_id"], (row["prompt"], row["chosen"], row["rejected"])


def test_one_epoch_yields_exactly_the_subset_oriented(corpus_store):
    store, _, expected = corpus_store
    rows = list(subset_stream(store, "sub", epochs=1, seed=3))
    assert len(rows) == len(expected)
    assert dict(_key(r) for r in rows) == _truth(expected)  # chosen/rejected from the label, flips included


def test_epochs_each_pass_holds_every_pair_once(corpus_store):
    store, _, expected = corpus_store
    rows = list(subset_stream(store, "sub", epochs=3, seed=1, read_batch_size=4))
    n = len(expected)
    assert len(rows) == 3 * n
    for e in range(3):
        assert Counter(r["pair_id"] for r in rows[e * n : (e + 1) * n]) == Counter({pid: 1 for pid, *_ in expected})
    orders = [[r["pair_id"] for r in rows[e * n : (e + 1) * n]] for e in range(3)]
    assert orders[0] != orders[1]  # a fresh permutation each epoch


def test_infinite_stream_keeps_going(corpus_store):
    store, _, expected = corpus_store
    it = iter(subset_stream(store, "sub"))
    got = [next(it)["pair_id"] for _ in range(5 * len(expected) + 3)]
    assert Counter(got[: 5 * len(expected)]) == Counter({pid: 5 for pid, *_ in expected})


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_split_each_epoch_without_overlap_or_loss(corpus_store, world):
    store, _, expected = corpus_store
    n = len(expected)
    per_rank = [list(subset_stream(store, "sub", epochs=2, seed=7, rank=r, world_size=world, read_batch_size=2))
                for r in range(world)]
    sizes = [math.ceil((n - r) / world) for r in range(world)]
    assert [len(p) for p in per_rank] == [2 * s for s in sizes]
    truth = _truth(expected)
    for e in range(2):
        epoch = [row for r, rows in enumerate(per_rank) for row in rows[e * sizes[r] : (e + 1) * sizes[r]]]
        assert Counter(row["pair_id"] for row in epoch) == Counter({pid: 1 for pid in truth})
        assert all(truth[row["pair_id"]] == _key(row)[1] for row in epoch)


def test_accelerate_style_shard_equals_rank(corpus_store):
    """accelerate hands process k the datasets shard k; it must equal the explicit rank's stream."""
    store, _, _ = corpus_store
    full = subset_stream(store, "sub", epochs=1, seed=5, world_size=2)
    assert full.num_shards == 2
    for k in range(2):
        via_shard = [r["pair_id"] for r in full.shard(num_shards=2, index=k)]
        via_rank = [r["pair_id"] for r in subset_stream(store, "sub", epochs=1, seed=5, rank=k, world_size=2)]
        assert via_shard == via_rank


def test_shuffle_is_deterministic_per_seed(corpus_store):
    store, _, _ = corpus_store

    def order(seed, **kw):
        return [r["pair_id"] for r in subset_stream(store, "sub", epochs=2, seed=seed, **kw)]

    assert order(11) == order(11) == order(11, read_batch_size=3)
    assert order(11) != order(12)
    # The order is the seeded permutation of the selection order (rank), nothing else.
    members = [r["pair_id"] for r in subset_stream(store, "sub", epochs=1, shuffle=False)]
    n = len(members)
    want = [members[i] for e in range(2) for i in epoch_order(n, 11, e)]
    assert order(11) == want


def test_unshuffled_order_is_selection_rank(corpus_store):
    store, _, expected = corpus_store
    rows = list(subset_stream(store, "sub", epochs=1, shuffle=False))
    assert [r["pair_id"] for r in rows] == [pid for pid, *_ in expected]


def test_stream_pickles_for_spawned_workers(corpus_store):
    store, _, _ = corpus_store
    ds = subset_stream(store, "sub", epochs=1, seed=2)
    clone = pickle.loads(pickle.dumps(ds))
    assert [r["pair_id"] for r in clone] == [r["pair_id"] for r in ds]


def test_reads_the_versions_the_subset_recorded(corpus_store):
    store, _, expected = corpus_store
    gone = expected[0][2]["response_id"]
    store.table("responses").delete(f"response_id = '{gone}'")  # a later version lacks a chosen text
    rows = list(subset_stream(store, "sub", epochs=1))
    assert dict(_key(r) for r in rows) == _truth(expected)


def test_prompt_embeddings_come_from_the_stored_set(corpus_store):
    store, corpus, _ = corpus_store
    vec = {p["prompt_id"]: v for p, v in zip(corpus["prompts"], corpus["prompt_vecs"])}
    rows = list(subset_stream(store, "sub", epochs=1, prompt_embeddings="prompt_minilm"))
    for r in rows:
        np.testing.assert_array_equal(np.asarray(r["prompt_emb"], np.float32), vec[r["prompt_id"]])
    with pytest.raises(TableNotFound, match="pairsift embed"):
        subset_stream(store, "sub", prompt_embeddings="nope")


def test_conversational_rows(tmp_store):
    corpus = build_corpus(tmp_store, n_prompts=6, k=2, chat=True)
    expected = save_subset(tmp_store, "chat", corpus)
    rows = {r["pair_id"]: r for r in subset_stream(tmp_store, "chat", epochs=1)}
    for pid, p, c, rej in expected:
        row = rows[pid]
        assert row["prompt"] == (p["messages"] or [{"role": "user", "content": p["text"]}])
        assert row["chosen"] == (c["messages"] or [{"role": "assistant", "content": c["text"]}])
        assert row["rejected"] == (rej["messages"] or [{"role": "assistant", "content": rej["text"]}])


def test_unlabelled_subset_cannot_be_streamed(tmp_store):
    corpus = build_corpus(tmp_store, n_prompts=4)
    save_subset(tmp_store, "raw", corpus, labelled=False)
    with pytest.raises(UsageError, match="pairsift label import"):
        subset_stream(tmp_store, "raw")
    table = subset_table(tmp_store, "raw", oriented=False)  # a/b pairs are still readable
    assert table.num_rows == 4 and {"a", "b"} <= set(table.column_names)


def test_missing_subset_and_tables(tmp_store):
    with pytest.raises(TableNotFound, match="pairsift select"):
        subset_stream(tmp_store, "x")
    corpus = build_corpus(tmp_store, n_prompts=3)
    save_subset(tmp_store, "a", corpus)
    with pytest.raises(SubsetNotFound, match="no subset named 'b'"):
        subset_stream(tmp_store, "b")


def test_rank_bounds(corpus_store):
    store, _, _ = corpus_store
    with pytest.raises(UsageError, match="rank"):
        subset_stream(store, "sub", rank=2, world_size=2)


@pytest.mark.parametrize(
    "n,epochs,bs,ga,world", [(10, 1, 4, 1, 1), (10, 2, 4, 1, 1), (100, 1, 8, 2, 3), (7, 0.5, 2, 1, 1), (1, 1, 8, 1, 1)]
)
def test_max_steps_for(n, epochs, bs, ga, world):
    # Reference: simulate consuming effective batches until epochs * n pairs are used.
    used, steps = 0, 0
    while used < epochs * n:
        used += bs * ga * world
        steps += 1
    assert max_steps_for(n, epochs, bs, ga, world) == max(1, steps)


def test_max_steps_for_empty():
    with pytest.raises(UsageError, match="empty"):
        max_steps_for(0, 1, 8)
